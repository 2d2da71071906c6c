"""``dgqa curate``: the SynDR-IQA curation steps on a dgqa dataset, with features from a frozen
backbone (:mod:`dgqa_train.features`); the steps themselves are the torch-free functions of
:mod:`dgqa_data.curate`.

::

    dgqa curate --source hub/dgqa/kadid10k --paper livec --downsample drc --seed 0 \\
        --out hub/dgqa/kadid10k-sel-livec-drc

    dgqa curate --source hub/dgqa/kadid10k --paper livec --downsample drc --upsample ddc \
        --pool my_photos/ --ddc-levels 1,3,5 --out hub/dgqa/kadid10k-sel-livec-drc-ddc

Rows are first restricted to the selection's types (``--selection`` / ``--paper``), then DRC
drops rows of large redundant clusters; the kept rows are copied, bytes as stored, into a
Hub-layout folder whose card records the operation, its settings and the rows kept per type.
DDC chooses new references from the pool (features of the source's training references, i.e. its
pristine rows, and of the pool photos), synthesises their distorted versions of the selected types
(:func:`dgqa_data.synth.synth_images`) and appends them with transferred labels
(``label_transferred`` true).
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from dgqa_data.curate import (
    CurationError,
    ddc,
    ddc_cells,
    ddc_label_table,
    ddc_report,
    ddc_rows,
    drc,
    normalise_labels,
    pristine_rows,
    selected_rows,
    source_column,
    training_references,
    transfer_labels,
    write_curated,
)
from dgqa_data.errors import DgqaError, OutputExistsError, at_least, fraction
from dgqa_data.paths import check_output
from dgqa_data.subsets import SourceFolder, restricted_corpora, subset_name
from dgqa_train.features import FeatureCache, backbone_id, extract_features
from dgqa_train.models import build_model


def config_dataset(src: SourceFolder, config: str = "default") -> datasets.Dataset:
    """Every row of one config of the source, in source order, images left encoded."""
    if src.index_only:
        raise CurationError(
            f"{src.folder} is index-only (no pixels): attach the images first with "
            f"`dgqa hydrate {src.folder} --root YOUR_DOWNLOAD`"
        )
    files = [str(f) for _, fs in src.config_parts(config) for f in fs]
    ds = datasets.Dataset.from_parquet(files)
    return ds.cast_column("image", datasets.Image(decode=False))


def source_dataset(src: SourceFolder) -> datasets.Dataset:
    """Every row of the source's ``default`` config, in source order, images left encoded."""
    return config_dataset(src, "default")


def pool_dataset(refs: list) -> datasets.Dataset:
    """The pool's images (``dgqa_data.synth.Reference`` files) as an undecoded image column."""
    images = [{"bytes": None, "path": r.path} for r in refs]
    return datasets.Dataset.from_dict(
        {"image": images}, features=datasets.Features({"image": datasets.Image(decode=False)})
    )


def load_backbone(backbone: str, pretrained: bool, features: str, crop_size: int):
    """The frozen feature model and a one-line description of its features."""
    model = build_model(
        backbone, task="regress", pretrained=pretrained, crop_size=crop_size, features=features
    )
    weights = "pretrained" if pretrained else "random weights"
    return model, f"frozen `{backbone}` ({weights}), {features} features of the centre {crop_size} px crop"


def model_features(
    model, ds: datasets.Dataset, crop_size: int, cache_dir: str | Path | None, desc: str, progress: bool
) -> np.ndarray:
    """Features of every row of ``ds`` from ``model`` (cached in ``cache_dir`` when given)."""
    cache = FeatureCache(cache_dir, backbone_id(model, crop_size)) if cache_dir else None
    return extract_features(model, ds, crop_size, cache, desc=desc, progress=progress)


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
    model, described = load_backbone(backbone, pretrained, features, crop_size)
    return model_features(model, ds, crop_size, cache_dir, "features", progress), described


@dataclass
class DdcInputs:
    """What DDC needs, checked before the backbone runs: the training references T (ids and their
    pristine rows), the pool's images, the cells and the label tables."""

    references: list[str]
    pristine: dict[str, tuple[str, int]]
    pool: list
    cells: list[tuple[int, int]]
    quality: np.ndarray
    mos: np.ndarray | None


