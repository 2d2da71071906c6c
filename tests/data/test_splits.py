"""Published splits: the seeded protocol, ``splits.csv`` + the ``splits`` config of every build, the
``PATH:split-NN`` names, and ``dgqa splits export / import`` of the common CSV format."""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from dgqa_data.build import build_corpus
from dgqa_data.cli import main
from dgqa_data.errors import DgqaError
from dgqa_data.hub_folder import (
    FINGERPRINT_PREFIX,
    content_fingerprint,
    parse_card,
    read_card_metadata,
    render_card,
)
from dgqa_data.splits import (
    SPLIT_SEED,
    SplitTable,
    load_split_table,
    seeded_splits,
    select_split,
    table_of_loaded,
)
from tests.fixtures.koniq10k import ROWS as KONIQ_ROWS
from tests.fixtures.koniq10k import make_koniq10k
from tests.fixtures.livec import TRAINING, make_livec
from tests.fixtures.official import make_kadid10k

SEEDED = [f"split_{k:02d}" for k in range(10)]


@pytest.fixture(scope="module")
def kadid(tmp_path_factory) -> Path:
    """A KADID-10k build with 6 references (15 images each)."""
    tmp = tmp_path_factory.mktemp("kadid")
    build_corpus("kadid10k", make_kadid10k(tmp / "raw", n_refs=6), tmp / "kadid10k", progress=False)
    return tmp / "kadid10k"


@pytest.fixture
def kadid_copy(kadid, tmp_path) -> Path:
    out = tmp_path / "kadid10k"
    shutil.copytree(kadid, out)
    return out


