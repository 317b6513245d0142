"""The training loop: :func:`fit`.

One function runs single-process or under ``torchrun`` (DDP), writes a run directory

    RUN/config.yaml          full TrainConfig + data description + versions + git commit
    RUN/classes.yaml         the class map (ordered names and size groups)
    RUN/metrics.jsonl        one JSON object per finished epoch
    RUN/checkpoints/         last.pt, best.pt, epoch_005.pt, ... (atomic, weights_only)
    RUN/tensorboard/         when TensorBoard is installed

and resumes exactly from ``last.pt``: model, optimiser, schedule, epoch (and position inside
an interrupted epoch), RNG states, sampler state, AMP scaler and the metric history.

The steps of a run, each its own function: the resume decision (:func:`_resume_state`, rule
in :mod:`tomoclass.train.resume`), the setup of model, optimiser and loaders
(:func:`_setup`), one epoch of training (:func:`_train_epoch`), validation and checkpointing
(:func:`_end_epoch`). The data side lives in :mod:`.loaders`, what the run directory records
in :mod:`.record`, batch-norm recalibration in :mod:`.batchnorm`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from tomoclass.errors import InputError, TomoclassError
from tomoclass.runtime import retain_freed_memory
from tomoclass.train import checkpoint as ckpt_mod
from tomoclass.train import metrics as M
from tomoclass.train.batch_plan import BatchPlan, forward_backward, plan_for_run
from tomoclass.train.batchnorm import average_buffers, has_batchnorm, recalibrate_batchnorm
from tomoclass.train.config import TrainConfig
from tomoclass.train.device import amp_dtype, autocast, select_device
from tomoclass.train.distributed import (
    DistInfo,
    all_reduce_sum,
    any_rank,
    barrier,
    init_distributed,
    shutdown,
)
from tomoclass.train.divergence import diverged
from tomoclass.train.loaders import Loaders, build_loaders, check_dataset, dataset_path, open_store
from tomoclass.train.record import checkpoint_payload, data_info, write_run_config, write_text
from tomoclass.train.resources import available_memory_bytes, check_fits, estimate_training
from tomoclass.train.resume import (
    Progress,
    fresh_partial,
    restore,
    resume_checkpoint,
    resumed_config,
    saved_config,
)
from tomoclass.train.rundir import run_folder
from tomoclass.train.schedule import WarmupStepSchedule, epochs_without_improvement, stop_early

log = logging.getLogger(__name__)

#: Below this many validation boxes ``train`` warns that ``best.pt`` is a noisy choice
#: (``benchmarks/results/tiny3_probe/``: chosen on 60 boxes, 0.15 macro F1 below ``last.pt``).
FEW_VAL_BOXES = 100


@dataclass
class FitResult:
    """What :func:`fit` did."""

    run_dir: Path
    epochs_done: int
    best_epoch: int
    best_val_macro_f1: float
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: str | None = None  # "SIGINT"/"SIGTERM" when stopped by a signal
    already_finished: bool = False  # resumed a run that had done all its epochs
    stopped_early: bool = False  # early stopping ended it before cfg.epochs


# -- device, precision, determinism -------------------------------------------------------
def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy's legacy global and torch; optionally force deterministic kernels.

    On CUDA some backward kernels the nets need have no deterministic version (average
    pooling in 3D among them); PyTorch then warns instead of stopping the run
    (``warn_only``), so ``deterministic`` makes CPU runs bit-reproducible and CUDA runs as
    reproducible as CUDA allows.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


# -- model / optimiser --------------------------------------------------------------------
def build_model(name: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    """``tomoclass.models.get_model(name, num_classes=..., **kwargs)`` with InputError."""
    from tomoclass import models

    if not hasattr(models, "get_model"):
        raise TomoclassError("tomoclass.models provides no get_model (models not installed)")
    try:
        return models.get_model(name, num_classes=num_classes, **kwargs)
    except KeyError as exc:
        known = ", ".join(models.list_models()) if hasattr(models, "list_models") else "?"
        raise InputError(f"unknown model {name!r} (known: {known})", field="model") from exc
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad model arguments for {name!r}: {exc}", field="model_kwargs") from exc


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD-with-momentum over all parameters (lr set by the schedule)."""
    params = model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.peak_lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


