"""Card templates, shipped as package data of ``dgqa_data.dataset_cards`` (see pyproject.toml).

This folder is the source of the templates; the wheel installs it as ``dgqa_data/dataset_cards``
and an editable install maps that package here. This file only makes it a regular package.
"""
