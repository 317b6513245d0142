"""Training: configuration and presets, the loop (single process or DDP), checkpoints.

Public API
----------
TrainConfig, preset, PRESETS
    The validated configuration (YAML round-trip) and its named starting points
    (``paper``: the published protocol; ``default``: the measured working setting).
fit(cfg, data, out_dir, resume=False, ...) -> FitResult
    Train and write a run directory (see ``docs/training.md``); ``fit(None, data, run,
    resume=True)`` continues a run's own plan (``tomoclass.train.resume``).
options.config_from_options(preset_name=, config=, resume=, run_dir=, **fields)
    The configuration ``tomoclass train`` builds from its options.
load_checkpoint(path)
    Read a checkpoint safely (``weights_only``) and check its format.

Rebuilding a trained run for inference (``load_run``) and ``predict_particles`` are in
:mod:`tomoclass.infer`, the layer above.
"""

from tomoclass.train.checkpoint import load_checkpoint
from tomoclass.train.config import PRESETS, TrainConfig, preset
from tomoclass.train.divergence import TrainingDiverged
from tomoclass.train.loop import FitResult, fit

__all__ = [
    "PRESETS",
    "FitResult",
    "TrainConfig",
    "TrainingDiverged",
    "fit",
    "load_checkpoint",
    "preset",
]
