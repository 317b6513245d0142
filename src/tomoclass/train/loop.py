"""The training loop: :func:`fit`.

One function runs single-process or under ``torchrun`` (DDP), writes a run directory

    RUN/config.yaml          full TrainConfig + data description + versions + git commit
    RUN/classes.yaml         the class map (ordered names and size groups)
    RUN/metrics.jsonl        one JSON object per finished epoch
    RUN/checkpoints/         last.pt, best.pt, epoch_005.pt, ... (atomic, weights_only)
    RUN/tensorboard/         when TensorBoard is installed

and resumes exactly from ``last.pt``: model, optimiser, schedule, epoch (and position inside
an interrupted epoch), RNG states, sampler state, AMP scaler and the metric history.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from tomoclass import __version__
from tomoclass.data.finite import refuse_nonfinite
from tomoclass.errors import InputError, TomoclassError
from tomoclass.io.atomic import atomic_path
from tomoclass.train import checkpoint as ckpt_mod
from tomoclass.train import metrics as M
from tomoclass.train.batch_plan import forward_backward, plan_for_run
from tomoclass.train.config import CONFIG_FORMAT_VERSION, TrainConfig
from tomoclass.train.device import amp_dtype, autocast, select_device  # noqa: F401 (re-export)
from tomoclass.train.distributed import (
    DistInfo,
    all_reduce_sum,
    any_rank,
    barrier,
    init_distributed,
    shutdown,
)
from tomoclass.train.divergence import TrainingDiverged, diverged  # noqa: F401 (re-export)
from tomoclass.train.resources import available_memory_bytes, check_fits, estimate_training
from tomoclass.train.rundir import run_folder
from tomoclass.train.schedule import WarmupStepSchedule

log = logging.getLogger(__name__)


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


# -- data ---------------------------------------------------------------------------------
def _open_store(data: Any) -> Any:
    if isinstance(data, (str, os.PathLike)):
        from tomoclass.data import open_dataset

        return open_dataset(data)
    return data


def _dataset_path(store: Any) -> Path | None:
    p = getattr(store, "path", None)
    return Path(p) if p is not None else None


def check_dataset(store: Any, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Refuse a dataset training cannot use; return train and validation labels.

    Raises
    ------
    InputError
        No ``split``/``class_id`` column, a class without training samples, an empty
        validation split, or a batch larger than the training set.
    """
    table = store.table
    where = _dataset_path(store)
    star = where / "particles.star" if where is not None else None
    for col in ("split", "class_id"):
        if col not in table.columns:
            raise InputError(f"particle table has no '{col}' column", path=star, field=col)
    names = list(store.class_map.names)
    split = table["split"].astype(str).to_numpy()
    labels = table["class_id"].to_numpy().astype(np.int64)
    bad = (labels < 0) | (labels >= len(names))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"class_id {labels[row]} outside the class map (0..{len(names) - 1})",
                         path=star, field="class_id", line=None)
    train = labels[split == cfg.train_split]
    val = labels[split == cfg.val_split]
    if train.size == 0:
        raise InputError(f"no particles in split '{cfg.train_split}'", path=star, field="split")
    counts = np.bincount(train, minlength=len(names))
    empty = [names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise InputError(
            f"class{'es' if len(empty) > 1 else ''} {', '.join(empty)} ha"
            f"{'ve' if len(empty) > 1 else 's'} no training samples (split "
            f"'{cfg.train_split}'); drop them from classes.yaml or add particles",
            path=star, field="class_id",
        )
    if val.size == 0:
        raise InputError(f"no particles in validation split '{cfg.val_split}'; give the dataset "
                         f"one: tomoclass dataset split {where or 'DS'} --test-tomograms ... "
                         "--val-fraction 0.1 (or --val-tomograms NAMES)",
                         path=star, field="split")
    if getattr(store, "volumes", None) is not None:
        for sp in (cfg.train_split, cfg.val_split):
            refuse_nonfinite(store, sp, what=f"train on ({sp} split)")
    if cfg.batch_size > train.size:
        raise InputError(
            f"batch size {cfg.batch_size} is larger than the {train.size} training "
            f"subtomograms; use --batch-size {train.size} or less",
            field="batch_size",
        )
    return train, val


class _SkipSampler(Sampler[int]):
    """A DistributedSampler whose first ``skip`` indices of the current epoch are dropped.

    Resuming an interrupted epoch replays the same permutation (seeded by seed + epoch)
    and skips what was already trained on.
    """

    def __init__(self, base: DistributedSampler, skip: int = 0):
        self.base = base
        self.skip = skip

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        it = iter(self.base)
        for _ in range(self.skip):
            next(it, None)
        return it

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


class _SplitSubset(torch.utils.data.Dataset):
    """Indices ``rank::world`` of a dataset (validation shard, no padding)."""

    def __init__(self, ds: torch.utils.data.Dataset, rank: int, world: int):
        self.ds = ds
        self.idx = list(range(rank, len(ds), world))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> Any:
        return self.ds[self.idx[i]]


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


# -- run directory bookkeeping ------------------------------------------------------------
def git_commit() -> str | None:
    """Commit of the tomoclass source tree, or None outside a git checkout."""
    src = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5, check=False)
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def versions() -> dict[str, str | None]:
    """Versions of tomoclass, python, torch, numpy, CUDA/cuDNN."""
    return {
        "tomoclass": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "cuda": None if torch.version.cuda is None else str(torch.version.cuda),
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available()
        else None,
        "platform": platform.platform(),
    }


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _class_map_dict(cm: Any) -> dict[str, Any]:
    if hasattr(cm, "to_dict"):
        return cm.to_dict()
    return {"names": list(cm.names), "size_groups": list(cm.size_groups)}