# -- signals ------------------------------------------------------------------------------
class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between batches (main thread only)."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# -- the loop -----------------------------------------------------------------------------
def fit(
    cfg: TrainConfig | None,
    data: Any,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool | str | os.PathLike[str] = False,
    progress: bool = True,
    max_memory_bytes: int | None = None,
    check_resources: bool = True,
) -> FitResult:
    """Train ``cfg.model`` on a dataset and write a run directory.

    Parameters
    ----------
    cfg
        The training configuration (see :class:`TrainConfig`). On resume the run's own
        configuration is used and ``cfg`` only counts for its ``epochs``, which may raise
        the run's to train longer; None (resume only) continues the run's own plan, as
        ``tomoclass train --resume`` without ``--epochs`` does (:mod:`.resume`).
    data
        A dataset directory (``tomoclass.data.open_dataset``) or an opened store with
        ``.table`` (columns ``class_id``, ``split``), ``.class_map``, ``.box``,
        ``.voxel_size_angstrom``.
    out_dir
        Run directory (created).
    resume
        False: start fresh (refused if ``out_dir`` already has checkpoints). True: continue
        from ``out_dir/checkpoints/last.pt``. A path: continue from that checkpoint.
    progress
        Show a tqdm bar with samples/s (rank 0 only).
    max_memory_bytes
        Refuse to start when the estimated memory exceeds this (and always when it
        exceeds what is free).
    check_resources
        Estimate memory and disk before starting and refuse when they do not fit.

    Returns
    -------
    FitResult
        Epochs done, best epoch and validation macro F1, the metric history, and which
        signal stopped the run, if any.

    Raises
    ------
    InputError
        Unusable dataset (see :func:`tomoclass.train.loaders.check_dataset`), existing run
        without ``resume``, a resume checkpoint from another model or class map.
    tomoclass.errors.ResourceError
        Not enough memory or disk by the estimate.
    TrainingDiverged
        The loss became NaN/inf.
    """
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    if cfg is None:
        if not resume:
            raise TypeError("fit(None, ...) continues a run: pass resume=True or a checkpoint")
        path = resume_checkpoint(out, resume)
        cfg = saved_config(ckpt_mod.load_checkpoint(path), path)
    device_pref = cfg.device
    dev_type = "cuda" if device_pref.startswith("cuda") or (
        device_pref == "auto" and torch.cuda.is_available()) else "cpu"
    dist_info = init_distributed(dev_type)
    try:
        with run_folder(out, resume=resume, is_main=dist_info.is_main):
            return _fit(cfg, data, out, ckpt_dir, resume, progress, max_memory_bytes,
                        check_resources, dist_info)
    finally:
        shutdown(dist_info)


@dataclass
class _Run:
    """Everything one rank needs to train: built by :func:`_setup`, used by each epoch."""

    cfg: TrainConfig
    out: Path
    ckpt_dir: Path
    di: DistInfo
    store: Any
    class_names: list[str]
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    plan: BatchPlan
    loaders: Loaders
    per_rank_batch: int
    steps_per_epoch: int
    schedule: WarmupStepSchedule
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    use_cl: bool
    progress: bool
    n_train: int = 0
    n_val: int = 0
    model_for_train: nn.Module | None = None
    data_info: dict[str, Any] = field(default_factory=dict)
    tb: Any = None


