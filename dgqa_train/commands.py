"""The model verbs of ``dgqa`` (they need torch): a registry of verb name -> module and help line.

Each verb's module owns its flags (``add_arguments(parser)``) and its code (``run(args)``) and is
imported only when that verb runs; ``train`` and ``train-classifier`` hand their arguments to the
config parser of their launch script. The data verbs are in :mod:`dgqa_data.commands`.
"""

from __future__ import annotations

from dgqa_data.commands import Verb

#: The model verbs, in the order ``dgqa --help`` lists them (after the data verbs).
VERBS: tuple[Verb, ...] = (
    Verb(
        "demo", "the whole DGQA method on photos shipped with scikit-image, with a report", "dgqa_train.demo"
    ),
    Verb(
        "train-classifier",
        "train the 26-way DGQA domain classifier (Accelerate; flags: dgqa train-classifier --help)",
        "dgqa_train.train_classifier",
        passthrough=True,
    ),
    Verb("score", "per-image domain logits of a target set (averaged over random crops)", "dgqa_train.score"),
    Verb(
        "train",
        "train a quality regressor (Accelerate; also `accelerate launch dgqa_train/train.py`)",
        "dgqa_train.train",
        passthrough=True,
    ),
    Verb("predict", "score images (quality in [0, 1]) with a trained regressor", "dgqa_train.predict"),
    Verb("bench", "backbone x train-set x seed grid of regressors -> leaderboard", "dgqa_train.bench"),
    Verb(
        "probe",
        "linear probe: frozen backbone features + ridge/MLP head per training set",
        "dgqa_train.probe",
    ),
    Verb(
        "curate",
        "SynDR-IQA curation: redundant-cluster downsampling (DRC) on frozen-backbone features",
        "dgqa_train.curate",
    ),
)
