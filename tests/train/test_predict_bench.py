"""``dgqa predict`` (files, datasets, CSV) and ``dgqa bench`` (grid, skip finished cells, leaderboard)."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest

from dgqa_data.build import build_corpus
from dgqa_train import cli
from dgqa_train.bench import Cell, is_finished, make_cells, protocol, run_bench
from dgqa_train.config import parse_config
from dgqa_train.data import load_iqa_dataset
from dgqa_train.predict import predict_dataset, predict_files
from dgqa_train.train import TrainConfig, train
from tests.fixtures.official import make_kadid10k

TINY = ["--backbone", "tiny-resnet", "--no_pretrained", "--crop_size", "32", "--test_crops", "3",
        "--batch_size", "4", "--num_workers", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def kadid(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("kadid")
    make_kadid10k(root / "raw", n_refs=1)
    build_corpus("kadid10k", root / "raw", root / "ds", progress=False)
    return root / "raw", str(root / "ds")


@pytest.fixture(scope="module")
def model_dir(kadid, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model")
    argv = [
        *TINY,
        "--train_dataset",
        kadid[1],
        "--epochs",
        "1",
        "--output_dir",
        str(out),
        "--eval_datasets",
        kadid[1],
    ]
    train(parse_config(TrainConfig, argv))
    return out


def test_predict_cli_prints_one_line_per_image_and_writes_csv(kadid, model_dir, tmp_path, capsys):
    raw, _ = kadid
    images = sorted(str(p) for p in (raw / "images").glob("I01_0*_0[135].png"))
    assert len(images) == 9
    out_csv = tmp_path / "scores" / "q.csv"
    assert (
        cli.main(["predict", "--model", str(model_dir), *images, "--out", str(out_csv), "--crops", "3"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == images
    printed = [float(line.split("\t")[1]) for line in lines]
    assert all(0.0 <= q <= 1.0 for q in printed)
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == images and [float(r["quality"]) for r in rows] == printed

    # The same images scored from the built dataset (identical bytes, same seeded crops) score the same.
    by_id = dict(predict_dataset(model_dir, kadid[1], crops=3))
    assert len(by_id) == 15
    files = predict_files(model_dir, images, crops=3)
    assert files == pytest.approx([by_id[Path(p).name] for p in images], abs=1e-12)
    assert [round(q, 6) for q in files] == printed

    # More than one batch: a progress bar on stderr (batches of 4: 9 images -> 3 batches).
    assert cli.main(["predict", "--model", str(model_dir), *images, "--crops", "1", "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert "predicting" in err and "3/3" in err


def test_predict_cli_errors(model_dir, tmp_path, capsys):
    assert cli.main(["predict", "--model", str(model_dir)]) == 2
    assert "exactly one" in capsys.readouterr().err
    assert cli.main(["predict", "--model", str(model_dir), str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_bench_runs_the_grid_once_and_writes_the_leaderboard(kadid, tmp_path, capsys):
    ds = kadid[1]
    out = tmp_path / "bench"
    extra = [*TINY[2:], "--epochs", "1"]  # backbone comes from the grid
    first = run_bench(["tiny-resnet", "tiny-vit"], [ds], [ds], 2, out, train_args=extra)
    assert len(first["ran"]) == 4 and not first["skipped"] and not first["failed"]
    results = sorted(out.glob("runs/*/*/seed*/results.json"))
    assert len(results) == 4
    mtimes = {p: p.stat().st_mtime_ns for p in results}

    rows = list(csv.DictReader((out / "leaderboard.csv").read_text().splitlines()))
    assert {(r["backbone"], r["train"], r["eval"], r["seeds"]) for r in rows} == {
        ("tiny-resnet", ds, ds, "2"),
        ("tiny-vit", ds, ds, "2"),
    }
    for r in rows:
        srccs = []
        for p in results:
            data = json.loads(p.read_text())
            if data["config"]["backbone"] == r["backbone"]:
                srccs.append(data["last_epoch"]["metrics"][ds]["srcc"])
        assert float(r["srcc_median"]) == pytest.approx(sum(srccs) / 2)
        assert float(r["srcc_min"]) == pytest.approx(min(srccs)) and float(r["srcc_max"]) == pytest.approx(
            max(srccs)
        )
    md = (out / "leaderboard.md").read_text()
    assert md.count("| tiny-") == 2 and "SRCC" in md
    assert (out / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"

    # Second run through the CLI: every cell is finished with the same config hash -> nothing retrains.
    argv = ["bench", "--backbones", "tiny-resnet,tiny-vit", "--train", ds, "--eval", ds, "--seeds", "2"]
    argv += ["--out", str(out), "--train-args", " ".join(TINY[2:]), "--epochs", "1"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "ran 0, skipped 4, failed 0" in captured.out
    assert "bench cells" in captured.err and "4/4" in captured.err  # the progress bar over cells
    assert {p: p.stat().st_mtime_ns for p in results} == mtimes

    # A changed recipe is a different cell: not finished.
    (cell,) = make_cells(["tiny-resnet"], [ds], [ds], [123], out, [*extra, "--lr_head", "1e-3"])
    assert not is_finished(cell)
    assert is_finished(Cell(cell.backbone, cell.train, cell.seed, cell.output_dir, cell.argv[:-2]))


def test_bench_cells_of_seeded_splits(tmp_path):
    """``PATH:split-*``: one cell per split of a split-* train set, paired with the same split of a split-*
    eval set; a plain train set is evaluated on every split's test part."""
    d, e = "hub/dgqa/koniq10k", "hub/dgqa/livec"
    cells = make_cells(["r"], [f"{d}:split-*", e], [f"{d}:split-*", f"{e}:test"], [1, 2], tmp_path, [], 3)
    assert [(c.train, c.seed, c.split) for c in cells] == [
        *((f"{d}:split-{k:02d}", s, k) for s in (1, 2) for k in range(3)),
        (e, 1, None),
        (e, 2, None),
    ]
    assert cells[4].argv[cells[4].argv.index("--eval_datasets") + 1 :][:2] == [f"{d}:split-01", f"{e}:test"]
    assert cells[-1].eval_map == {
        f"{d}:split-*": [f"{d}:split-{k:02d}" for k in range(3)],
        f"{e}:test": [f"{e}:test"],
    }
    assert len({c.output_dir for c in cells}) == 8
    assert protocol(f"{d}:split-*", 10, "image") == "seeded 80/20 by image x10 (median)"
    assert protocol(f"{d}:test") == "official test split" and protocol(d) == "whole dataset"
    assert protocol(f"{d}:split-03-test", by="reference") == "seeded 80/20 by reference, split-03, test part"


