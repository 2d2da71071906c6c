"""KADID-10k: 81 references x 25 distortion types x 5 levels, crowd MOS on a 1-5 scale."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from dgqa_data.corpora.base import (
    Corpus,
    Item,
    Skip,
    parse_score,
    pristine_item,
    read_csv_rows,
    register,
    require,
    safe_path,
)
from dgqa_data.schema import domain_of

NAME_RE = re.compile(r"^I(\d+)_(\d+)_(\d+)\.png$")
COLUMNS = ("dist_img", "ref_img", "dmos")


def rows(root: Path) -> Iterator[Item | Skip]:
    """Distorted images (config ``default``) then the 81 references (config ``pristine``)."""
    meta = require(root / "dmos.csv", "KADID-10k metadata file dmos.csv")
    require(root / "images", "KADID-10k image folder images/")
    refs: dict[str, str] = {}
    for line, rec in read_csv_rows(meta, COLUMNS):
        where = f"{meta.name} line {line}"
        name, ref = rec["dist_img"].strip(), rec["ref_img"].strip()
        m = NAME_RE.match(Path(name).name)
        if m is None:
            yield Skip(name, where, "name does not match I{ref}_{type}_{level}.png")
            continue
        ref_no, tid, level = (int(g) for g in m.groups())
        if not (1 <= tid <= 25 and 1 <= level <= 5):
            yield Skip(name, where, f"distortion type {tid} / level {level} outside 1..25 / 1..5")
            continue
        mos = parse_score(rec["dmos"], name, where, "dmos")
        std = parse_score(rec.get("var", ""), name, where, "var") if rec.get("var", "").strip() else None
        path = safe_path(root / "images", name, where)
        for value in (mos, path):
            if isinstance(value, Skip):
                yield value
                break
        else:
            refs.setdefault(ref, where)
            yield Item(
                {
                    "image_id": name,
                    "reference_id": ref,
                    "mos": mos,
                    "mos_std": None if isinstance(std, Skip) else std,
                    "quality": KADID10K.quality(mos),
                    "distortion_type": tid,
                    "distortion_level": level,
                    "domain": domain_of(tid),
                    "corpus": "kadid10k",
                    "_where": where,
                },
                path,
            )
    for ref, where in refs.items():
        path = safe_path(root / "images", ref, where)
        if isinstance(path, Skip):
            yield path
            continue
        yield pristine_item(ref, path, "kadid10k", f"{where} (ref_img)")


KADID10K = register(
    Corpus(
        name="kadid10k",
        aliases=("kadid-10k", "kadid"),
        pretty_name="KADID-10k",
        kind="FR, synthetic",
        size="10,125 (81 references)",
        score_name="MOS on a 1-5 ACR scale (the file calls it `dmos`; higher = better)",
        score_range=(1.0, 5.0),
        higher_is_better=True,
        license="other",
        license_note=(
            "No formal licence: the authors state the database is freely available to the research "
            "community and ask that the KADID-10k paper be cited."
        ),
        redistributable=True,
        citation="""@inproceedings{lin2019kadid,
  title={KADID-10k: A Large-scale Artificially Distorted IQA Database},
  author={Lin, Hanhe and Hosu, Vlad and Saupe, Dietmar},
  booktitle={QoMEX},
  year={2019}
}""",
        homepage="https://database.mmsp-kn.de/kadid-10k-database.html",
        splits=(
            "No official split. `default` holds the 10,125 distorted images as `train`; the config "
            "`pristine` holds the 81 references (distortion_type 0). Split by `reference_id` "
            "(all 125 images of a reference together) for any train/test protocol."
        ),
        layout="kadid10k/dmos.csv (dist_img,ref_img,dmos,var) + kadid10k/images/ (I01.png .. I81_25_05.png)",
        rows=rows,
        image_format="png",
    )
)
