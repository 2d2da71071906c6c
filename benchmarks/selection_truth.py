"""How well the selection rules recover what a target holds, measured against the truth.

Reuses a finished ``dgqa demo`` folder (its source, held-out and target sets), trains the domain
classifier with each recipe and seed, scores several targets whose content is known, and compares
each rule's selection with the truth (:func:`dgqa_data.truth.judge`), per seed and for the majority
over seeds (:func:`dgqa_data.selection.combine`):

* ``camera``: the demo's simulated captures (truth: ``photos/camera-truth.csv``);
* ``camera-redraw``: the same target tiles captured again with other draws of the simulator (same
  simulator, other seeds: a selection tuned to one draw does not carry over);
* ``camera-variant``: the same tiles captured by another camera model (:func:`variant_capture`:
  Gaussian defocus, gamma exposure, signal-independent noise, JPEG 35-90);
* ``planted``: the target tiles distorted with known KADID types (all 5 levels), truth from their
  ``distortion_type`` column.

Recipes: the demo's (``capture``: frozen features centred per source photo; ``paper``; ``mixed``;
the ``-finetune`` ones) and ``capture-uncentred`` (an ablation: ``capture`` without the centring).

Rules: ``dgqa-vote`` and ``dgqa-corrected`` as shipped, and, as an ablation, two mixture estimates
that use only each image's predicted class and the classifier's held-out confusion matrix (black-box
shift estimation, Lipton et al. 2018): ``bbse-mle`` (maximum likelihood, by EM) and ``bbse-lsq``
(least squares on the simplex). ``dgqa-corrected`` uses every image's class probabilities instead
(maximum likelihood under label shift, Saerens et al. 2002); the held-out confusion matrix in the
demo comes from one photo, and the ablation shows what that costs.

Usage::

    dgqa demo --out runs/demo                      # once (or reuse a finished one)
    python benchmarks/selection_truth.py --demo runs/demo --out runs/selection-bench [--seeds 3]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np

PLANTED = (2, 3, 11, 16, 17)  # the KADID counterparts of the camera's five families
#: Classifier recipes: the demo settings (``--recipe``, ``--classifier``) each one trains with.
RECIPES = {
    "paper": {"recipe": "paper", "classifier": "frozen"},
    "capture": {"recipe": "capture", "classifier": "frozen"},
    "capture-finetune": {"recipe": "capture", "classifier": "finetune"},
    "mixed": {"recipe": "mixed", "classifier": "frozen"},
    "mixed-finetune": {"recipe": "mixed", "classifier": "finetune"},
    "capture-uncentred": {"recipe": "capture", "classifier": "frozen"},
}
#: Flags a recipe changes from its demo settings' classifier (an ablation: the capture recipe as it
#: was before its features were centred per source photo).
OVERRIDES = {"capture-uncentred": {"centre_features": "off"}}


def variant_capture(image: np.ndarray, seed: int) -> tuple[np.ndarray, list[str]]:
    """Another camera model than the demo's (written for this benchmark, not fitted to any result):
    one or two of Gaussian defocus (sigma 0.8-3 px), shake (a line of 3-12 px), exposure as a gamma
    on all channels (x^0.45-0.8 brighter, x^1.3-2.2 darker) and signal-independent Gaussian noise
    (sigma 3-12 grey levels), then JPEG at quality 35-90. Returns the image and its families."""
    import io

    import cv2
    from PIL import Image

    rng = np.random.default_rng(seed)
    x = image.astype(np.float32) / 255
    kinds = [str(k) for k in rng.choice(["defocus", "shake", "exposure", "noise"], size=1 + int(rng.random() < 0.3), replace=False)]
    families = []
    if "defocus" in kinds:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.8, 3.0)), borderType=cv2.BORDER_REFLECT)
        families.append("defocus")
    if "shake" in kinds:
        n = int(rng.integers(3, 13))
        k = np.zeros((n, n), np.float32)
        k[n // 2] = 1 / n
        rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        k = cv2.warpAffine(k, rot, (n, n))
        x = cv2.filter2D(x, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)
        families.append("shake")
    if "exposure" in kinds:
        brighter = rng.random() < 0.5
        x = np.clip(x, 0, 1) ** float(rng.uniform(0.45, 0.8) if brighter else rng.uniform(1.3, 2.2))
        families.append("brighter" if brighter else "darker")
    if "noise" in kinds:
        x = x + rng.normal(0, float(rng.uniform(3, 12)) / 255, x.shape).astype(np.float32)
        families.append("noise")
    buf = io.BytesIO()
    Image.fromarray((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(35, 91)))
    return np.asarray(Image.open(buf).convert("RGB")), families


def demo_capture(image: np.ndarray, seed: int) -> tuple[np.ndarray, list[str]]:
    """The demo's camera simulator (:func:`dgqa_data.camera.simulate_capture`) and its families."""
    from dgqa_data.camera import capture_families, simulate_capture

    cap = simulate_capture(image, seed=seed)
    return cap.image, capture_families(cap.steps)


