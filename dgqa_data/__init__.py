"""dgqa_data: IQA corpora as Hugging Face datasets, KADIS-style synthesis, DGQA subsets."""

# The one version of the distribution: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"
