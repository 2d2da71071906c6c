"""The classifier's capture augmentation, class balancing, and the confusion matrix it leaves for the
``dgqa-corrected`` rule (stored beside the classifier, carried into every scores folder)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from dgqa_data.errors import DgqaError
from dgqa_data.scores import load_scores
from dgqa_data.selection import select_from_scores
from dgqa_train.capture import CaptureAugment, parse_range
from dgqa_train.data import load_iqa_dataset
from dgqa_train.train_classifier import ClassifierTrainConfig, class_weights, main
from tests.train.test_classifier import base_args, source  # noqa: F401 - the module fixture
from tests.train.test_score_select import target7  # noqa: F401 - the module fixture


def png(seed: int, size=(48, 40)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_capture_is_a_seeded_jpeg_after_an_optional_resize():
    aug = CaptureAugment(jpeg=(50, 95), resize=(0.5, 1.0), seed=3)
    data = png(0)
    out = aug.apply(data, row=7, stream=0)
    assert out == aug.apply(data, row=7, stream=0)  # seeded by (seed, stream, row)
    assert out != aug.apply(data, row=7, stream=1) and out != CaptureAugment((50, 95), (0.5, 1.0), 4).apply(data, 7, 0)
    img = Image.open(io.BytesIO(out))
    assert img.format == "JPEG" and 24 <= img.size[0] <= 48 and img.size[1] == round(40 * img.size[0] / 48)
    # the quality is the drawn one: re-encoding the resized image at it gives the same bytes
    rng = np.random.default_rng((3, 0, 7))
    s = rng.uniform(0.5, 1.0)
    q = int(rng.integers(50, 96))
    resized = Image.open(io.BytesIO(data)).convert("RGB").resize((round(48 * s), round(40 * s)), Image.BICUBIC)
    buf = io.BytesIO()
    resized.save(buf, format="JPEG", quality=q)
    assert buf.getvalue() == out


def test_a_capture_share_leaves_the_other_images_as_they_were():
    data = [png(i) for i in range(200)]
    half = CaptureAugment(jpeg=(50, 95), seed=3, share=0.5)
    every = CaptureAugment(jpeg=(50, 95), seed=3)
    outs = [half.apply(d, row=i, stream=0) for i, d in enumerate(data)]
    kept = [o == d for o, d in zip(outs, data)]
    assert 80 <= sum(kept) <= 120  # about half, drawn per row
    # a captured row is the very capture of share 1 (the share is drawn after the other draws)
    assert all(o == every.apply(d, row=i, stream=0) for i, (o, d, k) in enumerate(zip(outs, data, kept)) if not k)
    assert all(Image.open(io.BytesIO(o)).format == "JPEG" for o, k in zip(outs, kept) if not k)
    assert [half.apply(d, row=i, stream=0) == d for i, d in enumerate(data)] == kept  # seeded


def test_capture_flags_are_checked():
    assert parse_range("50-95", "--capture_jpeg", 1, 100, whole=True) == (50.0, 95.0)
    assert parse_range("80", "--capture_jpeg", 1, 100, whole=True) == (80.0, 80.0)
    assert parse_range("", "--capture_jpeg", 1, 100, whole=True) is None
    for bad, message in (("95-50", "LO <= HI"), ("0-50", "1 <= LO"), ("high", "must be LO-HI"), ("50.5-60", "LO-HI")):
        with pytest.raises(DgqaError, match=message):
            CaptureAugment.from_flags(bad, None, 0)
    with pytest.raises(DgqaError, match="--capture_resize needs --capture_jpeg"):
        ClassifierTrainConfig(train_dataset="x", output_dir="y", capture_resize="0.5-1")
    with pytest.raises(DgqaError, match="--capture_resize must satisfy"):
        ClassifierTrainConfig(train_dataset="x", output_dir="y", capture_jpeg="50-95", capture_resize="0-1")
    with pytest.raises(DgqaError, match=r"--capture_share must be in \(0, 1\], got 1.5"):
        ClassifierTrainConfig(train_dataset="x", output_dir="y", capture_jpeg="50-95", capture_share=1.5)
    with pytest.raises(DgqaError, match="--capture_share needs --capture_jpeg"):
        ClassifierTrainConfig(train_dataset="x", output_dir="y", capture_share=0.5)


def test_class_weights_balance_the_classes():
    w = class_weights([0, 1, 1, 1, 5, 5]).numpy()
    assert w[0] == pytest.approx(2.0) and w[1] == pytest.approx(2 / 3) and w[5] == pytest.approx(1.0)
    assert w[[2, 3, 4]].sum() == 0 and len(w) == 26


def test_capture_classifier_leaves_its_confusion_for_the_corrected_rule(tmp_path, source, target7):  # noqa: F811
    out = tmp_path / "cls"
    extra = ["--epochs", "2", "--num_workers", "0", "--eval_fraction", "0.25", "--capture_jpeg", "60-90", "--balance_classes"]
    metrics = main(base_args(source, out, *extra))
    assert metrics["capture"] == {"jpeg": (60.0, 90.0), "resize": None, "seed": 0, "share": 1.0}
    assert metrics["balance_classes"]
    held = json.loads((out / "confusion.json").read_text())
    assert held["counts"] == metrics["confusion"] and held["images"] == 8 == metrics["eval_images"]
    assert held["capture"]["jpeg"] == [60, 90] and "eval_fraction 0.25" in held["dataset"]
    # the training images the head saw were JPEG captures of the source rows
    ds = CaptureAugment((60, 90), seed=0).dataset(load_iqa_dataset(str(source)), 0)
    assert all(Image.open(io.BytesIO(r["bytes"])).format == "JPEG" for r in ds["image"])

    from dgqa_train.score import score

    score(out, str(target7), tmp_path / "scores", crops=1, batch_size=4)
    meta = load_scores(tmp_path / "scores").meta
    assert meta["confusion"]["counts"] == held["counts"] and meta["versions"]["torch"].startswith("2.13.0")
    sel = select_from_scores(tmp_path / "scores", rule="dgqa-corrected")
    shares = [r["corrected_share"] for r in sel.table]
    assert sum(shares) == pytest.approx(1.0) and sel.selected == [t for t in range(1, 26) if shares[t] >= 0.04]
