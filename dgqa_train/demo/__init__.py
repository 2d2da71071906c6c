"""``dgqa demo``: the whole DGQA method on real photos shipped with scikit-image, with measured evidence.

No download, no GPU. Every stage calls the function its CLI verb calls; :meth:`Demo.stages` lists
them in the order they run:

1. ``photos``: tiles of the colour photos in scikit-image, split *by photo* into the classifier's
   training photos, one photo held out for its accuracy, and the target photos.
2. ``source``: a KADIS-style set of the training photos (pristine + 25 types x 5 levels,
   :func:`dgqa_data.synth.synthesize`, severity labels of :mod:`dgqa_data.severity`), and the same
   of the held-out photo.
3. ``target``: simulated camera captures of the target photos (:func:`dgqa_data.camera.simulate_capture`),
   built as a ``folder`` dataset (``dgqa build folder``), with what was done to each capture
   (``photos/camera-truth.csv``); their labels and truth are only used for evaluation.
4. ``classifier``: one 26-way domain classifier per seed (``train_classifier``, Accelerate, frozen
   pretrained backbone, the capture-aware or the paper's recipe), its held-out accuracy and
   confusion matrix; the target scored by each (``dgqa score``) and selected by every rule of
   :data:`DEMO_RULES`, kept by a majority of seeds and measured against the truth (``dgqa select``).
5. ``subsets``: one subset per rule, the oracle and its complement, ``dgqa/demo-all`` and one
   same-size random control per seed (``dgqa subset``), each loadable with
   ``load_dataset("dgqa/...")`` from the output folder.
6. ``curation``: the SynDR-IQA arms (``dgqa curate``): DRC on the selected types and on every type,
   and DDC on the selected types with a pool of scikit-image photos the demo uses nowhere else
   (:data:`~dgqa_train.demo.settings.POOL_PHOTOS`, tiled as the others are).
7. ``regressors``: the same regressor trained on every arm and seed and evaluated on the target
   (``dgqa probe``: frozen backbone + head; or ``dgqa train`` with ``--finetune``).
8. ``report``: ``report.md``, ``srcc.png``, ``confusion.png``, ``similarity.png`` and a verdict.

A second run into the same folder reuses the finished stages; different settings are refused.
Modules: :mod:`~dgqa_train.demo.settings` (photos, arms, :class:`DemoSettings`),
:mod:`~dgqa_train.demo.stages` (:class:`Demo`), :mod:`~dgqa_train.demo.report` (numbers, verdict,
plots, ``report.md``) and :mod:`~dgqa_train.demo.cli` (flags).
"""

from dgqa_train.demo.cli import add_arguments, run
from dgqa_train.demo.report import make_verdict, summarize
from dgqa_train.demo.settings import (
    ARM_NAMES,
    ARMS,
    BACKGROUND,
    CURATED_ARMS,
    DEMO_RULES,
    FINETUNE_ARMS,
    HELDOUT_PHOTOS,
    POOL_PHOTOS,
    SOURCE_PHOTOS,
    TARGET_PHOTOS,
    DemoError,
    DemoSettings,
)
from dgqa_train.demo.stages import Demo

__all__ = [
    "ARMS",
    "ARM_NAMES",
    "BACKGROUND",
    "CURATED_ARMS",
    "DEMO_RULES",
    "FINETUNE_ARMS",
    "HELDOUT_PHOTOS",
    "POOL_PHOTOS",
    "SOURCE_PHOTOS",
    "TARGET_PHOTOS",
    "Demo",
    "DemoError",
    "DemoSettings",
    "add_arguments",
    "make_verdict",
    "run",
    "summarize",
]