def _fit(cfg: TrainConfig, data: Any, out: Path, ckpt_dir: Path, resume: Any, progress: bool,
         max_memory_bytes: int | None, check_resources: bool, di: DistInfo) -> FitResult:
    cfg, state, resume_path, finished = _resume_state(cfg, resume, out, ckpt_dir)
    if finished is not None:
        return finished
    run = _setup(cfg, data, out, ckpt_dir, di, state, resume_path, progress,
                 max_memory_bytes, check_resources)
    done = Progress()
    if state is not None:
        done = restore(state, di.rank, model=run.model, optimizer=run.optimizer,
                       schedule=run.schedule, scaler=run.scaler, path=resume_path)
    _start_record(run, di)
    interrupted = _train(run, done)
    if run.tb is not None:
        run.tb.close()
    epochs_done = done.history[-1]["epoch"] if done.history else done.start_epoch
    # the loop ends after its last epoch, on a signal, or by early stopping
    stopped_early = interrupted is None and epochs_done < run.cfg.epochs
    return FitResult(out, epochs_done, done.best_epoch, done.best_f1, done.history, interrupted,
                     stopped_early=stopped_early)


def _resume_state(cfg: TrainConfig, resume: Any, out: Path, ckpt_dir: Path
                  ) -> tuple[TrainConfig, dict[str, Any] | None, Path | None, FitResult | None]:
    """The configuration to train with, and the checkpoint state and path to resume from.

    The fourth item is the result when the resumed run has nothing left to do.
    """
    if not resume:
        if ckpt_dir.is_dir() and any(ckpt_dir.glob("*.pt")):
            raise InputError("run directory already has checkpoints; use --resume to continue "
                             "or choose another --out", path=out)
        return cfg, None, None, None
    # temporaries a killed job left in the run went when its lock was taken (run_folder);
    # a checkpoint elsewhere may belong to a run that is still writing
    resume_path = resume_checkpoint(out, resume)
    state = ckpt_mod.load_checkpoint(resume_path)
    saved = saved_config(state, resume_path)
    ckpt_mod.check_compatible(state, path=resume_path, model_name=cfg.model)
    cfg = resumed_config(saved, cfg)
    if int(state["epoch"]) >= cfg.epochs and not state.get("epoch_progress"):
        log.info("%s: the run already finished its %d epochs; nothing to train",
                 resume_path, int(state["epoch"]))
        return cfg, state, resume_path, FitResult(
            out, int(state["epoch"]), int(state.get("best_epoch", 0)),
            float(state.get("best_val_macro_f1", -1.0)),
            [dict(h) for h in state.get("history", [])], None, True)
    return cfg, state, resume_path, None