def test_bench_and_model_card_read_specs_with_the_one_parser(tmp_path, monkeypatch):
    """Windows paths, folders with a colon in their name and Hub ids mean the same to the bench and the
    model card as to the loaders (:func:`dgqa_data.specs.parse_spec`)."""
    from dataclasses import asdict

    from dgqa_data.errors import DgqaError
    from dgqa_train.bench import is_all_splits, slug, with_split
    from dgqa_train.model_card import model_card

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a:b").mkdir()
    assert with_split("C:/data/koniq:split-*-test", 4) == "C:/data/koniq:split-04-test"
    assert with_split("a:b:split-*", 1) == "a:b:split-01" and not is_all_splits("a:b")
    assert not is_all_splits("C:\\data\\koniq")
    with pytest.raises(DgqaError, match=r"^org/x:split-\*x: '\*' only stands for the split number, as in org/x:split-\*$"):
        is_all_splits("org/x:split-*x")
    assert slug("a:b").startswith("a_b-") and slug("a:b:test").startswith("a_b-test-")
    assert protocol("a:b:official-val") == "official val split"
    assert protocol("org/x:user_koniq_split") == "imported split user_koniq_split, test part"
    card = {
        t: model_card({"config": asdict(TrainConfig(train_dataset=t, epochs=1, output_dir="o"))})
        for t in ("org/name:split-03", "org/name/", "a:b:test", "C:/data/livec:test", "hub/dgqa/livec")
    }
    assert "datasets:\n- org/name\nmetrics:" in card["org/name:split-03"]
    assert "datasets:\n- org/name\nmetrics:" in card["org/name/"]
    assert not [t for t, text in card.items() if "datasets:" in text and t.startswith(("a:b", "C:", "hub/"))]


