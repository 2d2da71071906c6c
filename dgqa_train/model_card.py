"""Model cards (README.md with a YAML header) for a trained regressor or domain classifier, and the Hub upload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dgqa_data.specs import parse_spec

#: Files of an output folder that are not part of the published model (hidden files never are).
HUB_IGNORE = ["checkpoints/*", "logs/*", "*.tmp"]


def _domains(cfg: dict[str, Any], train: dict[str, Any]) -> str:
    """The distortion types the model was trained on: the --domains filter, else those in the data."""
    from dgqa_data.schema import DISTORTION_NAMES

    if cfg.get("domains"):
        return ", ".join(map(str, cfg["domains"]))
    types = train.get("distortion_types")
    if not types:
        return "all"
    names = [DISTORTION_NAMES[t] if t >= 0 else "authentic" for t in types]
    return f"{len(types)} type(s) present in the data: " + ", ".join(f"{t} {n}" for t, n in zip(types, names))


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _table(per_dataset: dict[str, Any], epoch_of: dict[str, Any] | None = None) -> list[str]:
    head = "| eval dataset | images | SRCC | PLCC | KRCC | RMSE | PLCC (logistic-4) |"
    if epoch_of is not None:
        head += " epoch |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for spec, m in per_dataset.items():
        m = m or {}
        cells = [
            spec,
            m.get("n"),
            m.get("srcc"),
            m.get("plcc"),
            m.get("krcc"),
            m.get("rmse"),
            m.get("plcc_logistic4"),
        ]
        if epoch_of is not None:
            cells.append(epoch_of.get(spec))
        rows.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return rows


def _drc_lines(cfg: dict[str, Any], history: list[dict[str, Any]]) -> list[str]:
    """The card's line on per-epoch DRC (none when it was off)."""
    if not cfg.get("drc_per_epoch"):
        return []
    kept = [h["drc"]["kept"] for h in history if h.get("drc")]
    rows = next((h["drc"]["rows"] for h in history if h.get("drc")), None)
    m = cfg["drc_max_cluster"]
    return [
        "- per-epoch DRC (SynDR-IQA redundant-cluster downsampling, re-run every epoch on the current model's "
        f"features): rows linked at cosine similarity > {cfg['drc_sim']} and [0, 10] label gap < "
        f"{cfg['drc_label_gap']}; clusters over {m} rows keep max({m}, floor(L x {cfg['drc_keep']})); "
        f"rows kept per epoch: {', '.join(map(str, kept)) or 'n/a'}" + (f" of {rows}" if rows else "")
    ]


def model_card(results: dict[str, Any]) -> str:
    """The README.md of a trained model folder, from its ``results.json`` content."""
    cfg = results["config"]
    train = results.get("train") or {}
    tags = ["image-quality-assessment", "blind-iqa", "dgqa", "regression"]
    lines = ["---", "library_name: dgqa", "tags:", *[f"- {t}" for t in tags]]
    ds = cfg.get("train_dataset")
    hub_id = parse_spec(ds).hub_id if ds else None
    if hub_id:
        lines += ["datasets:", f"- {hub_id}"]
    lines += ["metrics:", "- srcc", "- plcc", "---", ""]
    backbone = cfg.get("init_model") or cfg["backbone"]
    lines += [
        f"# Blind IQA regressor: {backbone} + Linear(feature_dim, 1)",
        "",
        "Predicts perceptual quality in [0, 1] (higher = better; the `quality` column of dgqa datasets) from a "
        f"{cfg['crop_size']}px crop; the reported score of an image is the mean over {cfg['test_crops']} seeded crops.",
        "",
        "## Training",
        "",
        f"- data: `{ds}`" + (f", {train['images']} images" if train.get("images") else ""),
        f"- distortion domains: {_domains(cfg, train)}",
        f"- backbone: `{cfg['backbone']}` (pretrained: {cfg['pretrained']})"
        + (f", initialised from `{cfg['init_model']}`" if cfg.get("init_model") else ""),
        f"- loss {cfg['loss']}, {cfg['optimizer']} lr {cfg['lr_backbone']} backbone / {cfg['lr_head']} head, "
        f"weight decay {cfg['weight_decay']}, batch {cfg['batch_size']} x {results.get('world_size', 1)} process(es)"
        f" x {cfg['gradient_accumulation_steps']} accumulation, {cfg['epochs']} epochs, seed {cfg['seed']}, "
        f"mixed precision {cfg['mixed_precision']}",
        *_drc_lines(cfg, results.get("history") or []),
        "",
        "## Evaluation (last epoch)",
        "",
        "SRCC, PLCC, KRCC and RMSE on raw predictions; PLCC (logistic-4) after a 4-parameter logistic fit.",
        "",
    ]
    last = results.get("last_epoch")
    lines += _table(last["metrics"]) if last else ["No evaluation was run."]
    best = {k: v for k, v in (results.get("best_epoch") or {}).items() if v}
    if best:
        lines += [
            "",
            "Best epoch per eval set (optimistic: the epoch is chosen on the test data itself):",
            "",
            *_table({k: v["metrics"] for k, v in best.items()}, {k: v["epoch"] for k, v in best.items()}),
        ]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from dgqa_train.models import load_model",
        "from dgqa_train.predict import predict_files",
        "",
        'model = load_model("path/to/this/folder")  # safetensors + config.json, no download',
        'scores = predict_files(model, ["photo.jpg"], crops=5)  # quality in [0, 1]',
        "```",
        "",
        "or `dgqa predict --model path/to/this/folder photo.jpg --crops 5`.",
        "",
        "`results.json` holds every epoch's metrics and the full training config (`train_config.json`).",
        "",
    ]
    return "\n".join(lines)