def _setup(cfg: TrainConfig, data: Any, out: Path, ckpt_dir: Path, di: DistInfo,
           state: dict[str, Any] | None, resume_path: Path | None, progress: bool,
           max_memory_bytes: int | None, check_resources: bool) -> _Run:
    """Check the data, choose the device, build model, batch plan, optimiser and loaders."""
    store = open_store(data)
    y_train, y_val = check_dataset(store, cfg)
    class_names = list(store.class_map.names)
    if state is not None:
        ckpt_mod.check_compatible(state, path=resume_path, model_name=cfg.model,
                                  class_names=class_names)
    device = select_device(cfg.device, di.local_rank)
    if device.type == "cpu":
        retain_freed_memory()  # 1.7-1.9x faster CPU steps measured (tomoclass.runtime)
    seed_everything(cfg.seed, cfg.deterministic)
    if di.distributed and cfg.batch_size % di.world_size:
        raise InputError(f"batch size {cfg.batch_size} does not split evenly over "
                         f"{di.world_size} processes", field="batch_size")
    per_rank_batch = cfg.batch_size // di.world_size

    model = build_model(cfg.model, len(class_names), cfg.model_kwargs)
    if cfg.init and resume_path is None:  # fine-tuning (train/pretrained.py)
        from tomoclass.train.pretrained import initialize_from

        initialize_from(model, cfg.init, list(class_names))
    min_box = getattr(model, "min_input_size", None)
    if min_box and int(store.box) < min_box:
        raise InputError(f"subtomograms of {store.box} voxels are smaller than model "
                         f"'{cfg.model}' accepts ({min_box}); extract larger boxes",
                         path=dataset_path(store), field="box")
    # distinct checkpoint files at the peak (names of one epoch share one file): the periodic
    # ones, plus last.pt and best.pt when they fall between periodic epochs
    n_keep = (cfg.epochs // cfg.checkpoint_every if cfg.checkpoint_every else 0) \
        + (0 if cfg.checkpoint_every == 1 else 2)
    limit = _limit(device, max_memory_bytes) if check_resources else None
    plan = plan_for_run(model, int(store.box), per_rank_batch, available_bytes=limit,
                        accumulation_steps=cfg.accumulation_steps, model_kwargs=cfg.model_kwargs)
    if di.is_main and (plan.chosen or plan.accumulation_steps > 1):
        log.info("%s", plan.message)
    if check_resources:
        est = estimate_training(model, int(store.box), plan.micro_batch, n_keep)
        check_fits(est, device=device, out_dir=out, max_memory_bytes=max_memory_bytes,
                   what="training")
    use_cl = cfg.channels_last and device.type == "cuda"
    model.to(device)
    if use_cl:
        model.to(memory_format=torch.channels_last_3d)
    optimizer = build_optimizer(model, cfg)
    loaders = build_loaders(store, cfg, di, per_rank_batch, device, has_batchnorm(model))
    steps_per_epoch = loaders.steps_per_epoch
    schedule = WarmupStepSchedule(optimizer, cfg, steps_per_epoch)
    dtype = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return _Run(cfg, out, ckpt_dir, di, store, class_names, device, model, optimizer, plan,
                loaders, per_rank_batch, steps_per_epoch, schedule, dtype, scaler, use_cl,
                progress, n_train=len(y_train), n_val=len(y_val))


def _start_record(run: _Run, di: DistInfo) -> None:
    """Wrap the model for DDP; write config.yaml and classes.yaml; open TensorBoard."""
    if di.distributed:
        run.model_for_train = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    else:
        run.model_for_train = run.model
    # the spectrum is only written by the main process (config.yaml, checkpoints)
    run.data_info = data_info(run.store, run.n_train, run.n_val, spectrum=di.is_main)
    if di.is_main and 0 < run.n_val < FEW_VAL_BOXES:
        log.warning("best.pt will be the epoch of the best validation macro F1 on only %d "
                    "boxes, a noisy choice (on 60 boxes it once scored 0.15 below the same "
                    "run's last.pt); also evaluate --checkpoint last", run.n_val)
    if di.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        run.ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(
            run.out, run.cfg, run.store, run.data_info, world_size=di.world_size,
            device=str(run.device),
            amp=str(run.dtype).removeprefix("torch.") if run.dtype else "off",
            channels_last_3d=run.use_cl, batch_plan=run.plan.to_dict())
        run.tb = _tensorboard(run.out)


def _payload(run: _Run, done: Progress, epoch_done: int,
             progress_state: dict[str, Any] | None) -> dict[str, Any]:
    rng = ckpt_mod.capture_rng_state()
    if run.di.distributed:
        gathered: list[Any] = [None] * run.di.world_size
        torch.distributed.all_gather_object(gathered, rng)
        rng_all: Any = gathered
    else:
        rng_all = rng
    return checkpoint_payload(
        run.cfg, run.store, run.data_info, run.model, run.optimizer, run.schedule, run.scaler,
        epoch_done=epoch_done, progress_state=progress_state, history=done.history,
        best_f1=done.best_f1, best_epoch=done.best_epoch, world_size=run.di.world_size,
        rng=rng_all)


def _train(run: _Run, done: Progress) -> str | None:
    """Train the remaining epochs; return the signal that stopped the run, if any."""
    stop = _StopFlag()
    interrupted: str | None = None
    with stop:
        for epoch in range(done.start_epoch, run.cfg.epochs):
            if not done.skip_batches and stop_early(done.history, run.cfg.early_stopping_patience,
                                                    run.cfg.early_stopping_min_delta,
                                                    run.cfg.early_stopping_min_epochs):
                _log_early_stop(run.cfg, done.history)
                break
            sums, interrupted = _train_epoch(run, done, epoch, stop)
            if interrupted and sums["batches_done"] < run.steps_per_epoch:
                _save_partial(run, done, epoch, sums, interrupted)
                break
            done.skip_batches = 0
            done.partial = fresh_partial()
            _end_epoch(run, done, epoch, sums)
            if interrupted:
                log.warning("%s: stopped after epoch %d; checkpoint %s (continue with "
                            "--resume)", interrupted, epoch + 1, run.ckpt_dir / "last.pt")
                break
    return interrupted


def _log_early_stop(cfg: TrainConfig, history: list[dict[str, Any]]) -> None:
    since = epochs_without_improvement([float(h["val_loss"]) for h in history],
                                       cfg.early_stopping_min_delta)
    best = history[len(history) - 1 - since] if since < len(history) else None
    log.info("early stopping after epoch %d of %d: the validation loss has not improved for "
             "%d epochs (best %s)", history[-1]["epoch"], cfg.epochs, since,
             f"{best['val_loss']:.4f} at epoch {best['epoch']}" if best else "none finite")


def _train_epoch(run: _Run, done: Progress, epoch: int, stop: _StopFlag
                 ) -> tuple[dict[str, Any], str | None]:
    """One epoch (or the rest of an interrupted one) of optimiser steps on this rank.

    Returns the running sums (loss, correct, seen, seconds, batches done) and the signal
    that stopped it, if any.
    """
    cfg, di, device, ld = run.cfg, run.di, run.device, run.loaders
    pin = device.type == "cuda"
    ld.sampler.set_epoch(epoch, done.skip_batches * run.per_rank_batch)
    if hasattr(ld.train_ds, "set_epoch"):
        ld.train_ds.set_epoch(epoch)
    run.model_for_train.train()
    part = done.partial
    loss_sum, correct, seen = part["loss_sum"], part["correct"], part["seen"]
    t0 = time.perf_counter() - part["seconds"]
    batches_done = done.skip_batches
    interrupted: str | None = None
    bar = _bar(run.progress and di.is_main, len(ld.base_sampler) * di.world_size,
               done.skip_batches * cfg.batch_size, f"epoch {epoch + 1}/{cfg.epochs}")
    for xb, yb in ld.train:
        xb = xb.to(device, non_blocking=pin)
        if run.use_cl:
            xb = xb.contiguous(memory_format=torch.channels_last_3d)
        yb = yb.to(device, non_blocking=pin)
        run.optimizer.zero_grad(set_to_none=True)
        loss, logits = forward_backward(run.model_for_train, xb, yb,
                                        run.plan.accumulation_steps, run.scaler,
                                        lambda: autocast(device, run.dtype))
        if not torch.isfinite(loss):
            raise diverged(loss.item(), xb, epoch + 1, run.schedule.step_count + 1,
                           run.schedule.lr, dataset_path(run.store))
        if cfg.max_grad_norm:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.model.parameters(), cfg.max_grad_norm)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.schedule.step()
        n = yb.numel()
        loss_sum += float(loss.detach()) * n
        correct += int((logits.detach().argmax(1) == yb).sum())
        seen += n
        batches_done += 1
        if bar is not None:
            bar.update(n * di.world_size)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{run.schedule.last_lr:.2e}")
        ckpt_mod.pause_hook(f"batch:{epoch + 1}:{batches_done}")
        if any_rank(stop.signal is not None, di, device):
            interrupted = stop.signal or "SIGTERM"
            break
    if bar is not None:
        bar.close()
    sums = {"batches_done": batches_done, "loss_sum": loss_sum, "correct": correct,
            "seen": seen, "seconds": time.perf_counter() - t0}
    return sums, interrupted


