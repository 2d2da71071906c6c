"""The demo's report: numbers per arm, the verdict stated from them, the plots and ``report.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dgqa_data import __version__
from dgqa_data.schema import DISTORTION_NAMES, NUM_CLASSES
from dgqa_train.demo.settings import ARMS, DEMO_RULES, DemoSettings

if TYPE_CHECKING:
    from dgqa_train.demo.stages import Demo


def report_text(demo: Demo, summary, results, chance, n_target, verdict) -> str:
    """The text of ``report.md``."""
    from dgqa_data.selection import Selection, format_table

    split = json.loads((demo.out / "photos" / "split.json").read_text())
    runs = [
        json.loads((demo.out / "classifier" / f"seed{s}" / "results.json").read_text())
        for s in range(demo.s.seeds)
    ]
    accs = [m["epochs"][-1]["eval_accuracy"] for m in runs]
    selections = {r: Selection.load(demo.out / "selection" / r / "selection.json") for r in DEMO_RULES}
    subsets = json.loads((demo.out / "subsets.json").read_text())
    recipe = _recipe(demo.s)
    lines = [
        "# dgqa demo report",
        "",
        f"**Verdict:** {verdict}",
        "",
        f"Settings: {'--fast' if demo.s.fast else 'default'}, {demo.s.seeds} seeds, backbone "
        f"`{demo.s.backbone}`, regressor {f'fine-tuned end to end ({demo.s.finetune_epochs} epochs)' if demo.s.finetune else f'frozen backbone + {demo.s.head} head'}, "
        f"{demo.s.tile} px tiles, classifier `--classifier {demo.s.classifier}`. dgqa {__version__}.",
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
        f"{_classifier_kind(demo)}, trained with Accelerate for "
        f"{len(runs[0]['epochs'])} epochs on {runs[0]['train_images']} images, {recipe}; one classifier per "
        f"seed ({demo.s.seeds}). Held-out accuracy (photo never seen, {runs[0]['eval_images']} images): "
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
    lines += family_rows(demo.truth, selections)
    lines += [
        "",
        "`dgqa-vote` is the official rule: each image votes for its top-4 classes and a type is kept when its "
        "vote share (votes / (k - 1) x M, so the 26 shares sum to k / (k - 1)) rounds to >= 0.04. "
        "`dgqa-corrected` estimates the target's mixture of domains: the mixture under which the target images "
        "are most likely given the classifier's class probabilities and the class frequencies it was trained "
        "under (maximum likelihood under label shift, solved by EM; Saerens et al. 2002), so that a look-alike "
        "keeps only the share no true type explains; it keeps the types whose share is >= 0.04. "
        + (
            "The classifier reads features centred per photo, so both rules read the captures' logits centred "
            "by their content mean, estimated together with the corrected mixture (the mean feature less the "
            "class offsets the mixture accounts for). "
            if demo.s.classifier_options.get("centre_features")
            else ""
        )
        + "Chart: `similarity.png` (vote and corrected shares side by side).",
    ]
    for rule, sel in selections.items():
        lines += [
            "",
            f"<details><summary>{rule}: every class</summary>",
            "",
            format_table(sel),
            "",
            "</details>",
        ]
    lines += [
        "",
        "## Regressors on the target",
        "",
        f"Last-epoch numbers only (nothing is picked on the target). Chance band for {n_target} target images: "
        f"|SRCC| < 2 / sqrt(N) = {chance:.3f}. Arms: `selected` ({DEMO_RULES[0]}), `vote` (dgqa-vote), `oracle` "
        "(the types of the families the captures carry), `complement` (the other types), `all`, `random` (as many "
        "rows as `selected`, one draw per seed).",
        *curated_lines(demo),
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
            if demo.s.head == "ridge" and not demo.s.finetune
            else []
        ),
        'Plot: `srcc.png`. Datasets: `load_dataset("dgqa/<name>")` from this folder '
        f"({', '.join(sorted(subsets['rows']))}).",
        "",
        "## Time per stage (s)",
        "",
        "| " + " | ".join(demo.times) + " |",
        "|" + "---:|" * len(demo.times),
        "| " + " | ".join(f"{v:.0f}" for v in demo.times.values()) + " |",
        "",
        "## Library versions",
        "",
        ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ]
    return "\n".join(lines)


def curated_lines(demo: Demo) -> list[str]:
    """What the SynDR-IQA arms are, and DDC's pool (``curation.json`` of the ``curation`` stage)."""
    path = demo.out / "curation.json"
    info = json.loads(path.read_text()) if path.is_file() else {"arms": {}}
    if not info["arms"]:
        return []
    ddc = info["arms"].get("selected + ddc", {})
    pool = ", ".join(f"{k} ({v})" for k, v in info["pool"].items())
    return [
        "",
        "SynDR-IQA arms (`dgqa curate`, features of the frozen demo backbone): `selected + drc` and `all + drc` "
        "(redundant-cluster downsampling of the selected types / of every type), `selected + ddc` (the "
        f"selected types plus {ddc.get('upsampled', 0)} images of new references chosen from the pool, their "
        "labels transferred, not rated). DDC's pool: tiles of scikit-image photos used nowhere else in the demo "
        f"(no unused colour photo ships with it, so its greyscale photographs, grey copied to RGB): {pool} "
        "(`photos/pool`); the chosen references are listed in each dataset's card.",
        *(f"Arm `{arm}` left out: {why}" for arm, why in info.get("left_out", {}).items()),
    ]


