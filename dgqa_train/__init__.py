"""dgqa_train: models, training, scoring and benchmarking for dgqa (imports dgqa_data)."""
