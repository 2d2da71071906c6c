"""``dgqa curate``: the SynDR-IQA curation steps on a dgqa dataset, with features from a frozen
backbone (:mod:`dgqa_train.features`); the steps themselves are the torch-free functions of
:mod:`dgqa_data.curate`.

::

    dgqa curate --source hub/dgqa/kadid10k --paper livec --downsample drc --seed 0 \\
        --out hub/dgqa/kadid10k-sel-livec-drc

Rows are first restricted to the selection's types (``--selection`` / ``--paper``), then DRC
drops rows of large redundant clusters; the kept rows are copied, bytes as stored, into a
Hub-layout folder whose card records the operation, its settings and the rows kept per type.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from dgqa_data.curate import (
    CurationError,
    drc,
    normalise_labels,
    selected_rows,
    source_column,
    write_curated,
)
from dgqa_data.errors import DgqaError, OutputExistsError, at_least, fraction
from dgqa_data.paths import check_output
from dgqa_data.subsets import SourceFolder, subset_name
from dgqa_train.features import FeatureCache, backbone_id, extract_features
from dgqa_train.models import build_model


def source_dataset(src: SourceFolder) -> datasets.Dataset:
    """Every row of the source's ``default`` config, in source order, images left encoded."""
    if src.index_only:
        raise CurationError(
            f"{src.folder} is index-only (no pixels): attach the images first with "
            f"`dgqa hydrate {src.folder} --root YOUR_DOWNLOAD`"
        )
    files = [str(f) for _, fs in src.config_parts() for f in fs]
    ds = datasets.Dataset.from_parquet(files)
    return ds.cast_column("image", datasets.Image(decode=False))


def backbone_features(
    ds: datasets.Dataset,
    *,
    backbone: str,
    pretrained: bool,
    features: str,
    crop_size: int,
    cache_dir: str | Path | None,
    progress: bool = True,
) -> tuple[np.ndarray, str]:
    """Frozen-backbone features of every row of ``ds`` and a one-line description of them."""
    model = build_model(
        backbone, task="regress", pretrained=pretrained, crop_size=crop_size, features=features
    )
    cache = FeatureCache(cache_dir, backbone_id(model, crop_size)) if cache_dir else None
    x = extract_features(model, ds, crop_size, cache, desc="features", progress=progress)
    weights = "pretrained" if pretrained else "random weights"
    return x, f"frozen `{backbone}` ({weights}), {features} features of the centre {crop_size} px crop"