def captured_target(demo: Path, out: Path, name: str, capture, offset: int = 500_000) -> tuple[Path, Path]:
    """The demo's target tiles captured by ``capture`` with other seeds than the demo's; returns
    (dataset, truth CSV)."""
    from PIL import Image

    from dgqa_data.build import build_corpus
    from dgqa_train.demo import BACKGROUND

    root = out / f"{name}-images"
    tiles = sorted((demo / "photos" / "target").rglob("*.png"))
    per_tile = len(list((demo / "photos" / "camera").rglob("*.png"))) // len(tiles)
    labels, truth = [], []
    for i, path in enumerate(tiles):
        ref = np.asarray(Image.open(path).convert("RGB"))
        for k in range(per_tile):
            image, fams = capture(ref, offset + i * 1000 + k)
            rel = f"{path.parent.name}/{path.stem}_cap{k}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / rel)
            labels.append({"image": rel, "mos": 3.0})  # the selection reads no label
            truth.append(
                {
                    "image_id": rel,
                    "families": ";".join(f for f in fams if f not in BACKGROUND),
                    "background": ";".join(BACKGROUND),  # every capture ends in a JPEG encode
                }
            )
    for suffix, rows in (("labels", labels), ("truth", truth)):
        with open(out / f"{name}-{suffix}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    ds = out / name
    build_corpus("folder", root, ds, labels=str((out / f"{name}-labels.csv").resolve()), score_range="1,5",
                 name=name, progress=False, overwrite=True)  # fmt: skip
    return ds, out / f"{name}-truth.csv"


def planted_target(demo: Path, out: Path) -> Path:
    """The demo's target tiles with the :data:`PLANTED` types at every level (no pristine rows)."""
    from dgqa_data.synth import synthesize

    ds = out / "planted"
    if not ds.exists():
        synthesize(demo / "photos" / "target", ds, plan="full", types=list(PLANTED), progress=False)
    return ds


def bbse_mle(logits: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """The maximum-likelihood mixture of the target's predicted classes under the held-out confusion
    matrix (add-half smoothed), by EM: black-box shift estimation by likelihood."""
    seen = confusion.sum(1) > 0
    a = (confusion[seen] + 0.5) / (confusion[seen].sum(1, keepdims=True) + 0.5 * 26)
    n = np.bincount(logits.argmax(1), minlength=26).astype(float)
    w = np.full(seen.sum(), 1 / seen.sum())
    for _ in range(10_000):
        r = w[:, None] * a
        r /= r.sum(0, keepdims=True)
        w = (r * n[None]).sum(1) / n.sum()
    out = np.zeros(26)
    out[seen] = w
    return out


def bbse_lsq(logits: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """Least squares on the simplex: the predicted-class histogram explained by the confusion."""
    from scipy.optimize import nnls

    seen = confusion.sum(1) > 0
    a = confusion[seen] / confusion[seen].sum(1, keepdims=True)
    q = np.bincount(logits.argmax(1), minlength=26) / len(logits)
    w_seen, _ = nnls(np.vstack([a.T, np.full(seen.sum(), 10.0)]), np.append(q, 10.0))
    w = np.zeros(26)
    w[seen] = w_seen / w_seen.sum()
    return w


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", required=True, help="a finished `dgqa demo` folder")
    ap.add_argument("--out", required=True, help="work folder (classifiers, scores, results.json)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--recipes", nargs="+", default=["paper", "capture"], choices=list(RECIPES),
                    help="capture-finetune fine-tunes each classifier (about 11 min per seed on 2 cores) unless "
                    "the --demo run was made with `--classifier finetune`, whose classifiers are then reused")
    args = ap.parse_args()

    from dgqa_data.scores import load_scores
    from dgqa_data.selection import centred_logits, combine, given_selection, select
    from dgqa_data.truth import judge, load_truth
    from dgqa_data.versions import library_versions
    from dgqa_train.demo import Demo, DemoSettings
    from dgqa_train.score import score
    from dgqa_train.train_classifier import train_classifier

    demo, out = Path(args.demo).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    recorded = DemoSettings.from_record(json.loads((demo / "demo.json").read_text()))
    targets = {"camera": (demo / "dgqa" / "camera", load_truth(demo / "photos" / "camera-truth.csv"))}
    for name, capture in (("camera-redraw", demo_capture), ("camera-variant", variant_capture)):
        ds, truth = out / name, out / f"{name}-truth.csv"
        if not (ds.exists() and truth.is_file()):
            ds, truth = captured_target(demo, out, name, capture)
        targets[name] = (ds, load_truth(truth))
    planted = planted_target(demo, out)
    targets["planted"] = (planted, load_truth(planted))
    results: list[dict] = []
    for recipe in args.recipes:
        per_rule: dict[tuple[str, str], list] = {}
        mine = Demo(demo, dataclasses.replace(recorded, **RECIPES[recipe]), progress=False)
        for seed in range(args.seeds):
            run = out / "classifiers" / f"{recipe}-seed{seed}"
            theirs = demo / "classifier" / f"seed{seed}"
            if mine.s == recorded and recipe not in OVERRIDES and (theirs / "model.safetensors").is_file():
                run = theirs  # the demo trained this recipe and seed: reuse its classifier
            if not (run / "model.safetensors").is_file():
                shutil.rmtree(run, ignore_errors=True)
                config = mine.classifier_config(seed, run)
                overrides = {"feature_cache": str(out / "features"), **OVERRIDES.get(recipe, {})}
                train_classifier(dataclasses.replace(config, **overrides))
            metrics = json.loads((run / "results.json").read_text())
            held_out = json.loads((run / "confusion.json").read_text())
            confusion = np.asarray(held_out["counts"], float)
            for name, (ds, truth) in targets.items():
                sc_dir = out / "scores" / f"{recipe}-seed{seed}-{name}"
                if not (sc_dir / "scores.parquet").is_file():
                    score(run, str(ds), sc_dir, crops=1, crop_size=recorded.tile, batch_size=32)
                z = load_scores(sc_dir).logits
                sels = {
                    "dgqa-vote": select(z, "dgqa-vote", confusion=held_out),
                    "dgqa-corrected": select(z, "dgqa-corrected", confusion=held_out),
                }
                z = centred_logits(z, held_out)  # as every rule reads them (unchanged without centring)
                for ablation, shares in (("bbse-mle", bbse_mle(z, confusion)), ("bbse-lsq", bbse_lsq(z, confusion))):
                    chosen = [t for t in range(1, 26) if shares[t] >= 0.04]
                    sels[ablation] = given_selection(name, chosen or [int(np.argmax(shares[1:]) + 1)], ablation)
                for rule, sel in sels.items():
                    per_rule.setdefault((rule, name), []).append(sel)
                    j = judge(sel.selected, truth)
                    results.append({"recipe": recipe, "seed": seed, "target": name, "rule": rule,
                                    "accuracy": metrics["epochs"][-1]["eval_accuracy"], "found": len(j["found"]),
                                    "families": j["families"], "extras": len(j["extras"]), "kept": j["types_kept"],
                                    "selected": sel.selected, "missed": j["missed"]})  # fmt: skip
        for (rule, name), sels in per_rule.items():
            both = combine(sels, [f"seed{s}" for s in range(len(sels))]) if len(sels) > 1 else sels[0]
            j = judge(both.selected, targets[name][1])
            st = both.stability or {"jaccard_mean": 1.0, "flips": []}
            results.append({"recipe": recipe, "seed": "majority", "target": name, "rule": rule,
                            "found": len(j["found"]), "families": j["families"], "extras": len(j["extras"]),
                            "kept": j["types_kept"], "selected": both.selected, "missed": j["missed"],
                            "jaccard_mean": st["jaccard_mean"], "flips": st["flips"]})  # fmt: skip
    (out / "results.json").write_text(json.dumps({"versions": library_versions(), "results": results}, indent=2))
    print("| recipe | target | rule | per seed: found/families, extras | majority: found, extras, kept | seeds' Jaccard |")
    print("|---|---|---|---|---|---:|")
    for recipe in args.recipes:
        for name in targets:
            for rule in ("dgqa-vote", "dgqa-corrected", "bbse-mle", "bbse-lsq"):
                rows = [r for r in results if (r["recipe"], r["target"], r["rule"]) == (recipe, name, rule)]
                seeds = [r for r in rows if r["seed"] != "majority"]
                maj = next(r for r in rows if r["seed"] == "majority")
                per = "; ".join(f"{r['found']}/{r['families']}, {r['extras']}" for r in seeds)
                print(f"| {recipe} | {name} | {rule} | {per} | {maj['found']}/{maj['families']}, {maj['extras']}, "
                      f"{maj['kept']} | {maj.get('jaccard_mean', 1.0):.2f} |")  # fmt: skip
    accs = {
        r: [next(x["accuracy"] for x in results if (x["recipe"], x["seed"]) == (r, s)) for s in range(args.seeds)]
        for r in args.recipes
    }
    print("held-out accuracy per recipe and seed:", json.dumps(accs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
