"""The one Accelerate training loop of dgqa: ``train.py`` (quality regressor) and ``train_classifier.py``
(domain classifier) differ only in their model, loss, evaluation and what they write at the end.

:class:`~dgqa_train.config.LoopConfig` holds the settings both scripts share (each script's config
dataclass extends it, so the flags and config-file keys are the same); :func:`start_run` makes the Accelerator and
applies the output-folder rules; :func:`fit` runs the epochs: gradient accumulation, mixed precision
(autocast by Accelerate), gradient clipping, resume from the newest intact checkpoint (also mid-epoch),
exact loss totals across processes, a progress bar with loss and throughput, tracker logging, and a
checkpoint with its :class:`~dgqa_train.checkpoints.TrainState` marker.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from dgqa_data.errors import DgqaError
from dgqa_train.checkpoints import (
    STATE_FILE,
    TrainState,
    changed_settings,
    checkpoint_number,
    find_checkpoint,
    mark_complete,
    verify,
)
from dgqa_train.config import LoopConfig, make_accelerator

#: Settings a resume may change: they decide how long and how the run goes, not what it trains on or how.
RESUME_MAY_CHANGE = (
    "output_dir", "epochs", "max_steps", "num_workers", "resume_from_checkpoint", "overwrite_output_dir",
    "allow_resume_mismatch", "save_every_epochs", "checkpointing_steps", "log_every", "report_to",
    "push_to_hub", "hub_private", "feature_cache",
)  # fmt: skip


def trained_settings(config: LoopConfig) -> dict[str, Any]:
    """The settings that decide what a run trains (recorded in every checkpoint, compared on resume)."""
    return {k: v for k, v in asdict(config).items() if k not in RESUME_MAY_CHANGE}


def start_run(config: LoopConfig, out: Path) -> tuple[Any, Path | None]:
    """The Accelerator of a run and the checkpoint to resume from (None: a fresh start).

    Checkpoints of an earlier run are never silently mixed in: without ``resume_from_checkpoint`` they
    are refused, unless ``overwrite_output_dir`` discards them; a checkpoint whose recorded settings
    differ from this run's is refused (naming them) unless ``allow_resume_mismatch``.
    """
    accelerator = make_accelerator(
        out, config.mixed_precision, config.gradient_accumulation_steps, config.report_to, config.seed
    )
    ckpt = find_checkpoint(out, config.resume_from_checkpoint, say=accelerator.print)
    if ckpt is not None:
        changed = changed_settings(TrainState.load(ckpt), trained_settings(config))
        if changed and not config.allow_resume_mismatch:
            raise DgqaError(
                f"{ckpt} was trained with other settings: {'; '.join(changed)}; resume with the same "
                "settings, or pass --allow_resume_mismatch to continue with the new ones"
            )
        if changed:
            accelerator.print(f"resuming {ckpt} with changed settings: {'; '.join(changed)}")
    root = out / "checkpoints"
    if ckpt is None and root.is_dir() and any(root.iterdir()):
        if not config.overwrite_output_dir and config.resume_from_checkpoint != "latest":
            raise DgqaError(
                f"{root} holds checkpoints of an earlier run: pass --resume_from_checkpoint latest "
                "or --overwrite_output_dir"
            )
        if accelerator.is_main_process:
            shutil.rmtree(root)
        accelerator.wait_for_everyone()
    if ckpt is None and config.resume_from_checkpoint == "latest":
        accelerator.print(f"no complete checkpoint under {root}; starting from scratch")
    return accelerator, ckpt


def restore(accelerator: Any, ckpt: Path | None) -> TrainState:
    """Load a checkpoint into the prepared objects (call after ``accelerator.prepare``)."""
    root = Path(accelerator.project_dir) / "checkpoints"
    existing = [checkpoint_number(p) for p in root.glob("checkpoint_*")] if root.is_dir() else []
    accelerator.project_configuration.iteration = max(existing, default=-1) + 1
    if ckpt is None:
        return TrainState()
    state = verify(ckpt)
    rng = logging.getLogger("accelerate.checkpointing")
    refused = _Catch("Could not load random states")
    level, propagate = rng.level, rng.propagate
    rng.addHandler(refused)
    rng.setLevel(logging.INFO)
    rng.propagate = False  # Accelerate's own INFO lines stay quiet
    try:  # every file is read with weights_only: a pickle that asks to run code is refused
        accelerator.load_state(str(ckpt))
    except pickle.UnpicklingError as err:
        raise DgqaError(
            f"{ckpt}: refused to load a checkpoint file that is not plain tensors/values ({err})"
        ) from None
    except RuntimeError as err:  # files this run's objects cannot take (e.g. another model)
        raise DgqaError(f"{ckpt}: cannot load this checkpoint: {str(err).splitlines()[0]}") from None
    finally:
        rng.removeHandler(refused)
        rng.setLevel(level)
        rng.propagate = propagate
    if refused.seen:
        accelerator.print(
            f"note: Accelerate could not restore the random number state from {ckpt} (skipped); "
            "the resumed run's random crops and shuffles differ from an uninterrupted run's"
        )
    accelerator.print(
        f"resumed from {ckpt}: epoch {state.epoch}, step {state.global_step}, batch {state.batches_in_epoch}"
    )
    return state


class _Catch(logging.Handler):
    """Notes whether a log record with ``text`` went by."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text, self.seen = text, False

    def emit(self, record: logging.LogRecord) -> None:
        self.seen = self.seen or self.text in record.getMessage()


