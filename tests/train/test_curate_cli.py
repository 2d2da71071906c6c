"""`dgqa curate --downsample drc` end to end on a small synthetic dataset, loaded with load_dataset."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from dgqa_data.curate import drc
from dgqa_data.selection import Selection
from dgqa_train import cli
from dgqa_train.features import FeatureCache
from tests.train.synthetic import TRAIN_SCENES, scene_crops, simple_distort, write_folder

CROP = 32
TYPES = (1, 2, 3, 9)
COPIES = 24  # copies of one row (reference 0, type 9, level 3): with it, a redundant cluster of 25
FLAGS = ["--backbone", "tiny-resnet", "--no-pretrained", "--crop-size", str(CROP), "--drc-sim", "0.9999"]


def refs_0() -> str:
    return scene_crops(TRAIN_SCENES[:2], size=CROP, per_scene=2)[0][0]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """4 references x 4 types x levels 1, 3, 5 + pristine (52 rows) + 24 copies of one row (76 rows)."""
    refs = scene_crops(TRAIN_SCENES[:2], size=CROP, per_scene=2)

    def rows():
        for r, (ref_id, img) in enumerate(refs):
            yield {
                "image": img,
                "image_id": f"{ref_id}.png",
                "reference_id": ref_id,
                "distortion_type": 0,
                "quality": 1.0 - 0.01 * r,
            }
            for t in TYPES:
                for lv in (1, 3, 5):
                    yield {
                        "image": simple_distort(img, t, lv),
                        "image_id": f"{ref_id}_{t:02d}_{lv}.png",
                        "reference_id": ref_id,
                        "distortion_type": t,
                        "distortion_level": lv,
                        "quality": 1.0 - 0.15 * lv - 0.01 * r,
                    }
        ref_id, img = refs[0]
        dup = simple_distort(img, 9, 3)
        for c in range(COPIES):
            yield {
                "image": dup,
                "image_id": f"dup_{c:02d}.png",
                "reference_id": ref_id,
                "distortion_type": 9,
                "distortion_level": 3,
                "quality": 0.55,
            }

    return write_folder(tmp_path_factory.mktemp("curate") / "hub" / "dgqa" / "tiny", rows())


def test_curate_drc_writes_a_loadable_dataset_with_its_record(source, tmp_path, monkeypatch):
    out = tmp_path / "hub" / "dgqa" / "tiny-drc"
    cache = tmp_path / "features"
    rc = cli.main(
        [
            "curate",
            "--source",
            str(source),
            "--downsample",
            "drc",
            "--seed",
            "0",
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
            *FLAGS,
        ]
    )
    assert rc in (0, None)
    record = json.loads((out / "curation.json").read_text())
    rep = record["drc"]
    assert record["operations"] == ["drc"] and record["source_rows"] == 76 and record["rows"] == 71
    assert rep["settings"] == {"sim": 0.9999, "label_gap": 1.0, "max_cluster": 20, "keep": 0.5, "seed": 0}
    assert rep["clusters"] == 1 and rep["cluster_sizes"] == {"25": 1} and rep["kept"] == 71
    assert rep["kept_per_type"] == {"0": 4, "1": 12, "2": 12, "3": 12, "9": 31}

    # the kept rows are exactly what drc() keeps on the cached features
    (npz,) = cache.glob("*.npz")
    src_ds = datasets.load_dataset(str(source), split="train")
    from dgqa_train.features import image_key

    x = FeatureCache(cache, npz.stem).get(
        [image_key(im) for im in src_ds.cast_column("image", datasets.Image(decode=False))["image"]]
    )
    expected = drc(x, src_ds["quality"], sim=0.9999, seed=0).kept
    monkeypatch.chdir(tmp_path / "hub")
    ds = datasets.load_dataset("dgqa/tiny-drc", split="train")
    assert ds.num_rows == 71 and ds.features == src_ds.features
    assert ds["image_id"] == [src_ds["image_id"][i] for i in expected]
    cluster = {f"{refs_0()}_09_3.png", *(f"dup_{c:02d}.png" for c in range(COPIES))}
    assert sum(i in cluster for i in ds["image_id"]) == 20  # max(20, floor(25 / 2))

    card = (out / "README.md").read_text()
    assert "Redundant-cluster downsampling (DRC)" in card and "cosine similarity > 0.9999" in card
    assert "| 9 | jpeg2000 | 36 | 31 |" in card and "- rows considered: 76, kept: 71" in card
    assert "SynDR-IQA" in card and "tiny-resnet" in card


def test_curate_with_a_selection_and_the_same_seed_is_reproducible(source, tmp_path):
    sel = Selection(target="phone", rule="top-k", selected=[2, 9]).save(tmp_path / "selection.json")
    outs = []
    for k in range(2):
        out = tmp_path / f"o{k}" / "tiny-sel-phone-drc"
        assert cli.main(
            [
                "curate",
                "--source",
                str(source),
                "--selection",
                str(sel),
                "--downsample",
                "drc",
                "--out",
                str(out),
                "--seed",
                "1",
                *FLAGS,
            ]
        ) in (0, None)
        outs.append(json.loads((out / "curation.json").read_text()))
    assert outs[0] == outs[1]
    assert outs[0]["rows"] == 12 + 31 and outs[0]["selection"]["selected"] == [2, 9]
    assert outs[0]["drc"]["kept_per_type"] == {"2": 12, "9": 31}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--paper", "livec"],
            "the selection names type(s) absent from the source: 10 (jpeg), 17 (darken), 18 (mean_shift)",
        ),
        (["--out", "INSIDE"], "sits inside the source dataset"),
        (["--out", "EXISTING"], "already exists; pass --overwrite to replace it"),
    ],
)
def test_curate_refuses_bad_input_and_writes_nothing(source, tmp_path, capsys, extra, message):
    out = tmp_path / "x" / "out"
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    swap = {"INSIDE": str(source / "inside"), "EXISTING": str(existing)}
    extra = [swap.get(e, e) for e in extra]
    argv = ["curate", "--source", str(source), "--downsample", "drc", *FLAGS, *extra]
    if "--out" not in extra:
        argv += ["--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() and not (source / "inside").exists()
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]


def test_constant_labels_are_refused_before_the_backbone_runs(tmp_path, capsys):
    img = np.zeros((CROP, CROP, 3), np.uint8)
    src = write_folder(
        tmp_path / "flat",
        ({"image": img + i, "image_id": f"{i}.png", "distortion_type": 1, "quality": 0.5} for i in range(3)),
    )
    assert (
        cli.main(
            ["curate", "--source", str(src), "--downsample", "drc", "--out", str(tmp_path / "o"), *FLAGS]
        )
        == 2
    )
    assert "every label is 0.5; constant labels cannot be normalised" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- DDC ----------------------------------------------------------------------------------------
DDC_LEVELS = (1, 5)


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """12 crops of photos the source never shows (PNG files in a folder, as a user's pool is)."""
    from PIL import Image

    from tests.train.synthetic import HELDOUT_SCENES

    folder = tmp_path_factory.mktemp("pool") / "photos"
    folder.mkdir()
    for ref_id, img in scene_crops(HELDOUT_SCENES + TRAIN_SCENES[2:], size=CROP, per_scene=3, seed=1):
        Image.fromarray(img).save(folder / f"{ref_id}.png")
    return folder


def test_curate_drc_then_ddc_writes_source_rows_plus_transferred_rows(source, pool, tmp_path, monkeypatch):
    from dgqa_data.curate import ddc, reference_label_table, transfer_labels
    from dgqa_train.features import image_key

    out = tmp_path / "hub" / "dgqa" / "tiny-drc-ddc"
    cache = tmp_path / "features"
    argv = [
        "curate",
        "--source",
        str(source),
        "--downsample",
        "drc",
        "--upsample",
        "ddc",
        "--pool",
        str(pool),
    ]
    argv += [
        "--ddc-levels",
        ",".join(map(str, DDC_LEVELS)),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        *FLAGS,
    ]
    assert cli.main(argv) in (0, None)

    # what ddc() and transfer_labels() give on the cached features of T and the pool
    (npz,) = cache.glob("*.npz")
    feats = FeatureCache(cache, npz.stem)
    src_ds = datasets.load_dataset(str(source), split="train").cast_column(
        "image", datasets.Image(decode=False)
    )
    pristine = {r["reference_id"]: r["image"] for r in src_ds if r["distortion_type"] == 0}
    refs = list(dict.fromkeys(r for r, t in zip(src_ds["reference_id"], src_ds["distortion_type"]) if t > 0))
    files = sorted(pool.glob("*.png"))
    result = ddc(
        feats.get([image_key(pristine[r]) for r in refs]),
        feats.get([image_key({"path": str(f)}) for f in files]),
    )
    assert result.chosen.size >= 1
    cells = [(t, lv) for t in TYPES for lv in DDC_LEVELS]
    dist = [r for r in src_ds if r["distortion_type"] > 0]
    table, order = reference_label_table(
        [r["reference_id"] for r in dist],
        [(r["distortion_type"], r["distortion_level"]) for r in dist],
        [r["quality"] for r in dist],
        refs,
    )
    expected = transfer_labels(result, table[:, [order.index(c) for c in cells]])

    monkeypatch.chdir(tmp_path / "hub")
    ds = datasets.load_dataset("dgqa/tiny-drc-ddc", split="train")
    chosen = [files[c].name for c in result.chosen]
    up = [r for r in ds if r["label_transferred"]]
    assert ds.num_rows == 71 + len(up) and len(up) == len(chosen) * len(cells)
    assert sum(not t for t in ds["label_transferred"]) == 71  # the DRC-kept source rows
    for r in up:
        i = chosen.index(r["reference_id"].removeprefix("ddc/"))
        j = cells.index((r["distortion_type"], r["distortion_level"]))
        assert r["quality"] == pytest.approx(expected[i, j], abs=1e-6)
        assert r["mos"] == pytest.approx(expected[i, j], abs=1e-6)  # the fixture's mos is its quality
        assert r["image_id"].startswith("ddc/") and r["image"].size == (CROP, CROP)

    record = json.loads((out / "curation.json").read_text())
    assert record["operations"] == ["drc", "ddc"] and record["rows"] == ds.num_rows
    assert record["upsampled_per_type"] == {str(t): len(chosen) * len(DDC_LEVELS) for t in TYPES}
    rep = record["ddc"]
    assert [c["reference"] for c in rep["chosen"]] == chosen
    assert rep["rule1_passed"] == result.rule1.size and rep["median_nn_distance"] == pytest.approx(
        result.median_nn
    )
    card = (out / "README.md").read_text()
    assert f"**The labels of the {len(up)} upsampled images are transferred, not rated**" in card
    for c, near, w in zip(chosen, result.neighbours, result.weights):
        cell = ", ".join(f"{refs[k]} ({x:.3f})" for k, x in zip(near, w))
        assert f"| {c} | " in card and cell in card
    assert f"| 9 | jpeg2000 | 36 | 31 | {len(chosen) * len(DDC_LEVELS)} |" in card


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("copies", "none of 4 candidate(s) is new content inside the references' spread"),
        ("empty", "no pristine images found in"),
        ("inside", "holds the pool"),
        ("level 2", "no labelled row of type 1 (gaussian_blur) at level 2 to transfer labels from"),
        ("no pool", "--upsample ddc needs --pool FOLDER"),
    ],
)
def test_ddc_refuses_bad_input_in_one_line_and_writes_nothing(source, pool, tmp_path, capsys, case, message):
    """E.g. a pool of the training references themselves has no new content: nothing passes rule 1."""
    from PIL import Image

    out = tmp_path / "o"
    bad = tmp_path / "bad"
    bad.mkdir()
    if case == "copies":
        for ref_id, img in scene_crops(TRAIN_SCENES[:2], size=CROP, per_scene=2):
            Image.fromarray(img).save(bad / f"{ref_id}.png")
    where = {"copies": bad, "empty": bad, "inside": out / "pool", "level 2": pool}.get(case)
    if case == "inside":
        where.mkdir(parents=True)
    argv = ["curate", "--source", str(source), "--upsample", "ddc", "--out", str(out), *FLAGS]
    argv += ["--pool", str(where)] if where else []
    argv += ["--ddc-levels", "2"] if case == "level 2" else []
    assert cli.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]
    assert len(err) == 1 and message in err[0]  # progress bars aside
    assert not out.exists() or [p.name for p in out.iterdir()] == ["pool"]