def ddc_inputs(src: SourceFolder, rows: np.ndarray, types: np.ndarray, pool: str | Path, levels) -> DdcInputs:
    """Check and gather DDC's inputs from the (selected) source rows and the pool folder.

    Raises:
        DgqaError: no pool images, fewer than 2 references with a pristine image, a (type, level)
            of the upsampled plan with no labelled row.
    """
    from dgqa_data.synth import find_references

    where = str(src.folder)
    ref_ids = source_column(src, "reference_id")[rows]
    quality = source_column(src, "quality")[rows]
    mos = source_column(src, "mos")[rows]
    lv = source_column(src, "distortion_level")[rows].astype(np.int64)
    t = types[rows]
    pristine = pristine_rows(src)
    references = training_references(ref_ids[t >= 1], pristine, where)
    cells = ddc_cells(t, lv, quality, levels, where)
    q_table = ddc_label_table(ref_ids, t, lv, quality, references, cells)
    rated_mos = all(m is not None for m, d in zip(mos, t) if d >= 1)
    m_table = ddc_label_table(ref_ids, t, lv, mos, references, cells) if rated_mos else None
    return DdcInputs(references, pristine, find_references(pool), cells, q_table, m_table)


def reference_features(
    src: SourceFolder, inputs: DdcInputs, model, crop_size, cache_dir, progress
) -> np.ndarray:
    """Features of the training references' pristine images, in the order of ``inputs.references``."""
    by_config: dict[str, list[tuple[int, int]]] = {}
    for k, r in enumerate(inputs.references):
        config, row = inputs.pristine[r]
        by_config.setdefault(config, []).append((k, row))
    x = None
    for config, pairs in by_config.items():
        ds = config_dataset(src, config).select([row for _, row in pairs])
        feats = model_features(model, ds, crop_size, cache_dir, "reference features", progress)
        x = np.empty((len(inputs.references), feats.shape[1]), np.float32) if x is None else x
        x[[k for k, _ in pairs]] = feats
    return x