def curate(
    source: str | Path,
    *,
    selection: Any = None,
    downsample: str | None = "drc",
    drc_options: dict[str, Any] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    name: str | None = None,
    backbone: str = "efficientnet-lite0",
    pretrained: bool = True,
    features: str = "multilevel",
    crop_size: int = 224,
    cache_dir: str | Path | None = None,
    namespace: str = "dgqa",
    overwrite: bool = False,
    progress: bool = True,
):
    """Restrict ``source`` to ``selection``'s types (if any), apply DRC, write the kept rows.

    Every input is checked (types, labels) before the backbone runs; nothing is written on error.

    Returns:
        A :class:`dgqa_data.curate.CurateReport`.
    """
    if downsample != "drc":
        raise DgqaError("choose an operation: --downsample drc")
    src = SourceFolder.open(source)
    types, _ = src.scan()
    rows = selected_rows(types, selection.selected if selection else None, str(src.folder))
    labels = source_column(src, "quality")[rows]
    normalise_labels(labels, f"{src.folder} quality")  # fail before the backbone runs
    name = name or (subset_name(src.name, selection.target) if selection else src.name) + "-drc"
    out = Path(out).expanduser() if out is not None else src.folder.parent / name
    check_output(out, {"source dataset": src.folder})
    if out.exists() and not overwrite:  # refused before the backbone runs, not after
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    if cache_dir:
        check_output(cache_dir, {"source dataset": src.folder}, "--cache-dir")
    ds = source_dataset(src).select(rows)
    x, described = backbone_features(
        ds,
        backbone=backbone,
        pretrained=pretrained,
        features=features,
        crop_size=crop_size,
        cache_dir=cache_dir,
        progress=progress,
    )
    result = drc(x, labels, types=types[rows], seed=seed, where=str(src.folder), **(drc_options or {}))
    keep = np.zeros(len(types), dtype=bool)
    keep[rows[result.kept]] = True
    record = {
        "operations": ["drc"],
        "selection": (
            {"target": selection.target, "rule": selection.rule, "selected": list(selection.selected)}
            if selection
            else None
        ),
        "source_rows_per_type": result.report.get("rows_per_type", {}),
        "drc": {**result.report, "features": described, "labels": "quality"},
    }
    return write_curated(
        src.folder,
        keep,
        name=name,
        out=out,
        record=record,
        namespace=namespace,
        overwrite=overwrite,
        progress=progress,
    )


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa curate``."""
    p.add_argument("--source", required=True, help="dataset folder written by dgqa, e.g. hub/dgqa/kadid10k")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--selection", help="selection.json: restrict to its types first")
    which.add_argument(
        "--paper", metavar="TARGET", help="a published DGQA selection: livec, koniq10k, bid, ..."
    )
    p.add_argument("--downsample", choices=["drc"], required=True, help="drc: redundant-cluster downsampling")
    p.add_argument("--drc-sim", type=fraction, default=0.9, help="link when cosine similarity > this (0.9)")
    p.add_argument(
        "--drc-label-gap", type=float, default=1.0, help="... and [0, 10]-normalised label gap < this (1)"
    )
    p.add_argument(
        "--drc-max-cluster", type=at_least(1), default=20, help="clusters up to this size kept whole"
    )
    p.add_argument(
        "--drc-keep",
        type=fraction,
        default=0.5,
        help="larger clusters keep max(max-cluster, floor(L x this))",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the rows drawn from large clusters")
    p.add_argument("--out", default=None, help="folder to write (default: beside --source, <name>)")
    p.add_argument("--name", default=None, help="dataset name (default <source>[-sel-<target>]-drc)")
    p.add_argument("--namespace", default="dgqa", help="Hub namespace named in the card")
    p.add_argument("--backbone", default="efficientnet-lite0", help="frozen feature backbone")
    p.add_argument("--no-pretrained", "--no_pretrained", action="store_true", help="random backbone weights")
    p.add_argument("--features", choices=["multilevel", "pooled"], default="multilevel")
    p.add_argument("--crop-size", "--crop_size", type=at_least(1), default=224, help="centre crop (224)")
    p.add_argument("--cache-dir", "--cache_dir", default=None, help="feature cache folder (default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace --out once the new folder is complete")
    return p


def run(args: argparse.Namespace):
    """``dgqa curate``."""
    from dgqa_data.schema import DISTORTION_NAMES
    from dgqa_data.selection import Selection, paper_selection

    selection = Selection.load(args.selection) if args.selection else None
    if args.paper:
        selection = paper_selection(args.paper)
    report = curate(
        args.source,
        selection=selection,
        downsample=args.downsample,
        drc_options={
            "sim": args.drc_sim,
            "label_gap": args.drc_label_gap,
            "max_cluster": args.drc_max_cluster,
            "keep": args.drc_keep,
        },
        seed=args.seed,
        out=args.out,
        name=args.name,
        backbone=args.backbone,
        pretrained=not args.no_pretrained,
        features=args.features,
        crop_size=args.crop_size,
        cache_dir=args.cache_dir,
        namespace=args.namespace,
        overwrite=args.overwrite,
    )
    print(f"wrote {report.out}: {report.name}, {report.rows} rows")
    for t, n in report.domain_counts.items():
        print(f"  {t:>2} {DISTORTION_NAMES[t] if t >= 0 else 'authentic'}: {n}")
    return report
