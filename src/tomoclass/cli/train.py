"""``tomoclass train``: train a registered model on a dataset directory.

Single process: ``tomoclass train --data DS --out RUN``. Several GPUs or nodes:
``torchrun --nproc-per-node N -m tomoclass train --data DS --out RUN``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tomoclass.errors import InputError


def _model_arg(text: str) -> tuple[str, Any]:
    from tomoclass.train.options import parse_assignment

    try:
        key, value = parse_assignment(text, field="--model-arg")
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return key.replace("-", "_"), value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    from tomoclass.models import list_models
    from tomoclass.train.config import PRESETS

    p = sub.add_parser(
        "train", help="train a model on a dataset (single process or torchrun/DDP)",
        description="Train a model on a dataset directory and write a run directory "
        "(config.yaml, classes.yaml, metrics.jsonl, checkpoints/). Options left out take "
        "their value from --config or --preset.",
    )
    p.add_argument("--data", required=True, type=Path, help="dataset directory")
    p.add_argument("--out", required=True, type=Path, help="run directory to write")
    p.add_argument("--model", choices=list_models(),
                   help="registered model name (default: the preset's)")
    p.add_argument("--model-arg", action="append", type=_model_arg, default=[],
                   metavar="KEY=VALUE", help="model constructor argument (repeatable)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="'paper': the published protocol (Adam, lr 0.1); 'default': the "
                   "measured working lr (docs/training.md); 'plain': Adam 1e-3 with no warm-up, "
                   "augmentation or BN recalibration, the floor the defaults must beat")
    p.add_argument("--config", type=Path, help="training config YAML (instead of --preset)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch size (all processes)")
    p.add_argument("--accumulation-steps", type=int, metavar="K")
    p.add_argument("--lr", type=float, dest="base_lr",
                   help="base lr at --lr-reference-batch (linear scaling rule)")
    p.add_argument("--lr-reference-batch", type=int)
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--lr-step-epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic kernels and identical curves for one seed (slower)")
    p.add_argument("--no-augment", action="store_false", dest="augment", default=None,
                   help="no wedge-preserving augmentation of the training data")
    p.add_argument("--checkpoint-every", type=int, help="keep epoch_XXX.pt every N epochs")
    p.add_argument("--bn-recalibration-samples", type=int)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"])
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue RUN/checkpoints/last.pt (or the given checkpoint)")
    p.add_argument("--init", metavar="RUN_OR_NAME")
    p.add_argument("--early-stopping", type=int, dest="early_stopping_patience", metavar="N")
    p.add_argument("--early-stopping-min-delta", type=float, metavar="D")
    p.add_argument("--early-stopping-min-epochs", type=int, metavar="M")
    p.add_argument("--max-memory", help="refuse to start above this memory estimate, "
                   "e.g. 8G")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # options that set a TrainConfig field and have no help of their own take the field's
    # description, so the config object stays the one place that explains them
    from tomoclass.train.config import TrainConfig

    for action in p._actions:
        field = TrainConfig.model_fields.get(action.dest)
        if field is not None and action.help is None and field.description:
            action.help = field.description
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the config, call :func:`tomoclass.train.fit`, print where the run is."""
    from tomoclass.train import fit
    from tomoclass.train.options import config_from_options
    from tomoclass.train.resources import parse_bytes

    overrides = {
        k: getattr(args, k) for k in (
            "model", "epochs", "batch_size", "base_lr", "lr_reference_batch", "optimizer",
            "warmup_epochs", "lr_step_epochs", "seed", "deterministic", "augment",
            "checkpoint_every", "bn_recalibration_samples", "num_workers", "device", "amp",
            "accumulation_steps", "init", "early_stopping_patience", "early_stopping_min_delta",
            "early_stopping_min_epochs")
    }
    if args.model_arg:
        overrides["model_kwargs"] = dict(args.model_arg)
    cfg = config_from_options(preset_name=args.preset, config=args.config, resume=args.resume,
                              run_dir=args.out, **overrides)
    try:
        max_mem = parse_bytes(args.max_memory)
    except ValueError as exc:
        raise InputError(str(exc), field="--max-memory") from None
    result = fit(cfg, args.data, args.out, resume=args.resume, progress=not args.no_progress,
                 max_memory_bytes=max_mem)
    if int(os.environ.get("RANK", "0")) == 0:
        if result.already_finished:
            print(f"the run already finished its {result.epochs_done} epochs; nothing to "
                  f"train (pass --epochs N to train longer); run: {args.out}")
        elif result.interrupted:
            print(f"{result.interrupted}: stopped; checkpoint in {args.out / 'checkpoints'}; "
                  f"continue with: tomoclass train --data {args.data} --out {args.out} --resume")
        else:
            if result.stopped_early:
                print("early stopping: the validation loss stopped improving (the run's "
                      "early_stopping_patience, config.yaml)")
            print(f"trained {result.epochs_done} epochs; best validation macro F1 "
                  f"{result.best_val_macro_f1:.4f} at epoch {result.best_epoch}; run: {args.out}")
    if result.interrupted:
        return 130 if result.interrupted == "SIGINT" else 143
    return 0