def rows_of(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def ids(ds) -> list[str]:
    return list(ds["image_id"])


# -- the protocol -----------------------------------------------------------------------------------


def test_seeded_splits_group_by_reference_and_are_reproducible():
    refs = [f"R{r:02d}" for r in range(81) for _ in range(5)]
    names = [f"{r}_{i}" for i, r in enumerate(refs)]
    splits = seeded_splits(refs, names)
    assert len(splits) == 10 and SPLIT_SEED == 1414
    for values in splits:
        train = {r for r, v in zip(refs, values) if v == "train"}
        test = {r for r, v in zip(refs, values) if v == "test"}
        assert not train & test and len(train) == round(0.8 * 81) == 65 and len(test) == 16
    # exactly the documented recipe: permute the sorted group keys with default_rng((seed, k))
    groups = sorted(set(refs))
    for k, values in enumerate(splits):
        first = {groups[j] for j in np.random.default_rng((SPLIT_SEED, k)).permutation(81)[:65]}
        assert [v == "train" for v in values] == [r in first for r in refs]
    again = seeded_splits(list(reversed(refs)), list(reversed(names)))  # order of rows does not matter
    assert all((a[::-1] == b).all() for a, b in zip(splits, again))
    assert len({tuple(v) for v in splits}) == 10  # ten different splits


def test_seeded_splits_by_image_and_tiny_sets():
    names = [f"{i}.jpg" for i in range(1162)]
    for values in seeded_splits([None] * 1162, names):
        assert (values == "train").sum() == round(0.8 * 1162) == 930
    assert [v.tolist() for v in seeded_splits([None], ["a"], n=2)] == [["train"], ["train"]]
    for values in seeded_splits([None, None], ["a", "b"]):  # each side gets one group
        assert sorted(values.tolist()) == ["test", "train"]
    mixed = seeded_splits(["r1", "r1", None], ["x", "y", "z"], n=3)
    assert all(v[0] == v[1] for v in mixed)  # x and y share their reference


# -- what a build writes ---------------------------------------------------------------------------


def test_build_writes_splits_csv_and_the_splits_config(kadid):
    header = rows_of(kadid / "splits.csv")[0].keys()
    assert list(header) == ["image_id", "mos", "mos_std", *SEEDED]
    table = rows_of(kadid / "splits.csv")
    assert len(table) == 90 and table[0]["image_id"] == "I01_01_01.png" and table[0]["mos"] == "4.79"
    meta = read_card_metadata(kadid)
    assert [c["config_name"] for c in meta["configs"]] == ["default", "pristine", "splits"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"}]
    fingerprint = meta["configs"][-1].pop("description")
    assert fingerprint == FINGERPRINT_PREFIX + content_fingerprint(kadid, meta["configs"][-1])[:32]
    assert meta["configs"][-1] == {
        "config_name": "splits",
        "data_files": [{"split": "train", "path": "splits.parquet"}],
    }
    assert [i["config_name"] for i in meta["dataset_info"]] == ["default", "pristine", "splits"]

    default = datasets.load_dataset(str(kadid))  # the default config is as it was
    assert list(default) == ["train"] and default["train"].num_rows == 90
    assert "image" in default["train"].features and "split_00" not in default["train"].features
    loaded = datasets.load_dataset(str(kadid), "splits", split="train")
    assert loaded.column_names == ["image_id", "mos", "mos_std", *SEEDED]
    assert loaded.features["mos"] == datasets.Value("float32") and loaded.num_rows == 90
    assert loaded["split_03"] == [r["split_03"] for r in table]

    refs = {r: r.split("_")[0] + ".png" for r in default["train"]["image_id"]}
    for col in SEEDED:  # by reference: 6 refs -> 5 train, 1 test, never both
        train = {refs[r["image_id"]] for r in table if r[col] == "train"}
        test = {refs[r["image_id"]] for r in table if r[col] == "test"}
        assert len(train) == 5 and len(test) == 1 and not train & test

    card = (kadid / "README.md").read_text()
    assert "## Published splits" in card and "default_rng((1414, k))" in card and "By reference image" in card
    assert "| split | train images | test images | train references | test references |" in card
    assert "| split_00 | 75 | 15 | 5 | 1 |" in card


def test_koniq_official_column_and_livec_rater_images(tmp_path):
    koniq = tmp_path / "koniq10k"
    build_corpus("koniq10k", make_koniq10k(tmp_path / "kraw"), koniq, progress=False)
    table = {r["image_id"]: r for r in rows_of(koniq / "splits.csv")}
    assert list(next(iter(table.values()))) == ["image_id", "mos", "mos_std", *SEEDED, "official"]
    split_of = {"training": "train", "validation": "validation", "test": "test"}
    assert {n: r["official"] for n, r in table.items()} == {r[0]: split_of[r[3]] for r in KONIQ_ROWS}
    assert all(sorted(r[c] for r in table.values()).count("test") == round(0.2 * 6) for c in SEEDED)
    card = (koniq / "README.md").read_text()
    assert (
        "By image" in card
        and "| split_00 | 5 | 1 |\n" in card
        and "`official`: the split of this dataset" in card
    )

    livec = tmp_path / "livec"
    build_corpus("livec", make_livec(tmp_path / "lraw"), livec, progress=False)
    rows = rows_of(livec / "splits.csv")
    assert len(rows) == 12 and [r["official"] for r in rows[:7]] == ["train"] * 7
    assert all(r[c] == "" for r in rows[:7] for c in SEEDED)  # t1..t7 are in no seeded split
    assert all(r[c] in ("train", "test") for r in rows[7:] for c in SEEDED)
    assert "7 row(s), the 7 images shown to the raters" in (livec / "README.md").read_text()
    test = select_split(datasets.load_dataset(str(livec)), str(livec), "split-00", role="evaluation")
    assert test.num_rows == 1 and not set(ids(test)) & set(TRAINING)
    # built with the rater images dropped: the very same splits
    dropped = tmp_path / "livec-drop"
    build_corpus("livec", tmp_path / "lraw", dropped, progress=False, training_images="drop")
    assert rows_of(dropped / "splits.csv") == [
        {k: v for k, v in r.items() if k != "official"} for r in rows[7:]
    ]


def test_unscored_corpora_get_no_splits(tmp_path):
    from tests.fixtures.folder import make_folder

    out = tmp_path / "f"
    build_corpus("folder", make_folder(tmp_path / "imgs"), out, progress=False)
    assert not (out / "splits.csv").exists()
    assert [c["config_name"] for c in read_card_metadata(out)["configs"]] == ["default"]


# -- PATH:split-NN -----------------------------------------------------------------------------------


def as_old_build(folder: Path) -> Path:
    """The folder as a build from before splits existed: no table, no ``splits`` config."""
    (folder / "splits.csv").unlink()
    (folder / "splits.parquet").unlink()
    meta, body = parse_card((folder / "README.md").read_text())
    meta["configs"] = [c for c in meta["configs"] if c["config_name"] != "splits"]
    meta["dataset_info"] = [i for i in meta["dataset_info"] if i["config_name"] != "splits"]
    (folder / "README.md").write_text(render_card(meta, body))
    return folder


def test_split_names_select_rows(kadid, kadid_copy):
    loaded = datasets.load_dataset(str(kadid))
    table = {r["image_id"]: r for r in rows_of(kadid / "splits.csv")}
    train = select_split(loaded, str(kadid), "split-03")  # a training load: the train part
    test = select_split(loaded, str(kadid), "split-03", role="evaluation")
    assert ids(train) == [i for i, r in table.items() if r["split_03"] == "train"]
    assert ids(test) == [i for i, r in table.items() if r["split_03"] == "test"]
    assert ids(select_split(loaded, str(kadid), "split-03-test")) == ids(test)
    assert ids(select_split(loaded, str(kadid), "split-3-train", role="target")) == ids(train)
    assert not {i[:3] for i in ids(train)} & {i[:3] for i in ids(test)}
    with pytest.raises(
        DgqaError, match=r"no split 'split-10'; it has train and the seeded splits split-00 \.\. split-09"
    ):
        select_split(loaded, str(kadid), "split-10")

    old = as_old_build(kadid_copy)  # computed on the fly: the same splits
    assert load_split_table(old).columns == SplitTable.from_csv((kadid / "splits.csv").read_text()).columns
    old_loaded = datasets.load_dataset(str(old))
    assert table_of_loaded(old_loaded).to_csv() == (kadid / "splits.csv").read_text()
    for name in ("split-00", "split-07-test"):
        assert ids(select_split(old_loaded, str(old), name)) == ids(select_split(loaded, str(kadid), name))


# -- dgqa splits export / import ---------------------------------------------------------------------


def test_export_import_export_round_trips(kadid_copy, tmp_path, capsys):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["splits", "export", str(kadid_copy), "--out", str(first)]) == 0
    lines = first.read_text().splitlines()
    assert lines[0] == "name,mos,std," + ",".join(SEEDED) and lines[1].startswith("I01_01_01.png,4.79,0.4,")
    assert main(["splits", "import", str(first), "--dataset", str(kadid_copy), "--name", "rt"]) == 0
    assert "split_00 -> user_rt_split_00 (train 75, test 15)" in capsys.readouterr().out
    assert main(["splits", "export", str(kadid_copy), "--out", str(second), "--name", "rt"]) == 0
    assert second.read_bytes() == first.read_bytes()

    # the dataset's own columns are untouched; the imported ones load by name, also as a config
    table = rows_of(kadid_copy / "splits.csv")
    assert list(table[0]) == ["image_id", "mos", "mos_std", *SEEDED, *(f"user_rt_{c}" for c in SEEDED)]
    loaded = datasets.load_dataset(str(kadid_copy))
    assert ids(select_split(loaded, str(kadid_copy), "user_rt_split_04-test")) == ids(
        select_split(loaded, str(kadid_copy), "split-04-test")
    )
    config = datasets.load_dataset(str(kadid_copy), "splits", split="train")  # not the cached old table
    assert "user_rt_split_09" in config.column_names
    assert main(["splits", "export", str(kadid_copy), "--out", str(first)]) == 2  # exists
    assert main(["splits", "import", str(second), "--dataset", str(kadid_copy), "--name", "rt"]) == 2
    assert "already has user_rt_split_00" in capsys.readouterr().err


def write(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def kadid_rows(folder: Path) -> list[dict[str, str]]:
    return rows_of(folder / "splits.csv")


def test_import_accepts_the_published_variants(kadid_copy, tmp_path):
    rows = kadid_rows(kadid_copy)
    # pyiqa meta-info: ref_name, dist_name, dmos, std + ratio802_seed123_split_NN (train / val)
    pyiqa = write(
        tmp_path / "meta_info_KADID10kDataset.csv",
        ["ref_name", "dist_name", "dmos", "std", "ratio802_seed123_split_01", "ratio802_seed123_split_02"],
        [
            [
                r["image_id"][:3] + ".png",
                r["image_id"],
                r["mos"],
                r["mos_std"],
                "train" if i % 5 else "val",
                "val",
            ]
            for i, r in enumerate(rows)
        ],
    )
    assert main(["splits", "import", str(pyiqa), "--dataset", str(kadid_copy), "--name", "pyiqa"]) == 0
    # icbcbicc: dis_img_path with the corpus folder, score; one `split` column coded 0/1/2
    icb = write(
        tmp_path / "kadid.csv",
        ["dis_img_path", "dis_type", "ref_img_path", "score", "split"],
        [
            [f"KADID-10k/images/{r['image_id']}", "GBLUR", "x", float(r["mos"]), i % 3]
            for i, r in enumerate(rows)
        ],
    )
    assert main(["splits", "import", str(icb), "--dataset", str(kadid_copy)]) == 0  # --name: the file stem
    # image_name in another letter case (TID2013 names vary), mos_std, split_0 in capitals, a row missing
    other = write(
        tmp_path / "x.csv",
        ["image_name", "mos", "mos_std", "split_0"],
        [[r["image_id"].upper(), r["mos"], r["mos_std"], "TEST"] for r in rows[1:]],
    )
    assert main(["splits", "import", str(other), "--dataset", str(kadid_copy), "--name", "x"]) == 0

    table = kadid_rows(kadid_copy)
    assert list(table[0])[len(SEEDED) + 3 :] == [
        "user_pyiqa_ratio802_seed123_split_01",
        "user_pyiqa_ratio802_seed123_split_02",
        "user_kadid_split",
        "user_x_split_0",
    ]
    assert [r["user_pyiqa_ratio802_seed123_split_01"] for r in table[:6]] == ["val"] + ["train"] * 4 + ["val"]
    assert [r["user_kadid_split"] for r in table[:4]] == ["train", "val", "test", "train"]
    assert table[0]["user_x_split_0"] == "" and table[1]["user_x_split_0"] == "test"
    # an evaluation load of a train/val column gets its val part
    loaded = datasets.load_dataset(str(kadid_copy))
    held = select_split(loaded, str(kadid_copy), "user_pyiqa_ratio802_seed123_split_02", role="evaluation")
    assert held.num_rows == 90


def test_koniq_file_with_the_0_100_scores_matches_mos_zscore(tmp_path, capsys):
    koniq = tmp_path / "koniq10k"
    build_corpus("koniq10k", make_koniq10k(tmp_path / "raw"), koniq, progress=False)
    pyiqa = write(
        tmp_path / "meta_info_KonIQ10kDataset.csv",
        ["img_name", "mos", "std", "split"],
        [[n, z, 0.5, {"training": 0, "validation": 1, "test": 2}[s]] for n, _, z, s in KONIQ_ROWS],
    )
    assert main(["splits", "import", str(pyiqa), "--dataset", str(koniq), "--name", "pyiqa"]) == 0
    assert "scores match the dataset's mos_zscore" in capsys.readouterr().out
    table = {r["image_id"]: r for r in rows_of(koniq / "splits.csv")}
    part = {"training": "train", "validation": "val", "test": "test"}
    assert {n: table[n]["user_pyiqa_split"] for n, *_ in KONIQ_ROWS} == {
        n: part[s] for n, _, _, s in KONIQ_ROWS
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: rows + [["nope.png", "1", "0.1", "train"]], r"1 name\(s\) match no image .*line 92: 'nope.png'"),
        (lambda rows: rows + [rows[0]], r"line 92: 'I01_01_01.png' names the image 'I01_01_01.png' again \(first at line 2\)"),
        (lambda rows: [[*rows[0][:3], "dev"], *rows[1:]], r"line 2 \(I01_01_01.png\): split column 'split_00' has 'dev'"),
        (lambda rows: [[rows[0][0], "1.5", *rows[0][2:]], rows[1], [rows[2][0], "9", *rows[2][2:]], *rows[3:]],
         r"2 score\(s\) differ .*line 2 \(I01_01_01.png\): mos 1.5, dataset mos 4.79; line 4"),
    ],
)  # fmt: skip
def test_import_refuses_bad_files(kadid_copy, tmp_path, capsys, edit, message):
    rows = [[r["image_id"], r["mos"], r["mos_std"], r["split_00"]] for r in kadid_rows(kadid_copy)]
    bad = write(tmp_path / "bad.csv", ["name", "mos", "std", "split_00"], edit(rows))
    before = (kadid_copy / "splits.csv").read_bytes()
    assert main(["splits", "import", str(bad), "--dataset", str(kadid_copy)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert (kadid_copy / "splits.csv").read_bytes() == before  # nothing written


def test_import_allow_unknown_skips_and_lists_names(kadid_copy, tmp_path, capsys):
    rows = [[r["image_id"], "test"] for r in kadid_rows(kadid_copy)[:3]] + [["I99_01_01.png", "train"]]
    f = write(tmp_path / "few.csv", ["name", "split"], rows)
    assert main(["splits", "import", str(f), "--dataset", str(kadid_copy), "--allow-unknown"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 name(s) that match no image: line 5: 'I99_01_01.png'" in out and "(test 3)" in out
    assert [r["user_few_split"] for r in kadid_rows(kadid_copy)[:4]] == ["test", "test", "test", ""]


def test_import_without_a_split_column_or_into_an_old_build(kadid_copy, tmp_path, capsys):
    rows = [[r["image_id"], r["mos"]] for r in kadid_rows(kadid_copy)]
    assert (
        main(
            [
                "splits",
                "import",
                str(write(tmp_path / "n.csv", ["name", "mos"], rows)),
                "--dataset",
                str(kadid_copy),
            ]
        )
        == 2
    )
    assert "no split column" in capsys.readouterr().err
    old = as_old_build(kadid_copy)  # import makes the table (seeded columns computed) and the config
    f = write(tmp_path / "s.csv", ["name", "split"], [[r[0], "train"] for r in rows])
    assert main(["splits", "import", str(f), "--dataset", str(old), "--name", "s"]) == 0
    assert list(rows_of(old / "splits.csv")[0]) == ["image_id", "mos", "mos_std", *SEEDED, "user_s_split"]
    assert "splits" in datasets.get_dataset_config_names(str(old))


def test_hydrate_keeps_the_splits_table(tmp_path):
    from dgqa_data.hydrate import hydrate

    raw = make_kadid10k(tmp_path / "raw", n_refs=2)
    build_corpus("kadid10k", raw, tmp_path / "index", progress=False, index_only=True)
    hydrate(tmp_path / "index", raw, tmp_path / "full", progress=False)
    assert (tmp_path / "full" / "splits.csv").read_bytes() == (tmp_path / "index" / "splits.csv").read_bytes()
    meta = read_card_metadata(tmp_path / "full")
    assert [i["config_name"] for i in meta["dataset_info"]] == ["default", "pristine", "splits"]
    assert datasets.load_dataset(str(tmp_path / "full"), "splits", split="train").num_rows == 30