def _save_partial(run: _Run, done: Progress, epoch: int, sums: dict[str, Any],
                  interrupted: str) -> None:
    """Checkpoint an epoch stopped by a signal after its last finished batch."""
    pl = _payload(run, done, epoch, dict(sums))
    if run.di.is_main:
        ckpt_mod.save_checkpoint(run.ckpt_dir / "last.pt", pl)
        log.warning("%s: stopped in epoch %d after batch %d; checkpoint %s "
                    "(continue with --resume)", interrupted, epoch + 1,
                    sums["batches_done"], run.ckpt_dir / "last.pt")
    barrier(run.di)


def _end_epoch(run: _Run, done: Progress, epoch: int, sums: dict[str, Any]) -> None:
    """Precise BN, validation, the epoch's record, checkpoints and metrics.jsonl."""
    cfg, di, device = run.cfg, run.di, run.device
    totals = torch.tensor([sums["loss_sum"], sums["correct"], sums["seen"]],
                          dtype=torch.float64, device=device)
    all_reduce_sum(totals, di)
    if run.loaders.bn is not None:
        recalibrate_batchnorm(run.model, run.loaders.bn, device, run.dtype, run.use_cl)
    average_buffers(run.model, di)
    val_loss, cm = _validate(run.model, run.loaders.val, device, run.dtype, run.use_cl,
                             len(run.class_names), di)
    f1 = M.per_class_f1(cm)
    record = {
        "epoch": epoch + 1,
        # the rate the epoch ended with; the next epoch's (after a step of the schedule)
        # would label epoch 4 of "x0.1 after epoch 4" with the lower rate
        "lr": run.schedule.last_lr,
        "train_loss": float(totals[0] / totals[2]),
        "train_accuracy": float(totals[1] / totals[2]),
        "val_loss": val_loss,
        "val_accuracy": M.accuracy(cm),
        "val_macro_f1": M.macro_f1(cm),
        "val_f1_per_class": {n: (None if np.isnan(v) else float(v))
                             for n, v in zip(run.class_names, f1, strict=True)},
        "samples_per_s": float(totals[2]) / max(sums["seconds"], 1e-9),
        "epoch_seconds": sums["seconds"],
    }
    done.history.append(record)
    score = record["val_macro_f1"] if not math.isnan(record["val_macro_f1"]) else -1.0
    is_best = score > done.best_f1
    if is_best:
        done.best_f1, done.best_epoch = score, epoch + 1
    pl = _payload(run, done, epoch + 1, None)
    if di.is_main:
        names = [run.ckpt_dir / "best.pt"] if is_best else []
        if cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0:
            names.append(run.ckpt_dir / f"epoch_{epoch + 1:03d}.pt")
        ckpt_mod.save_checkpoint(run.ckpt_dir / "last.pt", pl, also=names)
        write_text(run.out / "metrics.jsonl",
                   "".join(json.dumps(h) + "\n" for h in done.history))
        if run.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    run.tb.add_scalar(k, v, epoch + 1)
            run.tb.flush()
        log.info("epoch %d/%d  train loss %.4f  val loss %.4f  val macro F1 %.4f  "
                 "%.1f samples/s", epoch + 1, cfg.epochs, record["train_loss"],
                 val_loss, record["val_macro_f1"], record["samples_per_s"])
    barrier(di)


