"""Linear probe: grouped ridge, feature cache, multilevel features, frozen-backbone classifier, `dgqa probe`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.utils import set_seed
from scipy.stats import spearmanr

from dgqa_train import cli
from dgqa_train.data import load_iqa_dataset
from dgqa_train.features import FeatureCache, backbone_id, extract_features
from dgqa_train.models import ModelConfig, build_model, load_model, save_model
from dgqa_train.probe import fit_mlp, fit_ridge, probe
from dgqa_train.train_classifier import ClassifierTrainConfig, train_classifier
from tests.train.synthetic import TRAIN_SCENES, make_source, scene_crops, simple_distort, write_folder

CROP = 32


def grouped_data(n_groups: int, per_group: int, dim: int, seed: int):
    """Rows of a group share a large content vector and a content-driven label offset; the
    degradation ``s`` moves the features along one fixed direction."""
    direction = np.random.default_rng(1234).normal(size=dim)
    rng = np.random.default_rng(seed)
    content = rng.normal(scale=3.0, size=(n_groups, dim))
    offset = rng.uniform(0, 1, n_groups)
    groups = np.repeat(np.arange(n_groups), per_group)
    s = rng.uniform(0, 1, n_groups * per_group)
    x = content[groups] + s[:, None] * direction + rng.normal(scale=0.3, size=(len(s), dim))
    return x, 0.5 * offset[groups] + s, groups.astype(str), s


def test_grouped_cross_validation_does_not_reward_memorised_content():
    x, y, groups, _ = grouped_data(30, 10, 40, seed=0)
    grouped = fit_ridge(x, y, groups=groups, seed=0)[1]
    per_row = fit_ridge(x, y, seed=0)[1]
    assert per_row["alpha"] == 1.0  # leave-rows-out folds see every group's content in training
    assert grouped["alpha"] >= 100.0
    assert fit_ridge(x, y, groups=groups, seed=0)[1] == grouped  # seeded folds: the same choice
    # without content the degradation is recovered almost exactly
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, 200)
    feats = s[:, None] * rng.normal(size=20) + rng.normal(scale=0.05, size=(200, 20))
    predict, _ = fit_ridge(feats[:150], s[:150])
    assert spearmanr(predict(feats[150:]), s[150:]).statistic > 0.95


def test_dual_and_primal_ridge_agree():
    x, y, _, _ = grouped_data(3, 10, 40, seed=3)
    wide = np.hstack([x, np.random.default_rng(1).normal(size=(30, 60))])  # 30 rows, 100 features: dual
    predict, info = fit_ridge(wide, y, alphas=[10.0])
    z = (wide - wide.mean(0)) / (wide.std(0) + 1e-6)
    w = np.linalg.solve(z.T @ z + 10.0 * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    np.testing.assert_allclose(predict(wide), z @ w + y.mean(), rtol=1e-6, atol=1e-8)
    assert info["alpha"] == 10.0


def test_mlp_head_is_seeded():
    x, y, _, _ = grouped_data(10, 10, 16, seed=2)
    a = fit_mlp(x, y, seed=0, epochs=5)[0](x)
    b = fit_mlp(x, y, seed=0, epochs=5)[0](x)
    c = fit_mlp(x, y, seed=1, epochs=5)[0](x)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_feature_cache_round_trip(tmp_path):
    cache = FeatureCache(tmp_path / "f", "bb-32-x")
    cache.update(["a" * 64, "b" * 64], np.arange(6, dtype=np.float32).reshape(2, 3))
    again = FeatureCache(tmp_path / "f", "bb-32-x")
    assert len(again) == 2 and "b" * 64 in again and "c" * 64 not in again
    np.testing.assert_array_equal(again.get(["b" * 64, "a" * 64]), [[3, 4, 5], [0, 1, 2]])
    assert [p.name for p in (tmp_path / "f").iterdir()] == ["bb-32-x.npz"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, Path]:
    """A small labelled source (quality falls with the level) and a labelled target."""
    refs = scene_crops(TRAIN_SCENES, size=40, per_scene=2)

    def rows(prefix: str, levels: tuple[int, ...]):
        for r, (ref_id, img) in enumerate(refs):
            yield {
                "image": img,
                "image_id": f"{prefix}{ref_id}.png",
                "reference_id": ref_id,
                "distortion_type": 0,
                "quality": 1.0,
            }
            for lv in levels:
                yield {"image": simple_distort(img, 1, lv, r), "image_id": f"{prefix}{ref_id}_{lv}.png",
                       "reference_id": ref_id, "distortion_type": 1, "distortion_level": lv,
                       "quality": 1 - lv / 5}  # fmt: skip

    root = tmp_path_factory.mktemp("probe")
    return write_folder(root / "src", rows("", (1, 3, 5))), write_folder(root / "tgt", rows("t/", (2, 4)))


def test_multilevel_model_saves_and_loads(tmp_path):
    model = build_model(ModelConfig(backbone="tiny-resnet", task="classify", pretrained=False, crop_size=CROP,
                                    features="multilevel"))  # fmt: skip
    pooled = build_model("tiny-resnet", task="classify", pretrained=False, crop_size=CROP)
    assert model.feature_dim > pooled.feature_dim
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.config.features == "multilevel"
    x = torch.rand(2, 3, CROP, CROP)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), again.eval()(x))


def test_extract_features_uses_the_cache(labelled, tmp_path):
    src, _ = labelled
    ds = load_iqa_dataset(str(src))
    model = build_model(
        "tiny-resnet", task="regress", pretrained=False, crop_size=CROP, features="multilevel"
    )
    cache = FeatureCache(tmp_path, backbone_id(model, CROP))
    first = extract_features(model, ds, CROP, cache, progress=False)
    assert first.shape == (len(ds), model.feature_dim) and np.isfinite(first).all()

    def fail(_):
        raise AssertionError("the backbone ran although every image is cached")

    model.forward_features = fail
    np.testing.assert_array_equal(
        extract_features(model, ds, CROP, FeatureCache(tmp_path, backbone_id(model, CROP)), progress=False),
        first,
    )


def test_feature_cache_replaces_and_extends(tmp_path):
    cache = FeatureCache(tmp_path, "bb")
    cache.update(["a" * 64, "b" * 64], np.array([[0, 1], [2, 3]], np.float32))
    cache.update(["c" * 64, "a" * 64], np.array([[4, 5], [6, 7]], np.float32))  # a new key, a replaced one
    with np.load(tmp_path / "bb.npz") as data:  # the file format: keys in the order first added, one row each
        assert data["keys"].tolist() == ["a" * 64, "b" * 64, "c" * 64] and data["keys"].dtype == "<U64"
        np.testing.assert_array_equal(data["features"], [[6, 7], [2, 3], [4, 5]])
    np.testing.assert_array_equal(FeatureCache(tmp_path, "bb").get(["c" * 64, "a" * 64]), [[4, 5], [6, 7]])


def test_extraction_is_the_same_with_worker_processes_and_without_a_cache(labelled, tmp_path):
    src, _ = labelled
    ds = load_iqa_dataset(str(src))
    ds = ds.select([*range(len(ds)), 2, 0])  # repeated images run once
    model = build_model("tiny-resnet", task="regress", pretrained=False, crop_size=CROP, features="multilevel")
    thread = extract_features(model, ds, CROP, FeatureCache(tmp_path / "t", "x"), batch_size=5, progress=False)
    workers = extract_features(model, ds, CROP, FeatureCache(tmp_path / "w", "x"), batch_size=5, progress=False,
                               num_workers=2)  # fmt: skip
    np.testing.assert_array_equal(workers, thread)
    np.testing.assert_array_equal(extract_features(model, ds, CROP, batch_size=7, progress=False), thread)
    np.testing.assert_array_equal(thread[-2:], thread[[2, 0]])
    assert extract_features(model, ds.select([]), CROP, FeatureCache(tmp_path / "t", "x")).shape == (0, model.feature_dim)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_an_undecodable_image_is_named_in_one_line(labelled, tmp_path, num_workers):
    import datasets

    from dgqa_data.errors import DgqaError

    src, _ = labelled
    good = load_iqa_dataset(str(src)).select(range(6)).select_columns(["image"])
    bad = datasets.Dataset.from_dict(
        {"image": [{"bytes": b"hello", "path": "broken.png"}]}, features=good.features
    )
    ds = datasets.concatenate_datasets([good, bad, good.select([0])])
    model = build_model("tiny-resnet", task="regress", pretrained=False, crop_size=CROP)
    with pytest.raises(DgqaError, match="broken.png") as err:
        extract_features(model, ds, CROP, batch_size=4, progress=False, num_workers=num_workers)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)


def test_probe_records_and_errors(labelled, tmp_path):
    src, tgt = labelled
    records = probe([str(src)], str(tgt), backbone="tiny-resnet", pretrained=False, crop_size=CROP,
                    seeds=(0, 1), cache_dir=tmp_path / "cache", progress=False)  # fmt: skip
    assert [(r["train"], r["seed"], r["train_images"], r["head"]) for r in records] == [
        (str(src), 0, 32, "ridge"),
        (str(src), 1, 32, "ridge"),
    ]
    assert all(np.isfinite([r["srcc"], r["plcc"]]).all() and r["alpha"] > 0 for r in records)
    unlabelled = write_folder(tmp_path / "u", ({"image": np.zeros((40, 40, 3), np.uint8), "image_id": f"{i}.png",
                                                "distortion_type": -1} for i in range(3)), split="test")  # fmt: skip
    with pytest.raises(ValueError, match=r"evaluation dataset .*u: 3 of 3 row\(s\) have no quality label"):
        probe(
            [str(src)],
            str(unlabelled),
            backbone="tiny-resnet",
            pretrained=False,
            crop_size=CROP,
            progress=False,
        )


def test_probe_command_writes_results(labelled, tmp_path, capsys):
    src, tgt = labelled
    rc = cli.main(["probe", "--train", str(src), "--eval", str(tgt), "--out", str(tmp_path / "p"),
                   "--backbone", "tiny-resnet", "--no_pretrained", "--crop_size", str(CROP), "--seeds", "2",
                   "--head", "mlp"])  # fmt: skip
    assert rc == 0
    records = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert [r["seed"] for r in records] == [0, 1] and {r["head"] for r in records} == {"mlp"}
    assert "SRCC" in capsys.readouterr().out
    assert list((tmp_path / "p" / "features").glob("*.npz"))


def test_frozen_backbone_classifier_trains_only_the_head(tmp_path):
    refs = scene_crops(TRAIN_SCENES, size=40, per_scene=2)
    source = make_source(tmp_path / "source", refs, types=(1, 2, 3), levels=(4,))
    config = ClassifierTrainConfig(train_dataset=str(source), output_dir=str(tmp_path / "cls"), backbone="tiny-resnet",
                                   pretrained=False, crop_size=CROP, features="multilevel", freeze_backbone=True,
                                   epochs=3, batch_size=8, lr=1e-2, eval_fraction=0.25)  # fmt: skip
    metrics = train_classifier(config)
    set_seed(0, device_specific=False)
    initial = build_model(ModelConfig(backbone="tiny-resnet", task="classify", pretrained=False, crop_size=CROP,
                                      features="multilevel"))  # fmt: skip
    trained = load_model(tmp_path / "cls")
    for name, value in initial.backbone.state_dict().items():
        torch.testing.assert_close(trained.backbone.state_dict()[name], value, msg=name)
    assert not torch.equal(trained.head.weight, initial.head.weight)
    assert metrics["frozen_backbone"] and len(metrics["epochs"]) == 3
    confusion = np.asarray(metrics["confusion"])
    assert confusion.shape == (26, 26) and confusion.sum() == metrics["eval_images"] == 8
    assert np.trace(confusion) == round(metrics["epochs"][-1]["eval_accuracy"] * 8)
    assert list((tmp_path / "cls" / "features").glob("tiny-resnet-multilevel-32-*.npz"))


def test_a_centred_classifier_stores_its_centring_in_logit_space(tmp_path):
    from dgqa_train.centring import centre, class_offsets, content_groups
    from dgqa_train.data import split_by_reference

    refs = [(rid.replace("_", "/"), img) for rid, img in scene_crops(TRAIN_SCENES, size=40, per_scene=2)]
    source = make_source(tmp_path / "source", refs, types=(1, 2, 3), levels=(4,))
    config = ClassifierTrainConfig(train_dataset=str(source), output_dir=str(tmp_path / "cls"), backbone="tiny-resnet",
                                   pretrained=False, crop_size=CROP, features="multilevel", freeze_backbone=True,
                                   epochs=2, batch_size=8, lr=1e-2, eval_fraction=0.25,
                                   centre_features="folder")  # fmt: skip
    train_classifier(config)
    record = json.loads((tmp_path / "cls" / "confusion.json").read_text())["centring"]
    model = load_model(tmp_path / "cls")
    # the same from the cached features of the training rows, centred per photo (folder of the reference)
    ds = load_iqa_dataset(str(source))
    train_idx, _ = split_by_reference(ds, 0.25, 0)
    train = ds.select(train_idx)
    cache = FeatureCache(tmp_path / "cls" / "features", backbone_id(model, CROP))
    groups = content_groups(train["reference_id"], "folder")
    assert len(np.unique(groups)) == len({r.split("/")[0] for r in train["reference_id"]}) >= 2
    x = centre(extract_features(model, train, CROP, cache, progress=False), groups)
    offsets, plan = class_offsets(x, train["distortion_type"])
    weight = model.head.weight.detach().double().numpy()
    assert record["mode"] == "folder"
    np.testing.assert_allclose(record["logit_offsets"], offsets @ weight.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(record["bias"], model.head.bias.detach().double().numpy())
    np.testing.assert_allclose(record["plan"], plan)
    assert plan[:4] == pytest.approx([0.25] * 4) and plan[4:].sum() == 0  # pristine + 3 types, one level each
    for g in np.unique(groups):  # every photo's rows average to zero
        np.testing.assert_allclose(x[groups == g].mean(0), 0, atol=1e-4)
    # scoring a target centres its logits by the target's mean: they average to the head's bias
    from dgqa_train.score import score

    scores = score(tmp_path / "cls", str(source), tmp_path / "scores", crops=1, crop_size=CROP)
    assert scores.meta["centred"] and scores.meta["confusion"]["centring"]["mode"] == "folder"
    np.testing.assert_allclose(scores.logits.mean(0), record["bias"], atol=1e-4)


def test_centring_is_refused_where_it_cannot_run(tmp_path):
    from dgqa_data.errors import DgqaError

    common = {"train_dataset": "x", "output_dir": str(tmp_path / "c"), "backbone": "tiny-resnet"}
    with pytest.raises(DgqaError, match="--centre_features works on features extracted once: add --freeze_backbone"):
        ClassifierTrainConfig(**common, centre_features="set")
    with pytest.raises(DgqaError, match="--centre_features must be one of off, set, folder, got 'photo'"):
        ClassifierTrainConfig(**common, freeze_backbone=True, centre_features="photo")


def test_centring_without_a_held_out_set_is_refused_before_any_feature(tmp_path):
    from dgqa_data.errors import DgqaError

    source = make_source(tmp_path / "source", scene_crops(TRAIN_SCENES[:2], size=40, per_scene=1), types=(1,), levels=(4,))
    config = ClassifierTrainConfig(train_dataset=str(source), output_dir=str(tmp_path / "cls"), backbone="tiny-resnet",
                                   pretrained=False, crop_size=CROP, freeze_backbone=True, eval_fraction=0.0,
                                   centre_features="set")  # fmt: skip
    with pytest.raises(DgqaError, match="--centre_features needs a held-out set .*--eval_fraction above 0"):
        train_classifier(config)
    assert not (tmp_path / "cls").exists()  # a failed run leaves no folder it made