def classifier_card(results: dict[str, Any]) -> str:
    """The README.md of a trained domain classifier, from its ``results.json`` content."""
    from dgqa_data.schema import NUM_CLASSES

    cfg = results["config"]
    ds = cfg.get("train_dataset")
    hub_id = parse_spec(ds).hub_id if ds else None
    lines = ["---", "library_name: dgqa", "tags:"]
    lines += [f"- {t}" for t in ("image-quality-assessment", "dgqa", "domain-classification")]
    if hub_id:
        lines += ["datasets:", f"- {hub_id}"]
    lines += ["metrics:", "- accuracy", "---", ""]
    last = (results.get("epochs") or [{}])[-1]
    acc = last.get("eval_accuracy")
    capture = results.get("capture")
    lines += [
        f"# DGQA domain classifier: {cfg['backbone']} + Linear(feature_dim, {NUM_CLASSES})",
        "",
        f"Tells which of the {NUM_CLASSES} synthetic domains (pristine + the 25 KADID distortion types) an image "
        f"resembles, from a {cfg['crop_size']}px crop. `dgqa score` runs it over a target set and `dgqa select` "
        "turns the scores into the distortion types to train on (the DGQA method).",
        "",
        "## Training",
        "",
        f"- data: `{ds}`, {results.get('train_images')} images",
        f"- backbone: `{cfg['backbone']}` (pretrained: {cfg['pretrained']}, features: {cfg['features']}"
        + (", frozen: a linear probe)" if results.get("frozen_backbone") else ")"),
        f"- AdamW lr {cfg['lr']}, weight decay {cfg['weight_decay']}, batch {cfg['batch_size']} x "
        f"{results.get('num_processes', 1)} process(es), {cfg['epochs']} epochs, seed {cfg['seed']}"
        + (", class-balanced loss" if results.get("balance_classes") else ""),
        f"- capture augmentation: {capture}" if capture else "- capture augmentation: none (the paper's recipe)",
        "",
        "## Held-out evaluation (last epoch)",
        "",
        f"Accuracy {acc:.4f} on {results.get('eval_images')} held-out images; `confusion.json` holds the "
        "confusion counts that `dgqa select --rule dgqa-corrected` uses."
        if isinstance(acc, float)
        else "No held-out evaluation was run.",
        "",
        "## Use",
        "",
        "```bash",
        "dgqa score --classifier path/to/this/folder --target hub/dgqa/livec --out runs/scores-livec",
        "dgqa select --scores runs/scores-livec --out runs/sel-livec",
        "```",
        "",
        "`results.json` holds every epoch's loss and accuracy and the full training config (`train_config.json`).",
        "",
    ]
    return "\n".join(lines)


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a trained model folder (weights, config, card, results) to a Hub model repo, through the
    same path as datasets (:func:`dgqa_data.publish.publish`: token handling, redacted errors, only
    changed files sent, files the folder no longer has removed).

    Returns:
        The URL of the commit now at the head of ``main``.
    """
    from dgqa_data.publish import publish

    report = publish(
        folder,
        repo_id,
        repo_type="model",
        private=private,
        token=token,
        ignore_patterns=HUB_IGNORE,
        commit_message="Upload dgqa quality regressor",
    )
    return str(report.commit_url)
