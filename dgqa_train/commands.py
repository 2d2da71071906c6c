"""``dgqa`` sub-commands that need dgqa_train (models, training, scoring, selection).

Each verb is one ``add_*`` function; parsers stay thin and call the library functions.
"""

from __future__ import annotations

import argparse

from dgqa_data.errors import at_least, fraction
from dgqa_data.selection import RULES

# ------------------------------------------------------------------------------------------------
# Domain classifier, scoring and selection
# ------------------------------------------------------------------------------------------------


def add_train_classifier(sub: argparse._SubParsersAction) -> None:
    """``dgqa train-classifier [flags | --config FILE]`` (flags: ``dgqa train-classifier --help``)."""
    p = sub.add_parser(
        "train-classifier",
        help="train the 26-way DGQA domain classifier (Accelerate)",
        add_help=False,  # --help goes to the config parser, which lists every flag
        prefix_chars="\0",  # pass every flag through untouched
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run_train_classifier)


def run_train_classifier(args: argparse.Namespace) -> None:
    from dgqa_train.train_classifier import main

    main(args.args, prog="dgqa train-classifier")


def add_score_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa score`` (also used by ``accelerate launch dgqa_train/score.py``)."""
    p.add_argument("--classifier", required=True, help="saved classifier folder or official DGQA .pth.tar")
    p.add_argument(
        "--target", required=True, help="target dataset folder or Hub id, optionally '<spec>:<split>'"
    )
    p.add_argument("--out", required=True, help="output folder (scores.parquet + scores.json)")
    p.add_argument("--crops", type=at_least(1), default=5, help="random crops per image (default 5)")
    p.add_argument(
        "--crop_size", "--crop-size", type=at_least(1), default=None, help="default: the classifier's (224)"
    )
    p.add_argument(
        "--batch_size", "--batch-size", type=at_least(1), default=16, help="images per process and step"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random crops")
    p.add_argument("--num_workers", "--num-workers", type=at_least(0), default=0, help="dataloader workers")
    p.add_argument("--mixed_precision", "--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    return p


def add_score(sub: argparse._SubParsersAction) -> None:
    """``dgqa score --classifier DIR --target DATASET --out DIR``."""
    p = sub.add_parser("score", help="per-image domain logits of a target set (averaged over random crops)")
    add_score_arguments(p)
    p.set_defaults(func=run_score)


def run_score(args: argparse.Namespace) -> None:
    from dgqa_train import score

    score.run(args)


def add_select(sub: argparse._SubParsersAction) -> None:
    """``dgqa select --scores DIR --rule ...`` or ``dgqa select --paper livec --out DIR``."""
    p = sub.add_parser("select", help="choose the source domains similar to a scored target (DGQA rule)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scores", help="folder written by `dgqa score`")
    src.add_argument("--paper", help="a published DGQA selection: livec, koniq10k, bid, pipal1..pipal6")
    p.add_argument("--rule", choices=RULES, default="dgqa-vote", help="default: dgqa-vote")
    p.add_argument("--threshold", type=fraction, default=None, help="override the rule's threshold")
    p.add_argument(
        "--k", type=at_least(1), default=None, help="top-k of the vote (dgqa-vote) or types kept (top-k)"
    )
    p.add_argument("--target", default=None, help="target name to record (default: from scores.json)")
    p.add_argument("--out", default=None, help="report folder (default: the --scores folder)")
    p.set_defaults(func=run_select)


def run_select(args: argparse.Namespace) -> None:
    from dgqa_train import selection_report

    selection_report.run(args)


# ------------------------------------------------------------------------------------------------
# Quality regressors: train, predict, bench
# ------------------------------------------------------------------------------------------------


def add_train(sub: argparse._SubParsersAction) -> None:
    """``dgqa train [flags | --config FILE]`` (flags: ``dgqa train --help``)."""
    p = sub.add_parser(
        "train",
        help="train a quality regressor (Accelerate; also `accelerate launch dgqa_train/train.py`)",
        add_help=False,  # --help goes to the config parser, which lists every flag
        prefix_chars="\0",  # pass every flag through untouched
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from dgqa_train.train import main

    return main(args.args, prog="dgqa train")


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``dgqa predict``."""
    p.add_argument("images", nargs="*", help="image files to score")
    p.add_argument("--model", required=True, help="folder written by `dgqa train`")
    p.add_argument("--dataset", help="score every row of this dataset (PATH[:SPLIT]) instead of files")
    p.add_argument("--out", help="also write a CSV (image,quality)")
    p.add_argument("--crops", type=at_least(1), default=5, help="seeded crops averaged per image")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip images that cannot be decoded (listed on stderr and in --out) instead of failing",
    )
    p.add_argument("--seed", type=int, default=123, help="crop seed")
    p.add_argument("--batch-size", type=at_least(1), default=16)
    p.add_argument("--num-workers", type=at_least(0), default=0)


