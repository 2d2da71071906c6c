"""Fault matrix, issue 19 sections 2, 3 and 7: no verb writes inside its input or over a user's files;
the CSV files dgqa writes are safe in a spreadsheet and read back exactly; every entry point gives
the same one line and exit code for a user's mistake."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dgqa_data.build import build_corpus
from dgqa_data.cli import guarded
from dgqa_data.csv_cells import escape, unescape
from dgqa_data.errors import DgqaError, OutputExistsError
from dgqa_data.hub_folder import load_folder_or_hub
from dgqa_data.paths import OUTPUT_MARKER, check_folder, claim_folder
from dgqa_data.scores import write_scores
from dgqa_train.models import build_model, save_model
from tests.fixtures.official import encode, make_kadid10k, reference_crops
from tests.train.test_faults import run

REPO = Path(__file__).resolve().parents[2]


def snapshot(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (hidden ones included)."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def user_folder(path: Path, **files: str) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name.replace("_dot_", ".")).write_text(text)
    return path


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    kadid = make_kadid10k(root / "kadid10k", n_refs=2, types=(1,), levels=(1, 2))
    built = build_corpus("kadid10k", kadid, root / "hub" / "kadid10k", progress=False).out
    reg = save_model(build_model("tiny-resnet", task="regress", pretrained=False, crop_size=32), root / "reg")
    cls = save_model(build_model("tiny-resnet", task="classify", pretrained=False, crop_size=32), root / "cls")
    logits = np.random.default_rng(0).normal(size=(4, 26)).astype(np.float32)
    scores = write_scores(root / "scores", [f"i{k}" for k in range(4)], logits, {"target": "t"})
    return {"root": root, "kadid": kadid, "built": built, "reg": reg, "cls": cls, "scores": scores}


# -- 2. never write inside an input or over a user's files ------------------------------------------
def test_splits_export_never_writes_into_its_dataset(w, capsys):
    ds = w["built"]
    before = snapshot(ds)
    for out, how in [(ds / "splits.csv", "sits inside"), (ds / "README.md", "sits inside"), (ds, "is")]:
        rc, err = run(capsys, "splits", "export", ds, "--out", out, "--overwrite")
        assert rc == 2 and err == (
            f"dgqa splits: error: --out {out} {how} the dataset {ds}: writing there could destroy or change "
            "an input; choose an output outside it\n"
        )
    assert snapshot(ds) == before


REFUSED = [
    ("train", lambda w, o: ["train", "--train_dataset", w["built"], "--output_dir", o, "--backbone", "tiny-resnet"],
     "--output_dir {o} is not empty (README.md, config.json) and is not the output of an earlier dgqa train: "
     "choose a new or empty folder, or pass --overwrite_output_dir to write beside those files"),
    ("train", lambda w, o: ["train", "--train_dataset", w["built"], "--output_dir", o, "--backbone", "tiny-resnet",
                            "--overwrite_output_dir"],
     "--output_dir {o} holds config.json, README.md, which dgqa did not write and dgqa train would replace; "
     "--overwrite_output_dir never replaces files dgqa did not write: choose another folder"),
    ("bench", lambda w, o: ["bench", "--backbones", "tiny-resnet", "--train", w["built"], "--eval", w["built"], "--out", o],
     "--out {o} is not empty (README.md, config.json) and is not the output of an earlier dgqa bench: "
     "choose a new or empty folder, or pass --overwrite to write beside those files"),
    ("probe", lambda w, o: ["probe", "--train", w["built"], "--eval", w["built"], "--out", o],
     "--out {o} is not empty (README.md, config.json) and is not the output of an earlier dgqa probe: "
     "choose a new or empty folder, or pass --overwrite to write beside those files"),
    ("build", lambda w, o: ["build", "kadid10k", "--root", w["kadid"], "--out", o, "--overwrite"],
     "--out {o} holds README.md, which dgqa did not write and dgqa dataset would replace; --overwrite never "
     "replaces files dgqa did not write: choose another folder"),
    ("train-classifier", lambda w, o: ["train-classifier", "--train_dataset", w["built"], "--output_dir", o,
                                       "--backbone", "tiny-resnet"],
     "--output_dir {o} is not empty (README.md, config.json) and is not the output of an earlier dgqa "
     "train-classifier: choose a new or empty folder, or pass --overwrite_output_dir to write beside those files"),
    ("train-classifier", lambda w, o: ["train-classifier", "--train_dataset", w["built"], "--output_dir", o,
                                       "--backbone", "tiny-resnet", "--overwrite_output_dir"],
     "--output_dir {o} holds config.json, README.md, which dgqa did not write and dgqa train-classifier would replace; "
     "--overwrite_output_dir never replaces files dgqa did not write: choose another folder"),
    ("score", lambda w, o: ["score", "--classifier", w["cls"], "--target", w["built"], "--out", o],
     "--out {o} is not empty (README.md, config.json) and is not the output of an earlier dgqa score: "
     "choose a new or empty folder, or pass --overwrite to write beside those files"),
    ("select", lambda w, o: ["select", "--scores", w["scores"], "--out", o],
     "--out {o} is not empty (README.md, config.json) and is not the output of an earlier dgqa select: "
     "choose a new or empty folder, or pass --overwrite to write beside those files"),
    ("subset", lambda w, o: ["subset", "--source", w["built"], "--control", "all", "--out", o, "--overwrite"],
     "--out {o} holds README.md, which dgqa did not write and dgqa dataset would replace; --overwrite never "
     "replaces files dgqa did not write: choose another folder"),
]  # fmt: skip


@pytest.mark.parametrize(("verb", "argv", "message"), REFUSED, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSED)])
def test_a_folder_of_user_files_is_refused(w, tmp_path, capsys, verb, argv, message):
    proj = user_folder(tmp_path / "proj", README_dot_md="# my project\n", config_dot_json="{}\n")
    before = snapshot(proj)
    rc, err = run(capsys, *argv(w, proj))
    assert rc == 2 and err == f"dgqa {verb}: error: {message.format(o=proj)}\n"
    assert snapshot(proj) == before and sorted(p.name for p in tmp_path.iterdir()) == ["proj"]


def test_overwrite_writes_beside_user_files_and_keeps_them(w, tmp_path, capsys):
    out = user_folder(tmp_path / "mydata", notes_dot_txt="mine\n")
    (out / "photos").symlink_to(w["kadid"])  # kept as the link it is, never followed
    rc, err = run(capsys, "build", "kadid10k", "--root", w["kadid"], "--out", out, "--overwrite")
    assert rc == 0, err
    assert (out / "notes.txt").read_text() == "mine\n"
    assert len(load_folder_or_hub(out)["train"]) == 4
    marker = (out / OUTPUT_MARKER).read_text().splitlines()
    assert marker[0] == "dataset" and "README.md" in marker and "notes.txt" not in marker
    (out / "data" / "mine.txt").write_text("also mine\n")  # a file added to dgqa's own output
    rc, err = run(capsys, "build", "kadid10k", "--root", w["kadid"], "--out", out, "--overwrite")
    assert rc == 0, err
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "data" / "mine.txt").read_text() == "also mine\n"
    assert (out / "photos").readlink() == w["kadid"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydata"]  # no temporaries left


def test_training_writes_beside_user_files_with_the_overwrite_flag(w, tmp_path, capsys):
    out = user_folder(tmp_path / "proj", notes_dot_txt="mine\n")
    argv = ["train", "--train_dataset", w["built"], "--output_dir", out, "--backbone", "tiny-resnet",
            "--pretrained", "false", "--crop_size", "32", "--epochs", "1", "--batch_size", "4"]  # fmt: skip
    rc, err = run(capsys, *argv)
    assert rc == 2 and "is not empty (notes.txt)" in err
    rc, err = run(capsys, *argv, "--overwrite_output_dir")
    assert rc == 0, err
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "model.safetensors").is_file()
    assert (out / OUTPUT_MARKER).read_text() == "train\n"
    # its own earlier output is the verb's: a second run needs no flag to get past the folder rule
    rc, err = run(capsys, *argv)
    assert rc == 2 and "holds checkpoints of an earlier run" in err


def test_the_folder_rule_knows_runs_written_before_markers(tmp_path):
    old_run = user_folder(tmp_path / "run", train_config_dot_json="{}", notes_dot_txt="mine")
    claim_folder(old_run, "train", known=("train_config.json",))
    assert (old_run / OUTPUT_MARKER).read_text() == "train\n"
    check_folder(old_run, "train")  # marked now: its own output
    with pytest.raises(OutputExistsError, match="is not the output of an earlier dgqa probe"):
        check_folder(old_run, "probe", known=("probe.json",))


def test_synth_never_writes_into_a_user_folder_named_like_its_partial_output(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "p.png").write_bytes(encode(reference_crops()[0], "PNG"))
    partial = user_folder(tmp_path / ".mine.partial", list_dot_txt="mine\n")
    rc, err = run(capsys, "synth", "--source", photos, "--out", tmp_path / "mine", "--types", "1", "--levels", "1")
    assert rc == 2 and err == (
        f"dgqa synth: error: {partial} exists and is not the partial output of a dgqa synth (no plan.json); "
        "synth would write into it: move it away or choose another --out\n"
    )
    assert snapshot(partial) == {"list.txt": hashlib.sha256(b"mine\n").hexdigest()}


def test_predict_replaces_only_its_own_csv(w, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = Path("=cmd.png")
    image.write_bytes(encode(reference_crops()[0], "PNG"))
    mine = tmp_path / "mine.csv"
    mine.write_text("my,own\n")
    argv = ["predict", "--model", w["reg"], image, "--crops", "1"]
    rc, err = run(capsys, *argv, "--out", mine)
    assert rc == 2 and err == (
        f"dgqa predict: error: --out {mine} exists and is not a CSV written by dgqa predict; pass --overwrite "
        "to replace it\n"
    )
    assert mine.read_text() == "my,own\n"
    out = tmp_path / "q.csv"
    for _ in range(2):  # a second run replaces its own CSV
        assert run(capsys, *argv, "--out", out)[0] == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["image", "quality", "skipped"] and rows[1][0] == "'=cmd.png"  # not run as a formula
    assert run(capsys, *argv, "--out", mine, "--overwrite")[0] == 0


# -- 3. CSV cells: spreadsheet-safe, numbers stay numbers, read back exactly --------------------------
@pytest.mark.parametrize(
    ("cell", "written"),
    [("=1+2", "'=1+2"), ("+x", "'+x"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
     ("\rx", "'\rx"), ("'=x", "''=x"), ("-0.5", "-0.5"), ("+1e-3", "+1e-3"), ("-", "'-"), ("a=b", "a=b"),
     ("'quoted", "'quoted"), ("", ""), (3.5, 3.5)],
)  # fmt: skip
def test_csv_cells(cell, written):
    assert escape(cell) == written
    if isinstance(cell, str):
        assert unescape(written) == cell


def test_split_files_with_formula_names_round_trip(tmp_path, capsys):
    names = ["=cmd.png", "-1.png", "@x.png", "+y.png", "plain.png"]
    root = tmp_path / "mine"
    root.mkdir()
    for i, name in enumerate(names):
        (root / name).write_bytes(encode(reference_crops()[i % 4], "PNG"))
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "mos"], *([n, f"{-0.5 + 0.25 * i}"] for i, n in enumerate(names))])
    ds = tmp_path / "ds"
    build_corpus("folder", root, ds, progress=False, labels="labels.csv", score_range="-1,1")
    stored = (ds / "splits.csv").read_text()
    assert "\n'=cmd.png," in stored and "\n'-1.png," in stored and ",-0.5," in stored
    first = tmp_path / "first.csv"
    assert run(capsys, "splits", "export", ds, "--out", first)[0] == 0
    rows = {r[0]: r for r in csv.reader(first.open())}
    assert set(rows) == {"name", "'=cmd.png", "'-1.png", "'@x.png", "'+y.png", "plain.png"}
    assert rows["'=cmd.png"][1] == "-0.5" and rows["'-1.png"][1] == "-0.25"  # numbers are not escaped
    rc, err = run(capsys, "splits", "import", first, "--dataset", ds, "--name", "rt")
    assert rc == 0, err
    second = tmp_path / "second.csv"
    assert run(capsys, "splits", "export", ds, "--out", second, "--name", "rt")[0] == 0
    assert second.read_text() == first.read_text()


# -- 7. one error style on every entry point ---------------------------------------------------------
def test_guarded_gives_one_line_and_the_exit_code(capsys):
    def fail():
        raise DgqaError("x.csv line 3: bad")

    def interrupt():
        raise KeyboardInterrupt

    assert guarded("dgqa x", fail) == 2 and capsys.readouterr().err == "dgqa x: error: x.csv line 3: bad\n"
    assert guarded("dgqa x", interrupt) == 130 and capsys.readouterr().err == "dgqa x: interrupted\n"
    assert guarded("dgqa x", lambda: 3) == 3 and guarded("dgqa x", lambda: None) == 0


def test_script_entry_points_print_one_line(tmp_path):
    """``python dgqa_train/train.py`` (what ``accelerate launch`` runs) and ``python -m dgqa_data``: the
    line and exit code of ``dgqa``, no traceback."""
    proj = user_folder(tmp_path / "proj", README_dot_md="# mine\n")
    missing = tmp_path / "nope"
    for argv, line in [
        (["dgqa_train/train.py", "--train_dataset", str(missing), "--output_dir", str(proj)],
         f"dgqa train: error: --output_dir {proj} is not empty (README.md) and is not the output of an earlier "
         "dgqa train: choose a new or empty folder, or pass --overwrite_output_dir to write beside those files"),
        (["dgqa_train/train_classifier.py", "--train_dataset", str(missing), "--output_dir", str(proj)],
         f"dgqa train-classifier: error: --output_dir {proj} is not empty (README.md) and is not the output of "
         "an earlier dgqa train-classifier: choose a new or empty folder, or pass --overwrite_output_dir to write "
         "beside those files"),
        (["-m", "dgqa_train.score", "--classifier", str(missing), "--target", str(missing), "--out", str(proj)],
         f"dgqa score: error: --out {proj} is not empty (README.md) and is not the output of an earlier dgqa "
         "score: choose a new or empty folder, or pass --overwrite to write beside those files"),
        (["-m", "dgqa_data", "splits", "export", str(missing), "--out", str(tmp_path / "x.csv")],
         f"python -m dgqa_data splits: error: dataset {missing}: neither a dataset folder with data files nor "
         f"a Hub dataset reachable from here (Couldn't find any data file at {missing}.)"),
    ]:  # fmt: skip
        done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stderr) == (2, line + "\n")
    assert snapshot(proj) == {"README.md": hashlib.sha256(b"# mine\n").hexdigest()}


def test_push_to_hub_is_checked_before_training(w, tmp_path, capsys):
    rc, err = run(capsys, "train", "--train_dataset", w["built"], "--output_dir", tmp_path / "r", "--push_to_hub", "../../etc")
    assert rc == 2 and err == (
        "dgqa train: error: --push_to_hub must be ORG/NAME (letters, digits, '-', '_', '.'; no '..' or '--'), "
        "got '../../etc'\n"
    )
    assert not (tmp_path / "r").exists()