def _limit(device: torch.device, max_memory_bytes: int | None) -> int:
    avail = available_memory_bytes(device)
    return avail if max_memory_bytes is None else min(avail, max_memory_bytes)


@torch.inference_mode()
def _validate(model: nn.Module, loader: DataLoader, device: torch.device,
              dtype: torch.dtype | None, use_cl: bool, num_classes: int,
              di: DistInfo) -> tuple[float, np.ndarray]:
    """Validation loss and confusion matrix, summed over all ranks."""
    model.eval()
    cm = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((2,), dtype=torch.float64, device=device)
    for xb, yb in loader:
        xb = xb.to(device)
        if use_cl:
            xb = xb.contiguous(memory_format=torch.channels_last_3d)
        yb = yb.to(device)
        with autocast(device, dtype):
            logits = model(xb)
        logits = logits.float()
        loss_sum[0] += F.cross_entropy(logits, yb, reduction="sum").double()
        loss_sum[1] += yb.numel()
        pred = logits.argmax(1)
        cm += torch.bincount(yb * num_classes + pred, minlength=num_classes**2).view(
            num_classes, num_classes)
    all_reduce_sum(cm, di)
    all_reduce_sum(loss_sum, di)
    return float(loss_sum[0] / loss_sum[1]), cm.cpu().numpy()


def _bar(enabled: bool, total: int, initial: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="sample", unit_scale=False,
                dynamic_ncols=True, leave=False, file=sys.stderr)


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))