def _classes_yaml(cm: Any) -> str:
    entries = [{"name": n, "size_group": g} for n, g in zip(cm.names, cm.size_groups, strict=True)]
    return yaml.safe_dump(entries, sort_keys=False)


def _data_info(store: Any, n_train: int, n_val: int, *, spectrum: bool = True
               ) -> dict[str, Any]:
    info: dict[str, Any] = {
        "path": str(_dataset_path(store)) if _dataset_path(store) is not None else None,
        "voxel_size_angstrom": float(store.voxel_size_angstrom),
        "box": int(store.box),
        "n_train": int(n_train),
        "n_val": int(n_val),
    }
    meta = getattr(store, "meta", None) or getattr(store, "info", None)
    if isinstance(meta, dict):
        info["normalization"] = meta.get("normalization")
        info["polarity"] = meta.get("polarity")
    if spectrum and hasattr(store, "split_indices") and hasattr(store, "volumes"):
        # what predict/locate match another tomogram's boxes to (tomoclass.data.spectrum)
        from tomoclass.data.spectrum import dataset_spectrum

        info["spectrum"] = dataset_spectrum(store).to_dict()
    return info


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
    cfg: TrainConfig,
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
        configuration is used; only ``epochs`` may be raised to train longer.
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
        Unusable dataset (see :func:`check_dataset`), existing run without ``resume``,
        a resume checkpoint from another model or class map.
    tomoclass.errors.ResourceError
        Not enough memory or disk by the estimate.
    TrainingDiverged
        The loss became NaN/inf.
    """
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
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


def _fit(cfg: TrainConfig, data: Any, out: Path, ckpt_dir: Path, resume: Any, progress: bool,
         max_memory_bytes: int | None, check_resources: bool, di: DistInfo) -> FitResult:
    state: dict[str, Any] | None = None
    resume_path: Path | None = None
    if resume:
        # temporaries a killed job left in the run went when its lock was taken (run_folder);
        # a checkpoint elsewhere may belong to a run that is still writing
        resume_path = ckpt_dir / "last.pt" if resume is True else Path(resume)
        state = ckpt_mod.load_checkpoint(resume_path)
        if state.get("train_config") is None:
            raise InputError("checkpoint holds no training state (weights only)",
                             path=resume_path, field="train_config")
        ckpt_mod.check_compatible(state, path=resume_path, model_name=cfg.model)
        saved = TrainConfig.from_dict(dict(state["train_config"]), path=resume_path)
        cfg = saved.model_copy(update={"epochs": max(saved.epochs, cfg.epochs)})
        if int(state["epoch"]) >= cfg.epochs and not state.get("epoch_progress"):
            log.info("%s: the run already finished its %d epochs; nothing to train",
                     resume_path, int(state["epoch"]))
            return FitResult(out, int(state["epoch"]), int(state.get("best_epoch", 0)),
                             float(state.get("best_val_macro_f1", -1.0)),
                             [dict(h) for h in state.get("history", [])], None, True)
    elif ckpt_dir.is_dir() and any(ckpt_dir.glob("*.pt")):
        raise InputError("run directory already has checkpoints; use --resume to continue "
                         "or choose another --out", path=out)

    store = _open_store(data)
    y_train, y_val = check_dataset(store, cfg)
    class_names = list(store.class_map.names)
    if state is not None:
        ckpt_mod.check_compatible(state, path=resume_path, model_name=cfg.model,
                                  class_names=class_names)
    num_classes = len(class_names)

    device = select_device(cfg.device, di.local_rank)
    seed_everything(cfg.seed, cfg.deterministic)
    if di.distributed and cfg.batch_size % di.world_size:
        raise InputError(f"batch size {cfg.batch_size} does not split evenly over "
                         f"{di.world_size} processes", field="batch_size")
    per_rank_batch = cfg.batch_size // di.world_size

    model = build_model(cfg.model, num_classes, cfg.model_kwargs)
    if cfg.init and resume_path is None:  # fine-tuning (train/pretrained.py)
        from tomoclass.train.pretrained import initialize_from

        initialize_from(model, cfg.init, list(class_names))
    min_box = getattr(model, "min_input_size", None)
    if min_box and int(store.box) < min_box:
        raise InputError(f"subtomograms of {store.box} voxels are smaller than model "
                         f"'{cfg.model}' accepts ({min_box}); extract larger boxes",
                         path=_dataset_path(store), field="box")
    n_keep = 2 + (cfg.epochs // cfg.checkpoint_every if cfg.checkpoint_every else 0)
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

    from tomoclass.data import SubtomogramDataset

    train_ds = SubtomogramDataset(store, split=cfg.train_split, augment=cfg.augment,
                                  seed=cfg.seed)
    val_ds = SubtomogramDataset(store, split=cfg.val_split, augment=False, seed=cfg.seed)
    bn_loader = None
    if cfg.bn_recalibration_samples and _has_batchnorm(model):
        plain = SubtomogramDataset(store, split=cfg.train_split, augment=False, seed=cfg.seed)
        order = np.random.default_rng([cfg.seed, 7]).permutation(len(plain))
        picked = sorted(order[: cfg.bn_recalibration_samples].tolist())
        bn_loader = DataLoader(_SplitSubset(torch.utils.data.Subset(plain, picked), di.rank,
                                            di.world_size),
                               batch_size=per_rank_batch, shuffle=False,
                               num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    base_sampler = DistributedSampler(train_ds, num_replicas=di.world_size, rank=di.rank,
                                      shuffle=True, seed=cfg.seed, drop_last=False)
    sampler = _SkipSampler(base_sampler)
    pin = device.type == "cuda"
    train_loader = DataLoader(train_ds, batch_size=per_rank_batch, sampler=sampler,
                              num_workers=cfg.num_workers, pin_memory=pin,
                              persistent_workers=cfg.num_workers > 0)
    val_loader = DataLoader(_SplitSubset(val_ds, di.rank, di.world_size),
                            batch_size=per_rank_batch, shuffle=False,
                            num_workers=cfg.num_workers, pin_memory=pin)
    steps_per_epoch = math.ceil(len(base_sampler) / per_rank_batch)
    schedule = WarmupStepSchedule(optimizer, cfg, steps_per_epoch)
    dtype = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    start_epoch, skip_batches = 0, 0
    history: list[dict[str, Any]] = []
    best_f1, best_epoch = -1.0, 0
    partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    if state is not None:
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        schedule.load_state_dict(state["schedule_state"])
        if state.get("scaler_state"):
            scaler.load_state_dict(state["scaler_state"])
        start_epoch = int(state["epoch"])
        history = [dict(h) for h in state.get("history", [])]
        best_f1 = float(state.get("best_val_macro_f1", -1.0))
        best_epoch = int(state.get("best_epoch", 0))
        prog = state.get("epoch_progress") or {}
        skip_batches = int(prog.get("batches_done", 0))
        if skip_batches:
            partial = {k: prog[k] for k in partial}
        rng = state["rng"]
        if isinstance(rng, list):  # one entry per rank
            rng = rng[di.rank] if di.rank < len(rng) else rng[0]
        ckpt_mod.restore_rng_state(rng)
        log.info("resuming %s at epoch %d%s", resume_path, start_epoch + 1,
                 f" batch {skip_batches + 1}" if skip_batches else "")

    if di.distributed:
        model_for_train: nn.Module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        model_for_train = model

    # the spectrum is only written by the main process (config.yaml, checkpoints)
    data_info = _data_info(store, len(y_train), len(y_val), spectrum=di.is_main)
    if di.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        run_cfg = {
            "format_version": CONFIG_FORMAT_VERSION,
            "train": cfg.model_dump(mode="json"),
            "data": data_info,
            "classes": _class_map_dict(store.class_map),
            "world_size": di.world_size,
            "device": str(device),
            "amp": str(dtype).removeprefix("torch.") if dtype else "off",
            "channels_last_3d": use_cl,
            "batch_plan": plan.to_dict(),
            "versions": versions(),
            "git_commit": git_commit(),
            "command": [str(a) for a in sys.argv],
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _write_text(out / "config.yaml", yaml.safe_dump(run_cfg, sort_keys=False))
        _write_text(out / "classes.yaml", _classes_yaml(store.class_map))
    tb = _tensorboard(out) if di.is_main else None

    def payload(epoch_done: int, progress_state: dict[str, Any] | None) -> dict[str, Any]:
        rng = ckpt_mod.capture_rng_state()
        if di.distributed:
            gathered: list[Any] = [None] * di.world_size
            torch.distributed.all_gather_object(gathered, rng)
            rng_all: Any = gathered
        else:
            rng_all = rng
        return {
            "format": ckpt_mod.FORMAT,
            "format_version": ckpt_mod.FORMAT_VERSION,
            "tomoclass_version": __version__,
            "model_name": cfg.model,
            "model_kwargs": dict(cfg.model_kwargs),
            "num_classes": num_classes,
            "class_names": class_names,
            "size_groups": list(store.class_map.size_groups),
            "voxel_size_angstrom": float(store.voxel_size_angstrom),
            "box": int(store.box),
            "data": data_info,
            "train_config": cfg.model_dump(mode="json"),
            "epoch": epoch_done,
            "epoch_progress": progress_state,
            "model_state": {k: v.detach().clone().contiguous() for k, v in
                            model.state_dict().items()},
            "optimizer_state": optimizer.state_dict(),
            "schedule_state": schedule.state_dict(),
            "scaler_state": scaler.state_dict() if scaler.is_enabled() else {},
            "rng": rng_all,
            "sampler": {"seed": cfg.seed, "epoch": epoch_done},
            "history": history,
            "best_val_macro_f1": best_f1,
            "best_epoch": best_epoch,
            "world_size": di.world_size,
        }

    stop = _StopFlag()
    interrupted: str | None = None
    with stop:
        for epoch in range(start_epoch, cfg.epochs):
            sampler.set_epoch(epoch, skip_batches * per_rank_batch)
            if hasattr(train_ds, "set_epoch"):
                train_ds.set_epoch(epoch)
            model_for_train.train()
            loss_sum, correct, seen = partial["loss_sum"], partial["correct"], partial["seen"]
            t0 = time.perf_counter() - partial["seconds"]
            batches_done = skip_batches
            bar = _bar(progress and di.is_main, len(base_sampler) * di.world_size,
                       skip_batches * cfg.batch_size, f"epoch {epoch + 1}/{cfg.epochs}")
            for xb, yb in train_loader:
                xb = xb.to(device, non_blocking=pin)
                if use_cl:
                    xb = xb.contiguous(memory_format=torch.channels_last_3d)
                yb = yb.to(device, non_blocking=pin)
                optimizer.zero_grad(set_to_none=True)
                loss, logits = forward_backward(model_for_train, xb, yb, plan.accumulation_steps,
                                                scaler, lambda: autocast(device, dtype))
                if not torch.isfinite(loss):
                    raise diverged(loss.item(), xb, epoch + 1, schedule.step_count + 1,
                                   schedule.lr, _dataset_path(store))
                if cfg.max_grad_norm:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                n = yb.numel()
                loss_sum += float(loss.detach()) * n
                correct += int((logits.detach().argmax(1) == yb).sum())
                seen += n
                batches_done += 1
                if bar is not None:
                    bar.update(n * di.world_size)
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{schedule.lr:.2e}")
                ckpt_mod.pause_hook(f"batch:{epoch + 1}:{batches_done}")
                if any_rank(stop.signal is not None, di, device):
                    interrupted = stop.signal or "SIGTERM"
                    break
            if bar is not None:
                bar.close()
            seconds = time.perf_counter() - t0
            if interrupted and batches_done < steps_per_epoch:
                prog_state = {"batches_done": batches_done, "loss_sum": loss_sum,
                              "correct": correct, "seen": seen, "seconds": seconds}
                pl = payload(epoch, prog_state)
                if di.is_main:
                    ckpt_mod.save_checkpoint(ckpt_dir / "last.pt", pl)
                    log.warning("%s: stopped in epoch %d after batch %d; checkpoint %s "
                                "(continue with --resume)", interrupted, epoch + 1,
                                batches_done, ckpt_dir / "last.pt")
                barrier(di)
                break
            skip_batches = 0
            partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}

            totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device)
            all_reduce_sum(totals, di)
            if bn_loader is not None:
                _recalibrate_batchnorm(model, bn_loader, device, dtype, use_cl)
            _average_buffers(model, di)
            val_loss, cm = _validate(model, val_loader, device, dtype, use_cl, num_classes, di)
            f1 = M.per_class_f1(cm)
            record = {
                "epoch": epoch + 1,
                "lr": float(optimizer.param_groups[0]["lr"]),
                "train_loss": float(totals[0] / totals[2]),
                "train_accuracy": float(totals[1] / totals[2]),
                "val_loss": val_loss,
                "val_accuracy": M.accuracy(cm),
                "val_macro_f1": M.macro_f1(cm),
                "val_f1_per_class": {n: (None if np.isnan(v) else float(v))
                                     for n, v in zip(class_names, f1, strict=True)},
                "samples_per_s": float(totals[2]) / max(seconds, 1e-9),
                "epoch_seconds": seconds,
            }
            history.append(record)
            score = record["val_macro_f1"] if not math.isnan(record["val_macro_f1"]) else -1.0
            is_best = score > best_f1
            if is_best:
                best_f1, best_epoch = score, epoch + 1
            pl = payload(epoch + 1, None)
            if di.is_main:
                ckpt_mod.save_checkpoint(ckpt_dir / "last.pt", pl)
                if is_best:
                    ckpt_mod.save_checkpoint(ckpt_dir / "best.pt", pl)
                if cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0:
                    ckpt_mod.save_checkpoint(ckpt_dir / f"epoch_{epoch + 1:03d}.pt", pl)
                _write_text(out / "metrics.jsonl",
                            "".join(json.dumps(h) + "\n" for h in history))
                if tb is not None:
                    for k, v in record.items():
                        if isinstance(v, (int, float)) and k != "epoch":
                            tb.add_scalar(k, v, epoch + 1)
                    tb.flush()
                log.info("epoch %d/%d  train loss %.4f  val loss %.4f  val macro F1 %.4f  "
                         "%.1f samples/s", epoch + 1, cfg.epochs, record["train_loss"],
                         val_loss, record["val_macro_f1"], record["samples_per_s"])
            barrier(di)
            if interrupted:
                log.warning("%s: stopped after epoch %d; checkpoint %s (continue with "
                            "--resume)", interrupted, epoch + 1, ckpt_dir / "last.pt")
                break
    if tb is not None:
        tb.close()
    epochs_done = history[-1]["epoch"] if history else start_epoch
    return FitResult(out, epochs_done, best_epoch, best_f1, history, interrupted)


def _limit(device: torch.device, max_memory_bytes: int | None) -> int:
    avail = available_memory_bytes(device)
    return avail if max_memory_bytes is None else min(avail, max_memory_bytes)


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def _recalibrate_batchnorm(model: nn.Module, loader: DataLoader, device: torch.device,
                           dtype: torch.dtype | None, use_cl: bool) -> None:
    """Recompute batch-norm running statistics with the epoch's final weights.

    The running averages (momentum 0.1) follow the weights with a lag of ~10 steps; early in
    training, or in short runs, the weights move faster than that and the statistics used
    in eval mode no longer fit them (measured: a net at 89% training accuracy in train mode
    predicted one class for every sample in eval mode; after recalibration 84% on the
    validation split, see docs/training.md). This is "precise BN" (Wu & Johnson 2021): a
    cumulative average over a fixed subset of training subtomograms, no augmentation, no
    gradients, weights untouched.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    was_training = model.training
    model.train()
    try:
        for xb, _ in loader:
            xb = xb.to(device)
            if use_cl:
                xb = xb.contiguous(memory_format=torch.channels_last_3d)
            with autocast(device, dtype):
                model(xb)
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        model.train(was_training)


def _average_buffers(model: nn.Module, di: DistInfo) -> None:
    """Average floating-point buffers (batch-norm running statistics) over ranks.

    Each rank updates them from its own shard during training; averaging makes every
    rank validate, and rank 0 save, the same model.
    """
    if not di.distributed:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            all_reduce_sum(buf.data, di)
            buf.data /= di.world_size


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