def family_rows(truth_file: Path, selections: dict[str, Any]) -> list[str]:
    """Per family of the captures: how many carry it, its matching types, and each rule's share and verdict."""
    from dgqa_data.truth import load_truth

    truth = load_truth(truth_file)
    head = (
        "| family | captures with it | matching KADID types | "
        + " | ".join(f"{r} share | {r}" for r in selections)
        + " |"
    )
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


def _recipe(s: DemoSettings) -> str:
    """The classifier recipe in words, from the options it trains with (:attr:`DemoSettings.classifier_options`)."""
    opts = s.classifier_options
    if not opts:
        return "the paper's recipe (no capture augmentation, no class balancing)"
    jpeg, share = opts["capture_jpeg"], opts["capture_share"]
    if share == 1:
        name, which, flags = "capture-aware", "each training and held-out image", f"--capture_jpeg {jpeg}"
    else:
        name = "mixed capture"
        which = f"a drawn {share:.0%} of the training and held-out images (the others as synthesised)"
        flags = f"--capture_jpeg {jpeg} --capture_share {share:g}"
    centred = (
        ", features centred per source photo (`--centre_features folder`: the head learns distortions as "
        "offsets from a photo's mean, and `dgqa-corrected` estimates the captures' mean with their mixture)"
        if opts.get("centre_features") == "folder"
        else ""
    )
    return (
        f"{name} recipe: {which} JPEG-encoded at a quality drawn from {jpeg} after its synthetic distortion "
        f"(`{flags}`), class-balanced loss (`--balance_classes`){centred}"
    )


def _classifier_kind(demo: Demo) -> str:
    if demo.s.classifier == "finetune":
        return f"`{demo.s.backbone}` with a 26-way head, fine-tuned end to end (`--classifier finetune`)"
    return f"Frozen `{demo.s.backbone}` multilevel features + a linear 26-way head"


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
    fig, ax = plt.subplots(figsize=(11, 4))
    means = [summary[a]["srcc_mean"] for a in arms]
    stds = [summary[a]["srcc_std"] for a in arms]
    colors = {"selected": "tab:green", "vote": "tab:olive", "oracle": "tab:purple", "complement": "tab:brown",
              "all": "tab:blue", "random": "tab:gray", "selected + drc": "tab:cyan", "all + drc": "tab:pink",
              "selected + ddc": "tab:orange"}  # fmt: skip
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
