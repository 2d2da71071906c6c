"""KonIQ-10k: 10,073 authentic in-the-wild photos (YFCC100M), crowd MOS on a 1-5 ACR scale."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import datasets

from dgqa_data.corpora.base import (
    Corpus,
    CorpusError,
    Item,
    Skip,
    parse_score,
    read_csv_rows,
    register,
    require,
    safe_path,
)
from dgqa_data.schema import AUTHENTIC_DOMAIN, UNKNOWN_TYPE

SCORES = "koniq10k_scores_and_distributions.csv"
SETS = "koniq10k_distributions_sets.csv"
COUNTS = ("c1", "c2", "c3", "c4", "c5")
COLUMNS = ("image_name", *COUNTS, "c_total", "MOS", "SD", "MOS_zscore")
RESOLUTIONS = ("512x384", "1024x768")  # "auto" takes the first present: DGQA uses 512x384
SPLIT_OF_SET = {"training": "train", "validation": "validation", "test": "test"}


def image_folder(root: Path, resolution: str) -> Path:
    """``root/512x384`` or ``root/1024x768``; ``"auto"`` prefers 512x384 when both are there."""
    if resolution == "auto":
        for res in RESOLUTIONS:
            if (root / res).is_dir():
                return root / res
        raise CorpusError(
            f"missing KonIQ-10k image folder: neither {root / '512x384'} nor {root / '1024x768'}"
        )
    if resolution not in RESOLUTIONS:
        raise CorpusError(f"koniq10k: resolution must be auto, 512x384 or 1024x768, got {resolution!r}")
    return require(root / resolution, f"KonIQ-10k image folder {resolution}/")


def read_sets(path: Path) -> dict[str, tuple[str, str]]:
    """``image_name -> (set, where)`` from the official split file."""
    return {
        rec["image_name"].strip(): (rec["set"].strip(), f"{SETS} line {line}")
        for line, rec in read_csv_rows(path, ("image_name", "set"))
    }


def rows(root: Path, *, resolution: str = "auto") -> Iterator[Item | Skip]:
    """Rows of ``koniq10k_scores_and_distributions.csv`` in file order.

    Images on disk but not in the scores file (the 1024x768 zip carries 300 unscored extras) are
    ignored. With ``koniq10k_distributions_sets.csv`` beside it, rows go to the official
    ``train``/``validation``/``test`` splits; without it, all rows are ``train``.

    Args:
        root: the folder holding the CSV files and the image folder(s).
        resolution: ``"512x384"``, ``"1024x768"`` or ``"auto"`` (512x384 when present, else 1024x768).
    """
    scores = require(root / SCORES, f"KonIQ-10k metadata file {SCORES}")
    folder = image_folder(root, resolution)
    sets = read_sets(root / SETS) if (root / SETS).exists() else None
    for line, rec in read_csv_rows(scores, COLUMNS):
        where = f"{SCORES} line {line}"
        name = rec["image_name"].strip()
        values = {col: parse_score(rec[col], name, where, col) for col in COLUMNS[1:]}
        path = safe_path(folder, name, where)
        bad = next((v for v in (*values.values(), path) if isinstance(v, Skip)), None)
        if bad is not None:
            yield bad
            continue
        if not float(values["c_total"]).is_integer():
            yield Skip(name, where, f"c_total {rec['c_total']!r} is not a whole number of ratings")
            continue
        split = "train"
        if sets is not None:
            if name not in sets:
                yield Skip(name, where, f"not listed in {SETS}")
                continue
            official, set_where = sets[name]
            if official not in SPLIT_OF_SET:
                yield Skip(name, set_where, f"set {official!r} is not one of {', '.join(SPLIT_OF_SET)}")
                continue
            split = SPLIT_OF_SET[official]
        yield Item(
            {
                "image_id": name,
                "reference_id": None,
                "mos": values["MOS"],
                "mos_std": values["SD"],
                "quality": KONIQ10K.quality(values["MOS"]),
                "distortion_type": UNKNOWN_TYPE,
                "distortion_level": 0,
                "domain": AUTHENTIC_DOMAIN,
                "corpus": "koniq10k",
                "mos_zscore": values["MOS_zscore"],
                "rating_distribution": [values[c] for c in COUNTS],
                "num_ratings": int(values["c_total"]),
                "_where": where,
            },
            path,
            split=split,
        )


KONIQ10K = register(
    Corpus(
        name="koniq10k",
        aliases=("koniq-10k", "koniq"),
        pretty_name="KonIQ-10k",
        kind="NR, authentic",
        size="10,073",
        official_split="`train` / `validation` / `test` 7,058 / 1,000 / 2,015",
        score_name="MOS on a 1-5 ACR scale (column `MOS`; higher = better)",
        score_range=(1.0, 5.0),
        higher_is_better=True,
        license="other",
        license_note=(
            "No licence text was found in the official download or on the database page. The images "
            "come from YFCC100M (Flickr photos under their owners' own licences). dgqa therefore treats "
            "the images as not redistributable: build and use the dataset locally, publish index-only "
            "(paths + sha256), and cite the paper below."
        ),
        redistributable=False,
        citation="""@article{hosu2020koniq,
  title={KonIQ-10k: An Ecologically Valid Database for Deep Learning of Blind Image Quality Assessment},
  author={Hosu, Vlad and Lin, Hanhe and Sziranyi, Tamas and Saupe, Dietmar},
  journal={IEEE Transactions on Image Processing},
  volume={29},
  pages={4041--4056},
  year={2020}
}""",
        homepage="https://database.mmsp-kn.de/koniq-10k-database.html",
        splits=(
            "With `koniq10k_distributions_sets.csv` (from the authors' GitHub repo subpic/koniq, not in "
            "the zips) beside the scores file, rows follow the official random split: `train` / "
            "`validation` / `test` = 7,058 / 1,000 / 2,015 (`training` is renamed `train`). Without it, "
            "all 10,073 rows are `train`. The DGQA target is all 10,073 images of the 512x384 release."
        ),
        layout=(
            "koniq10k/koniq10k_scores_and_distributions.csv (image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,"
            "MOS_zscore) + koniq10k/512x384/*.jpg and/or koniq10k/1024x768/*.jpg "
            "[+ koniq10k/koniq10k_distributions_sets.csv]"
        ),
        rows=rows,
        extra_features={
            "mos_zscore": datasets.Value("float32"),
            "rating_distribution": datasets.Sequence(datasets.Value("float32"), length=5),
            "num_ratings": datasets.Value("int32"),
        },
        image_format="jpeg",
    )
)