@pytest.fixture(scope="module")
def kadid5(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("kadid5")
    make_kadid10k(root / "raw", n_refs=5)
    build_corpus("kadid10k", root / "raw", root / "ds", progress=False)
    return str(root / "ds")


def test_bench_on_seeded_splits_reports_the_median_over_splits(kadid5, tmp_path, capsys):
    ds, out = kadid5, tmp_path / "bench"
    argv = ["bench", "--backbones", "tiny-resnet", "--train", f"{ds}:split-*", "--eval", f"{ds}:split-*,{ds}"]
    argv += [
        "--seeds",
        "1",
        "--splits",
        "3",
        "--out",
        str(out),
        "--train-args",
        " ".join(TINY[2:]),
        "--epochs",
        "1",
    ]
    assert cli.main(argv) == 0
    assert "ran 3, skipped 0, failed 0" in capsys.readouterr().out
    results = {}
    for k in range(3):
        spec = f"{ds}:split-{k:02d}"
        (path,) = out.glob(f"runs/tiny-resnet/ds-split-{k:02d}-*/seed123/results.json")
        results[k] = json.loads(path.read_text())
        assert results[k]["train"]["dataset"] == spec and results[k]["train"]["images"] == 60
        assert results[k]["eval_datasets"] == [spec, ds]
        train, test = load_iqa_dataset(spec), load_iqa_dataset(spec, role="evaluation")
        assert (train.num_rows, test.num_rows) == (60, 15)
        assert not set(train["reference_id"]) & set(test["reference_id"])  # disjoint by reference
    assert len({tuple(load_iqa_dataset(f"{ds}:split-{k:02d}-test")["image_id"]) for k in range(3)}) > 1

    rows = {r["eval"]: r for r in csv.DictReader((out / "leaderboard.csv").read_text().splitlines())}
    split_row, whole_row = rows[f"{ds}:split-*"], rows[ds]
    assert (split_row["train"], split_row["seeds"], split_row["splits"], split_row["runs"]) == (
        f"{ds}:split-*",
        "1",
        "3",
        "3",
    )
    assert split_row["protocol"] == "seeded 80/20 by reference x3 (median)"
    for metric in ("srcc", "plcc"):
        per_split = [results[k]["last_epoch"]["metrics"][f"{ds}:split-{k:02d}"][metric] for k in range(3)]
        assert float(split_row[f"{metric}_median"]) == pytest.approx(statistics.median(per_split))
        assert float(split_row[f"{metric}_min"]) == pytest.approx(min(per_split))
    assert whole_row["protocol"] == "whole dataset" and whole_row["splits"] == "3"
    per_split = [results[k]["last_epoch"]["metrics"][ds]["srcc"] for k in range(3)]
    assert float(whole_row["srcc_median"]) == pytest.approx(statistics.median(per_split))
    md = (out / "leaderboard.md").read_text()
    assert "| seeded 80/20 by reference x3 (median) | tiny-resnet |" in md
    assert json.loads((out / "bench.json").read_text())["splits"] == 3


def test_push_to_hub_uploads_the_model_folder_without_checkpoints(model_dir, monkeypatch):
    import huggingface_hub
    from huggingface_hub.hf_api import CommitInfo, GitRefInfo, GitRefs

    from dgqa_data import __version__
    from dgqa_train.model_card import push_to_hub

    calls = []
    url = "https://huggingface.co/me/model/commit/abc"

    class FakeApi:  # the HfApi methods the shared publish path calls for a model repo
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def list_repo_refs(self, repo_id, **kw):
            calls.append(("list_repo_refs", repo_id, kw))
            return GitRefs(
                branches=[GitRefInfo(name="main", ref="refs/heads/main", target_commit="0ld")],
                converts=[],
                tags=[],
            )

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))
            return CommitInfo(
                commit_url=url, commit_message=kw["commit_message"], commit_description="", oid="abc"
            )

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert push_to_hub(model_dir, "me/model", private=True, token="hf_x") == url
    assert [c[0] for c in calls] == ["init", "create_repo", "list_repo_refs", "upload_folder"]
    assert calls[0] == ("init", "hf_x")
    assert calls[1] == ("create_repo", "me/model", {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls[2] == ("list_repo_refs", "me/model", {"repo_type": "model"})
    assert calls[3][1] == {
        "folder_path": str(model_dir),
        "repo_id": "me/model",
        "repo_type": "model",
        "revision": "main",
        "ignore_patterns": [".*", "*/.*", "checkpoints/*", "logs/*", "*.tmp"],
        "delete_patterns": "*",
        "parent_commit": "0ld",
        "commit_message": "Upload dgqa quality regressor",
        "commit_description": f"Uploaded with dgqa {__version__} from the folder {model_dir.name}.",
    }
    assert {"model.safetensors", "config.json", "README.md", "results.json"} <= {
        p.name for p in model_dir.iterdir()
    }


def test_push_to_hub_never_shows_the_token(model_dir, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    from dgqa_data.publish import PublishError
    from dgqa_train.model_card import push_to_hub

    secret = "hf_TopSecretToken123"

    class EchoingApi:  # a server that echoes the request headers into its error
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, **kw):
            from types import SimpleNamespace

            message = f"403 Forbidden: headers {{'authorization': 'Bearer {self.token}'}}"
            response = SimpleNamespace(headers={}, request=None, status_code=403)  # what the error reads
            raise HfHubHTTPError(message, response=response)

    monkeypatch.setattr(huggingface_hub, "HfApi", EchoingApi)
    with pytest.raises(PublishError) as err:
        push_to_hub(model_dir, "me/model", token=secret)
    assert "the Hub refused the request" in str(err.value) and "Bearer ***" in str(err.value)
    assert secret not in str(err.value) and err.value.__cause__ is None and err.value.__suppress_context__
