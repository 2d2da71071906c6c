"""What a training run leaves in its ``--output_dir``: the same files, written the same way, for the
regressor (``dgqa train``) and the domain classifier (``dgqa train-classifier``).

- ``model.safetensors`` + ``config.json``: the model (:func:`dgqa_train.models.save_model`);
- ``train_config.json``: the run's flags, reloadable with ``--config``;
- ``results.json``: the metrics; rewritten after every epoch with ``"finished": false``, and once
  more at the end with ``"finished": true``;
- ``README.md``: the model card.

Every file is written atomically (:mod:`dgqa_data.atomic`): a killed run leaves the previous version
of each, never half of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dgqa_data.atomic import write_atomic, write_json
from dgqa_train.config import save_config
from dgqa_train.evaluate import json_safe
from dgqa_train.models import CONFIG_NAME, WEIGHTS_NAME, IQAModel, save_model

RESULTS_NAME = "results.json"
TRAIN_CONFIG_NAME = "train_config.json"
CARD_NAME = "README.md"
#: The files every training run writes (the ``writes`` of its output-folder claim).
RUN_FILES = (WEIGHTS_NAME, CONFIG_NAME, TRAIN_CONFIG_NAME, RESULTS_NAME, CARD_NAME)


def write_results(out: str | Path, results: dict[str, Any]) -> Path:
    """Write ``results.json`` (non-finite numbers become null)."""
    return write_json(Path(out) / RESULTS_NAME, json_safe(results))


def save_run(out: str | Path, model: IQAModel, config: Any, results: dict[str, Any], card: str) -> Path:
    """Write a finished run's files into ``out``: model, config, card, then ``results.json`` last
    (a folder whose ``results.json`` says ``finished`` holds all the others)."""
    out = Path(out)
    save_model(model, out)
    save_config(config, out / TRAIN_CONFIG_NAME)
    write_atomic(out / CARD_NAME, card)
    write_results(out, results)
    return out