def curate(
    source: str | Path,
    *,
    selection: Any = None,
    downsample: str | None = "drc",
    upsample: str | None = None,
    pool: str | Path | None = None,
    ddc_levels: tuple[int, ...] = (1, 3, 5),
    ddc_options: dict[str, Any] | None = None,
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
    """Restrict ``source`` to ``selection``'s types (if any), apply DRC and/or DDC, write the result:
    the kept source rows plus, with DDC, the chosen pool references' distorted versions with
    transferred labels.

    Every input is checked (types, labels, pool, cells) before the backbone runs; nothing is written
    on error.

    Returns:
        A :class:`dgqa_data.curate.CurateReport`.
    """
    ops = [op for op in (downsample, upsample) if op]
    if downsample not in (None, "drc") or upsample not in (None, "ddc") or not ops:
        raise DgqaError("choose an operation: --downsample drc and/or --upsample ddc")
    if upsample and pool is None:
        raise DgqaError("--upsample ddc needs --pool FOLDER (new pristine photos)")
    src = SourceFolder.open(source)
    types, corpora = src.scan()
    rows = selected_rows(types, selection.selected if selection else None, str(src.folder))
    labels = source_column(src, "quality")[rows]
    normalise_labels(labels, f"{src.folder} quality")  # fail before the backbone runs
    base = subset_name(src.name, selection.target) if selection else src.name
    name = name or base + "".join(f"-{o}" for o in ops)
    out = Path(out).expanduser() if out is not None else src.folder.parent / name
    check_output(out, {"source dataset": src.folder, "pool": pool})
    if out.exists() and not overwrite:  # refused before the backbone runs, not after
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    if cache_dir:
        check_output(cache_dir, {"source dataset": src.folder}, "--cache-dir")
    if upsample and (src.index_only or restricted_corpora(corpora)):
        raise CurationError(
            f"{src.folder}: DDC needs a dataset whose images can be embedded (not index-only)"
        )
    inputs = ddc_inputs(src, rows, types, pool, ddc_levels) if upsample else None
    model, described = load_backbone(backbone, pretrained, features, crop_size)
    record: dict[str, Any] = {"operations": ops, "selection": None}
    if selection:
        record["selection"] = {
            "target": selection.target,
            "rule": selection.rule,
            "selected": list(selection.selected),
        }
    record["source_rows_per_type"] = {
        int(k): int(v) for k, v in sorted(Counter(types[rows].tolist()).items())
    }
    keep = np.zeros(len(types), dtype=bool)
    keep[rows] = True
    if downsample:
        ds = source_dataset(src).select(rows)
        x = model_features(model, ds, crop_size, cache_dir, "features", progress)
        result = drc(x, labels, types=types[rows], seed=seed, where=str(src.folder), **(drc_options or {}))
        keep[:] = False
        keep[rows[result.kept]] = True
        record["drc"] = {**result.report, "features": described, "labels": "quality"}
    extra = None
    if inputs is not None:
        extra, record["ddc"] = upsample_rows(
            src,
            inputs,
            model,
            described,
            pool,
            ddc_levels,
            ddc_options or {},
            seed=seed,
            crop_size=crop_size,
            cache_dir=cache_dir,
            progress=progress,
        )
    return write_curated(
        src.folder,
        keep,
        name=name,
        out=out,
        record=record,
        namespace=namespace,
        overwrite=overwrite,
        progress=progress,
        extra_rows=extra,
    )


def upsample_rows(
    src,
    inputs: DdcInputs,
    model,
    described: str,
    pool,
    levels,
    options: dict[str, Any],
    *,
    seed: int,
    crop_size: int,
    cache_dir,
    progress: bool,
):
    """DDC: choose pool references (features of T and of the pool), transfer their labels, and return
    ``(row generator of their distorted versions, the JSON-ready report)``."""
    ref_x = reference_features(src, inputs, model, crop_size, cache_dir, progress)
    pool_x = model_features(model, pool_dataset(inputs.pool), crop_size, cache_dir, "pool features", progress)
    result = ddc(ref_x, pool_x, pool=str(pool), **options)
    where = f"{src.folder} quality"
    quality = transfer_labels(result, inputs.quality, where, inputs.references, inputs.cells)
    mos = (
        transfer_labels(result, inputs.mos, where, inputs.references, inputs.cells)
        if inputs.mos is not None
        else None
    )
    chosen = [inputs.pool[c] for c in result.chosen.tolist()]
    settings = {
        "k": options.get("k", 5),
        "tol": options.get("tol", 0.05),
        "pool": str(pool),
        "types": sorted({t for t, _ in inputs.cells}),
        "levels": sorted(set(levels)),
        "seed": seed,
    }
    report = ddc_report(result, [r.ref_id for r in inputs.pool], inputs.references, settings)
    report["features"] = described
    report["labels"] = "quality" + (" and mos" if mos is not None else "") + ", transferred (not rated)"
    rows = ddc_rows(
        [r.path for r in chosen], [r.ref_id for r in chosen], inputs.cells, quality, mos, seed=seed
    )
    return rows, report


def levels_arg(text: str) -> tuple[int, ...]:
    """``--ddc-levels``: comma-separated levels in 1..5."""
    try:
        levels = tuple(sorted({int(v) for v in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated levels 1..5, got {text!r}") from None
    if not levels or not all(1 <= v <= 5 for v in levels):
        raise argparse.ArgumentTypeError(f"levels must be in 1..5, got {text!r}")
    return levels


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa curate``."""
    p.add_argument("--source", required=True, help="dataset folder written by dgqa, e.g. hub/dgqa/kadid10k")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--selection", help="selection.json: restrict to its types first")
    which.add_argument(
        "--paper", metavar="TARGET", help="a published DGQA selection: livec, koniq10k, bid, ..."
    )
    p.add_argument("--downsample", choices=["drc"], default=None, help="drc: redundant-cluster downsampling")
    p.add_argument(
        "--upsample", choices=["ddc"], default=None, help="ddc: diverse-content upsampling from --pool"
    )
    p.add_argument("--pool", default=None, help="folder of new pristine photos DDC chooses references from")
    p.add_argument(
        "--ddc-levels", type=levels_arg, default=(1, 3, 5), help="levels of the upsampled images (1,3,5)"
    )
    p.add_argument(
        "--ddc-k", type=at_least(1), default=5, help="label neighbours: the k nearest references (5)"
    )
    p.add_argument(
        "--ddc-tol", type=float, default=0.05, help="... within this cosine distance of the nearest (0.05)"
    )
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
    p.add_argument(
        "--seed", type=int, default=0, help="seeds the rows drawn from large clusters and the DDC images"
    )
    p.add_argument("--out", default=None, help="folder to write (default: beside --source, <name>)")
    p.add_argument("--name", default=None, help="dataset name (default <source>[-sel-<target>][-drc][-ddc])")
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
        upsample=args.upsample,
        pool=args.pool,
        ddc_levels=args.ddc_levels,
        ddc_options={"k": args.ddc_k, "tol": args.ddc_tol},
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
