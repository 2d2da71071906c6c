"""The demo's stages, run in order by :meth:`Demo.run` (each one reused when a previous run finished it)."""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dgqa_data.atomic import write_atomic, write_json
from dgqa_data.camera import capture_families, simulate_capture
from dgqa_data.images import opened
from dgqa_data.paths import run_lock
from dgqa_data.schema import NUM_CLASSES
from dgqa_train.demo.report import make_verdict, plot_confusion, plot_srcc, report_text, summarize
from dgqa_train.demo.settings import (
    ARM_NAMES,
    BACKGROUND,
    CURATED_ARMS,
    DEMO_RULES,
    FINETUNE_ARMS,
    HELDOUT_PHOTOS,
    MIN_TILE_STD,
    POOL_PHOTOS,
    SETTINGS_FILE,
    SOURCE_PHOTOS,
    TARGET_PHOTOS,
    DemoError,
    DemoSettings,
)
from dgqa_train.evaluate import json_safe


def load_photo(name: str) -> np.ndarray:
    """A photo shipped with scikit-image as uint8 RGB (``motorcycle`` = the stereo pair's left view; a
    greyscale photo has its grey copied to R, G and B)."""
    import skimage.data

    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
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
            theirs = asdict(DemoSettings.from_record(json.loads(path.read_text())))
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
            write_json(path, json_safe(mine))

    def _done(self, stage: str) -> Path:
        return self.out / ".stages" / stage

    def run_stage(self, number: int, total: int, stage: str, fn: Callable[[], str]) -> None:
        """Run one stage unless a previous run finished it; print a header and what it made."""
        header = f"[{number}/{total}] {stage}"
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
        write_json(times_file, json_safe(times))
        write_atomic(self._done(stage), summary + "\n")

    def run(self) -> Path:
        """Run (or finish) every stage; returns the report path."""
        import logging

        logging.getLogger("accelerate").setLevel(logging.WARNING)  # no per-checkpoint chatter
        self.check_settings()
        with run_lock(self.out):
            return self._run_stages()

    def stages(self) -> list[tuple[str, Callable[[], str]]]:
        """The stages, in the order they run (their names key ``.stages/`` and ``times.json``)."""
        return [
            ("photos", self.stage_photos),
            ("source", self.stage_source),
            ("target", self.stage_target),
            ("classifier", self.stage_classifier),
            ("subsets", self.stage_subsets),
            ("curation", self.stage_curation),
            ("regressors", self.stage_regressors),
            ("report", self.stage_report),
        ]

    def _run_stages(self) -> Path:
        stages = self.stages()
        for i, (stage, run_it) in enumerate(stages, 1):
            try:
                self.run_stage(i, len(stages), stage, run_it)
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
        write_json(work / "split.json", json_safe(split))
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
    def classifier_config(self, seed: int, run: Path) -> Any:
        """The ``train-classifier`` run of one seed (``--classifier`` and ``--recipe`` decide it)."""
        from dgqa_train.train_classifier import ClassifierTrainConfig

        return ClassifierTrainConfig(
            train_dataset=str(self.source),
            eval_dataset=str(self.heldout),
            output_dir=str(run),
            feature_cache=str(self.out / "classifier" / "features"),  # by content: shared by seeds
            backbone=self.s.backbone,
            features="multilevel",
            crop_size=self.s.tile,
            epochs=self.s.classifier_epochs,
            seed=seed,
            **self.s.classifier_training,
            **self.s.classifier_options,
        )

    def stage_classifier(self) -> str:
        from dgqa_data.selection import format_table, select_from_scores, write_report
        from dgqa_data.truth import format_judgement
        from dgqa_train.score import score
        from dgqa_train.train_classifier import train_classifier

        accuracies = []
        for seed in range(self.s.seeds):
            run = self.out / "classifier" / f"seed{seed}"
            shutil.rmtree(run, ignore_errors=True)
            metrics = train_classifier(self.classifier_config(seed, run))
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
        shutil.copyfile(
            self.out / "selection" / DEMO_RULES[-1] / "similarity.png", self.out / "similarity.png"
        )
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

        arms = {
            ARM_NAMES[r]: Selection.load(self.out / "selection" / r / "selection.json") for r in DEMO_RULES
        }
        truth = load_truth(self.truth)
        carried = sorted({t for g in (truth.families, truth.background) for ts in g.values() for t in ts})
        arms["oracle"] = given_selection(
            "camera-oracle", carried, "the types of the families the captures carry"
        )
        other = [t for t in range(1, NUM_CLASSES) if t not in carried]
        arms["complement"] = given_selection(
            "camera-complement", other, "the types the captures do not carry"
        )
        return arms

    def stage_subsets(self) -> str:
        from dgqa_data.subsets import all_control, random_control, select_subset

        common = {
            "embed_restricted": True,
            "overwrite": True,
            "progress": False,
        }  # photos ship with scikit-image
        arms = self.arm_selections()
        made = {
            arm: select_subset(
                self.source, sel, target="camera" if arm == "selected" else f"camera-{arm}", **common
            )
            for arm, sel in arms.items()
        }
        full = all_control(self.source, **common)
        randoms = {
            s: random_control(self.source, arms["selected"], seed=s, **common) for s in range(self.s.seeds)
        }
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
        write_json(self.out / "subsets.json", json_safe(info))
        listed = ", ".join(f"dgqa/{r.name} ({r.num_rows} rows)" for r in made.values())
        return f"{listed}, dgqa/{full.name} ({full.num_rows}), {len(randoms)} random controls"

    # 6
    def pool_photos(self) -> dict[str, int]:
        """Write DDC's pool (tiles of :data:`POOL_PHOTOS`, as the other photos are tiled) into
        ``photos/pool``; returns the tiles per photo."""
        work = self.out / "photos" / "pool"
        shutil.rmtree(work, ignore_errors=True)
        counts = {}
        for name in POOL_PHOTOS:
            tiles = photo_tiles(load_photo(name), self.s.tile, self.s.tiles_across)
            (work / name).mkdir(parents=True)
            for i, t in enumerate(tiles):
                Image.fromarray(t).save(work / name / f"tile{i:02d}.png")
            counts[name] = len(tiles)
        return counts

    def stage_curation(self) -> str:
        """The SynDR-IQA arms of :data:`CURATED_ARMS` (``dgqa curate`` on ``dgqa/demo``, frozen demo
        backbone, features shared with the probe's cache); ``curation.json`` names them and the pool."""
        from dgqa_data.curate import CurationError
        from dgqa_data.selection import Selection
        from dgqa_train.curate import curate

        if self.s.finetune:  # --finetune trains the arms of FINETUNE_ARMS only
            write_json(self.out / "curation.json", {"arms": {}, "left_out": {}, "pool": {}})
            return "skipped (--finetune trains none of the curated arms)"
        selection = Selection.load(self.out / "selection" / DEMO_RULES[0] / "selection.json")
        pool = self.pool_photos()
        made, missing = {}, {}
        for arm, (ops, on_selected) in CURATED_ARMS.items():
            name = f"demo-{'sel-camera' if on_selected else 'all'}-{'-'.join(ops)}"
            try:
                report = self._curate(curate, name, ops, selection if on_selected else None)
            except CurationError as err:  # e.g. no pool photo is new content: the arm is left out, said why
                missing[arm] = str(err)
                continue
            record = json.loads((report.out / "curation.json").read_text())
            made[arm] = {"name": name, "rows": report.rows, "upsampled": record.get("upsampled_rows", 0)}
        write_json(self.out / "curation.json", json_safe({"arms": made, "left_out": missing, "pool": pool}))
        said = [f"{arm}: dgqa/{m['name']} ({m['rows']} rows)" for arm, m in made.items()]
        return ", ".join(said + [f"{arm} left out: {why}" for arm, why in missing.items()])

    def _curate(self, curate: Callable, name: str, ops: tuple[str, ...], selection: Any):
        """One ``dgqa curate`` run of the curation stage into ``dgqa/<name>``."""
        return curate(
            self.source,
            selection=selection,
            downsample="drc" if "drc" in ops else None,
            upsample="ddc" if "ddc" in ops else None,
            pool=self.out / "photos" / "pool",
            out=self.hub / name,
            name=name,
            backbone=self.s.backbone,
            crop_size=self.s.tile,
            cache_dir=self.out / "classifier" / "features",
            overwrite=True,
            progress=False,
        )

    # 7
    def stage_regressors(self) -> str:
        info = json.loads((self.out / "subsets.json").read_text())
        arms = {arm: self.hub / name for arm, name in info["arms"].items()}
        arms["all"] = self.hub / info["all"]
        curated = json.loads((self.out / "curation.json").read_text())["arms"]
        arms.update({arm: self.hub / m["name"] for arm, m in curated.items()})
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
        write_atomic(self.out / "regressors.json", json.dumps(results, indent=2) + "\n")  # NaN kept: a constant arm
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

    # 8
    def stage_report(self) -> str:
        results = json.loads((self.out / "regressors.json").read_text())
        summary = summarize(results)
        import datasets

        n_target = len(datasets.load_dataset(str(self.target), split="train"))
        chance = 2 / math.sqrt(n_target)
        verdict = make_verdict(summary, chance)
        write_atomic(self.out / "verdict.txt", verdict + "\n")
        plot_srcc(summary, chance, self.out / "srcc.png")
        write_atomic(self.out / "report.md", report_text(self, summary, results, chance, n_target, verdict))
        return verdict