def init_trackers(accelerator: Any, config: Any, project: str) -> None:
    """Start the ``report_to`` trackers with the run's config (nothing for ``none``)."""
    if config.report_to not in (None, "", "none"):
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in asdict(config).items()}
        accelerator.init_trackers(project, config=flat)


def fit(
    accelerator: Any,
    config: LoopConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Any,
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    state: TrainState,
    evaluate: Callable[[], dict[str, Any]] | None = None,
    on_epoch: Callable[[TrainState], None] | None = None,
    pick_rows: Callable[[int, dict[str, Any] | None], dict[str, Any]] | None = None,
) -> TrainState:
    """Train the prepared ``model`` from ``state`` to ``config.epochs`` (or ``config.max_steps``).

    Args:
        accelerator: from :func:`start_run`.
        config: the run's settings.
        model, optimizer, loader: prepared by ``accelerator``; the loader's sampler is an
            :class:`~dgqa_train.data.EpochSampler` (or the dataset has ``set_epoch``).
        loss_fn: ``loss_fn(model, batch)`` -> the mean loss of the batch.
        state: from :func:`restore`; updated in place and returned.
        evaluate: called after every epoch (also a partial one); its dict joins the epoch's record.
        on_epoch: called on every process after each epoch's checkpoint (e.g. to write interim results).
        pick_rows: called on every process at the start of each epoch as ``pick_rows(epoch, saved)``
            to choose the rows the epoch draws (per-epoch DRC, :mod:`dgqa_train.epoch_drc`); it returns
            what a checkpoint must keep to resume the epoch (``saved`` on a mid-epoch resume, else
            None), whose ``"record"`` joins the epoch's record.

    Each record of ``state.history``: ``epoch``, ``step``, ``train_loss`` (mean over the epoch's
    images, all processes), ``train_images``, ``train_time_s``, ``images_per_s``, ``partial_epoch``,
    the ``pick_rows`` record (``drc``), then the evaluation's keys.
    """
    device = accelerator.device
    # Sums of the unfinished epoch already reduced over processes (a mid-epoch resume) live on process 0.
    main = accelerator.is_main_process
    loss_sum = torch.tensor(state.loss_sum if main else 0.0, device=device, dtype=torch.float64)
    loss_count = torch.tensor(state.loss_count if main else 0, device=device, dtype=torch.float64)
    running, running_n = torch.zeros((), device=device), 0
    streaming = isinstance(loader.dataset, torch.utils.data.IterableDataset)
    if not streaming and state.batches_in_epoch > len(loader):
        raise DgqaError(
            f"the checkpoint's {STATE_FILE} says {state.batches_in_epoch} batches of epoch {state.epoch + 1} "
            f"are done, but an epoch has {len(loader)}"
        )
    state.settings = trained_settings(config)

    def save(batches_in_epoch: int) -> None:
        totals = accelerator.reduce(torch.stack([loss_sum, loss_count]), reduction="sum")
        state.batches_in_epoch = batches_in_epoch
        state.loss_sum, state.loss_count = float(totals[0]), int(totals[1])
        folder = Path(accelerator.project_dir) / "checkpoints" / f"checkpoint_{accelerator.save_iteration}"
        try:
            accelerator.save_state()
            mark_complete(accelerator, state)
        except OSError as err:  # e.g. the disk is full: the torn folder goes, the complete ones stay
            if accelerator.is_main_process:
                shutil.rmtree(folder, ignore_errors=True)
            raise DgqaError(
                f"could not save checkpoint {folder}: {err.strerror or err}; the earlier complete checkpoints are kept "
                "(free space, then rerun with --resume_from_checkpoint latest)"
            ) from None

    done = config.max_steps is not None and state.global_step >= config.max_steps
    while state.epoch < config.epochs and not done:
        epoch, skip = state.epoch, state.batches_in_epoch
        if pick_rows is not None:
            state.epoch_rows = pick_rows(epoch, state.epoch_rows if skip else None)
        tic = time.perf_counter()
        loader.set_epoch(epoch)
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        bar = tqdm(
            batches,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            total=None if streaming else len(loader) - skip,
            disable=not accelerator.is_local_main_process,
        )
        done_batches, images = skip, 0
        model.train()
        for batch in bar:
            with accelerator.accumulate(model):
                loss = loss_fn(model, batch)
                accelerator.backward(loss)
                if config.max_grad_norm is not None and accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            n = batch["labels"].shape[0]
            loss_sum += loss.detach().double() * n  # stays on the device: no per-step host sync
            loss_count += n
            running += loss.detach()
            done_batches, images, running_n = done_batches + 1, images + n, running_n + 1
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            if state.global_step % config.log_every == 0:  # the loop's only host sync between epochs
                r = accelerator.reduce(running, "mean").item() / running_n
                running.zero_()
                running_n = 0
                accelerator.log({"train/loss": r}, step=state.global_step)
                rate = images * accelerator.num_processes / max(time.perf_counter() - tic, 1e-9)
                bar.set_postfix(loss=f"{r:.4f}", step=state.global_step, img_s=f"{rate:.1f}")
            done = config.max_steps is not None and state.global_step >= config.max_steps
            if config.checkpointing_steps and state.global_step % config.checkpointing_steps == 0 and not done:
                save(done_batches)
            if done:
                break
        bar.close()
        seconds = time.perf_counter() - tic
        partial = done and (streaming or done_batches < len(loader))
        totals = accelerator.reduce(torch.stack([loss_sum, loss_count]), reduction="sum").tolist()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": state.global_step,
            "train_loss": totals[0] / totals[1] if totals[1] else None,
            "train_images": int(totals[1]),
            "train_time_s": round(seconds, 3),
            "images_per_s": round(images * accelerator.num_processes / max(seconds, 1e-9), 2),
            "partial_epoch": partial,
            **(state.epoch_rows or {}).get("record", {}),
        }
        if evaluate is not None:
            record.update(evaluate())
        # a resumed partial epoch replaces its partial record
        state.history = [h for h in state.history if h["epoch"] != epoch + 1] + [record]
        numeric = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        accelerator.log({f"epoch/{k}": v for k, v in numeric.items() if k not in ("epoch", "step")},
                        step=state.global_step)  # fmt: skip
        loss_text = "n/a" if record["train_loss"] is None else f"{record['train_loss']:.5f}"
        accelerator.print(
            f"epoch {epoch + 1}/{config.epochs}{' (partial)' if partial else ''}: step {state.global_step}, "
            f"train loss {loss_text}, {record['images_per_s']:.1f} images/s"
        )
        if partial:  # stopped mid-epoch (max_steps): the checkpoint keeps the running sums, and a
            save(done_batches)  # resume finishes this epoch exactly as an uninterrupted run would
        else:
            loss_sum.zero_()
            loss_count.zero_()
            state.epoch, state.batches_in_epoch, state.loss_sum, state.loss_count = epoch + 1, 0, 0.0, 0
            state.epoch_rows = None
            if done or state.epoch >= config.epochs or (
                config.save_every_epochs and state.epoch % config.save_every_epochs == 0
            ):
                save(0)
        if on_epoch is not None:
            on_epoch(state)
    return state