def add_predict(sub: argparse._SubParsersAction) -> None:
    """``dgqa predict --model DIR IMAGES... | --dataset D [--out CSV] [--crops 5]``."""
    p = sub.add_parser("predict", help="score images (quality in [0, 1]) with a trained regressor")
    add_predict_arguments(p)
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> None:
    from dgqa_train import predict

    predict.run(args)


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``dgqa bench``."""
    p.add_argument("--backbones", required=True, help="comma list, e.g. tiny-resnet,resnet50")
    p.add_argument("--train", required=True, help="comma list of training datasets (PATH[:SPLIT])")
    p.add_argument("--eval", required=True, help="comma list of eval datasets (PATH[:SPLIT])")
    p.add_argument("--seeds", type=at_least(1), default=3, help="seeds per cell: base-seed, base-seed+1, ...")
    p.add_argument("--base-seed", type=int, default=123)
    p.add_argument("--out", required=True, help="benchmark folder (runs/ + leaderboard.{csv,md,png})")
    p.add_argument("--epochs", type=at_least(0), help="epochs per run (default: the training default, 24)")
    p.add_argument("--train-args", default="", help='extra train flags per cell, e.g. "--lr_head 1e-3"')
    p.add_argument("--launcher", help='run cells as subprocesses, e.g. "accelerate launch --num_processes 2"')


def add_bench(sub: argparse._SubParsersAction) -> None:
    """``dgqa bench --backbones A,B --train D1,D2 --eval E1,E2 --seeds 3 --out DIR``."""
    p = sub.add_parser("bench", help="backbone x train-set x seed grid of regressors -> leaderboard")
    add_bench_arguments(p)
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from dgqa_train import bench

    return bench.run(args)


def register_regressor(sub: argparse._SubParsersAction) -> None:
    """Add ``train``, ``predict`` and ``bench``."""
    add_train(sub)
    add_predict(sub)
    add_bench(sub)


def add_probe(sub: argparse._SubParsersAction) -> None:
    """``dgqa probe --train D [D ...] --eval E --out DIR``."""
    from dgqa_train import probe

    p = sub.add_parser(
        "probe", help="linear probe: frozen backbone features + ridge/MLP head per training set"
    )
    probe.add_arguments(p)
    p.set_defaults(func=lambda args: probe.run(args) and None)


def add_demo(sub: argparse._SubParsersAction) -> None:
    """``dgqa demo [--out DIR] [--fast] [--seeds N] [--backbone NAME] [--num-proc N]``."""
    from dgqa_train import demo

    p = sub.add_parser(
        "demo", help="the whole DGQA method on photos shipped with scikit-image, with a report"
    )
    demo.add_arguments(p)
    p.set_defaults(func=lambda args: demo.run(args) and None)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the dgqa_train verbs to the ``dgqa`` parser."""
    add_demo(sub)
    add_train_classifier(sub)
    add_score(sub)
    add_select(sub)
    register_regressor(sub)
    add_probe(sub)
