"""dgqa_data: IQA corpora as Hugging Face datasets, KADIS-style synthesis, DGQA subsets."""

__version__ = "0.1.0"
