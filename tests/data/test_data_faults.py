"""Fault matrix of the data verbs (issue 19, sections 5 and 8): every decode and parse goes through one
guarded path and a bad file is one line naming it; a full disk leaves a dataset as it was."""

from __future__ import annotations

import errno
import hashlib
import pathlib
import shutil
from pathlib import Path

import datasets
import pytest

from dgqa_data.build import build_corpus
from dgqa_data.cli import main
from tests.fixtures.official import encode, make_kadid10k, reference_crops


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def kadid(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("kadid")
    build_corpus("kadid10k", make_kadid10k(tmp / "raw", n_refs=2), tmp / "kadid10k", progress=False)
    return tmp / "kadid10k"


# -- section 8: a full disk -------------------------------------------------------------------------
@pytest.mark.parametrize("fails", [".splits.parquet.tmp", ".splits.csv.tmp", ".README.md.tmp"])
def test_splits_import_on_a_full_disk_changes_nothing_and_the_retry_works(kadid, tmp_path, capsys, monkeypatch, fails):
    ds = tmp_path / "kadid10k"
    shutil.copytree(kadid, ds)
    table = tmp_path / "s.csv"
    assert main(["splits", "export", str(ds), "--out", str(table)]) == 0
    before = snapshot(ds)
    real = pathlib.Path.write_bytes

    def full_disk(self, data):
        if self.name.startswith(fails):
            real(self, data[: len(data) // 2])  # a part is written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    capsys.readouterr()
    assert main(["splits", "import", str(table), "--dataset", str(ds), "--name", "mine"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"python -m dgqa_data splits: error: {ds}: could not write the splits table (No space left on device); "
        "the dataset is unchanged"
    ]
    assert snapshot(ds) == before and sorted(p.name for p in ds.iterdir()) == sorted(
        p.name for p in kadid.iterdir()
    )  # no temporaries left
    assert "user_mine_split_00" not in datasets.load_dataset(str(ds), "splits", split="train").column_names
    monkeypatch.setattr(pathlib.Path, "write_bytes", real)
    assert main(["splits", "import", str(table), "--dataset", str(ds), "--name", "mine"]) == 0
    assert "user_mine_split_00" in datasets.load_dataset(str(ds), "splits", split="train").column_names


# -- section 5: one guarded decoder -----------------------------------------------------------------
def test_a_decompression_bomb_is_a_bad_item_in_the_fast_check_and_the_spaq_resize(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from tests.fixtures.folder import make_folder
    from tests.fixtures.spaq_bid import make_spaq

    folder = make_folder(tmp_path / "shots")
    spaq = make_spaq(tmp_path / "download")
    big = encode(reference_crops(size=(200, 150))[0], "PNG")  # 30000 pixels: over twice the limit below
    (folder / "b.PNG").write_bytes(big)
    victim = sorted((spaq / "TestImage").iterdir())[1]
    victim.write_bytes(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10000)  # the fixtures' 64 x 48 images stay under it
    cases = [
        (["folder", "--root", folder], "b.PNG"),
        (["spaq", "--root", tmp_path / "download", "--option", "resize=512"], victim.name),
    ]
    for argv, name in cases:
        out = tmp_path / f"out-{argv[0]}"
        rc = main(["build", *map(str, argv), "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err and name in err and "refused to decode" in err, err
        assert not out.exists()
        assert main(["build", *map(str, argv), "--out", str(out), "--skip-bad"]) == 0
        skipped = (out / "skipped.csv").read_text()
        assert name in skipped and "refused to decode: Image size (30000 pixels) exceeds limit" in skipped
        assert name not in datasets.load_dataset(str(out), split="train")["image_id"]


def test_a_16_bit_image_keeps_its_range_under_the_spaq_resize(tmp_path):
    import numpy as np
    from PIL import Image

    from tests.fixtures.spaq_bid import make_spaq

    spaq = make_spaq(tmp_path / "download")
    victim = sorted((spaq / "TestImage").iterdir())[0]
    ramp = np.tile(np.linspace(0, 65535, 64), (48, 1)).astype(np.uint16)
    Image.fromarray(ramp).save(victim, format="PNG")
    build_corpus("spaq", tmp_path / "download", tmp_path / "out", progress=False, resize=512)
    ds = datasets.load_dataset(str(tmp_path / "out"), split="train")
    row = ds[ds["image_id"].index(victim.name)]
    pixels = np.asarray(row["image"].convert("L"), dtype=np.float64)
    edge = pixels.shape[1] // 16
    assert pixels[:, :edge].mean() < 30 and pixels[:, -edge:].mean() > 220  # a ramp, not a white image


def latin1(path: Path, line: int) -> Path:
    """Put a Latin-1 'é' (byte 0xe9) into line ``line`` of a UTF-8 file."""
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1].replace(b".", b"\xe9.", 1)
    path.write_bytes(b"\n".join(lines))
    return path


def _label_files(tmp_path: Path) -> list[tuple[str, Path, dict]]:
    from tests.fixtures.folder import make_folder
    from tests.fixtures.kadis700k import make_kadis700k
    from tests.fixtures.koniq10k import make_koniq10k
    from tests.fixtures.tid_agiqa import make_agiqa3k

    return [
        ("folder", make_folder(tmp_path / "folder", labels="labels.csv") / "labels.csv",
         {"labels": "labels.csv", "score_range": "0,100"}),
        ("kadid10k", make_kadid10k(tmp_path / "kadid", n_refs=1, types=(1,)) / "dmos.csv", {}),
        ("agiqa3k", make_agiqa3k(tmp_path / "agiqa") / "data.csv", {}),
        ("koniq10k", make_koniq10k(tmp_path / "koniq") / "koniq10k_scores_and_distributions.csv", {}),
        ("kadis700k", make_kadis700k(tmp_path / "kadis") / "kadis700k_ref_imgs.csv", {}),
    ]  # fmt: skip


def test_a_label_file_that_is_not_utf8_is_one_line_naming_file_and_line(tmp_path):
    from dgqa_data.corpora.base import CorpusError

    for corpus, path, options in _label_files(tmp_path):
        latin1(path, 3)
        with pytest.raises(CorpusError) as err:
            build_corpus(corpus, path.parent, tmp_path / f"out-{corpus}", progress=False, **options)
        assert str(err.value) == f"{path} line 3: not UTF-8 text (byte 0xe9); save the file as UTF-8", corpus
        assert not (tmp_path / f"out-{corpus}").exists()


def test_live_mat_variables_are_checked_by_shape_and_a_negative_spread_is_refused(tmp_path):
    import numpy as np
    import scipy.io

    from dgqa_data.build import BuildError
    from dgqa_data.corpora.base import CorpusError
    from tests.fixtures.live_csiq import make_live

    root = make_live(tmp_path / "live")
    mat_path = root / "dmos_realigned.mat"
    mat = {k: v for k, v in scipy.io.loadmat(mat_path).items() if not k.startswith("__")}
    scipy.io.savemat(mat_path, mat | {"dmos_new": mat["dmos_new"].reshape(2, -1)})  # 982 values, 2 x 491
    with pytest.raises(CorpusError, match=r"variable 'dmos_new' has shape 2 x 491; release 2 holds a 1 x 982 vector"):
        build_corpus("live", root, tmp_path / "o1", progress=False)
    first = int(np.flatnonzero(mat["orgs"].ravel() == 0)[0])
    std = mat["dmos_std"].astype(np.float64)
    std[0, first] = -2.5
    scipy.io.savemat(mat_path, mat | {"dmos_std": std})
    with pytest.raises(BuildError, match=rf"dmos_realigned.mat entry {first + 1}: .*dmos_std -2.5 is negative"):
        build_corpus("live", root, tmp_path / "o2", progress=False)
    report = build_corpus("live", root, tmp_path / "o3", progress=False, skip_bad=True)
    assert [s.reason for s in report.skipped] == ["dmos_std -2.5 is negative"]


def test_tid2013_without_mos_txt_says_the_order_check_was_skipped(tmp_path, capsys):
    from tests.fixtures.tid_agiqa import make_tid2013

    root = make_tid2013(tmp_path / "tid", refs=(1,), types=(1,), levels=(1,), mos_file=False)
    build_corpus("tid2013", root, tmp_path / "out", progress=False)
    assert capsys.readouterr().err.count(
        f"note: {root / 'mos.txt'} is absent (it is optional): the check that mos_with_names.txt lists the "
        "images in the official order (its MOS line by line against mos.txt) was skipped"
    ) == 1


def test_synth_sources_alike_up_to_the_first_dot_get_distinct_ids(tmp_path, capsys):
    from dgqa_data.synth import synthesize

    src = tmp_path / "src"
    src.mkdir()
    crops = reference_crops(size=(32, 24))
    for i, name in enumerate(["photo.jpg", "photo.png", "img.v1.png", "img.v2.png", "solo.png"]):
        (src / name).write_bytes(encode(crops[i % len(crops)], "JPEG" if name.endswith("jpg") else "PNG"))
    out = synthesize(src, tmp_path / "s", types=[1], levels=[1], progress=False)
    assert "note: 4 reference(s) share a name up to the first dot; their images are named by the whole name " \
        "instead: img.v1.png -> img_v1_png, img.v2.png -> img_v2_png, photo.jpg -> photo_jpg, photo.png -> photo_png" \
        in capsys.readouterr().err  # fmt: skip
    ids = datasets.load_dataset(str(out), split="train")["image_id"]
    assert len(ids) == len(set(ids)) == 10
    assert {"photo_jpg.png", "photo_png_01_01.png", "img_v2_png.png", "solo.png", "solo_01_01.png"} <= set(ids)
    (src / "photo_jpg.png").write_bytes(encode(crops[0], "PNG"))  # its cut clashes with photo.jpg's whole name
    with pytest.raises(ValueError, match=r"references photo.jpg, photo_jpg.png would name their images alike"):
        synthesize(src, tmp_path / "s2", types=[1], levels=[1], progress=False)


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("scores.parquet", b"not parquet", "scores.parquet: not a parquet file written by `dgqa score`"),
        ("scores.json", b"[1, 2]", "scores.json: holds [1, 2], not the JSON object `dgqa score` writes"),
        ("scores.json", b"{oops", "scores.json: not JSON written by `dgqa score`"),
    ],
)
def test_select_on_a_broken_scores_folder_is_one_line(tmp_path, capsys, file, content, message):
    import numpy as np

    from dgqa_data.scores import write_scores

    folder = write_scores(tmp_path / "sc", ["a.png", "b.png"], np.zeros((2, 26), np.float32), {"target": "t"})
    (folder / file).write_bytes(content)
    assert main(["select", "--scores", str(folder), "--out", str(tmp_path / "sel")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"python -m dgqa_data select: error: {folder}/{message}") and "Traceback" not in line
    assert not (tmp_path / "sel").exists()


def test_a_dataset_whose_parquet_files_have_no_rows_is_one_line(kadid, tmp_path):
    import pyarrow.parquet as pq

    from dgqa_data.errors import DgqaError
    from dgqa_data.hub_folder import load_folder_or_hub

    ds = tmp_path / "empty"
    shutil.copytree(kadid, ds)
    data = sorted((ds / "data").glob("train-*.parquet"))[0]
    pq.write_table(pq.read_table(data).slice(0, 0), data)
    with pytest.raises(DgqaError, match=rf"^dataset {ds}: {data} has 0 rows \(no images\)$"):
        load_folder_or_hub(ds)
