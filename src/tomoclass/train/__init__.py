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
load_run(run_dir, which="best") -> (model, class_map, info)
    Rebuild a trained model from a run directory.
load_checkpoint(path)
    Read a checkpoint safely (``weights_only``) and check its format.
predict_particles(run, tomogram, coords, ...) -> PredictionResult; write_predictions
    Classify the picked particles of a tomogram with a trained run (STAR/CSV output).
"""

from tomoclass.train.checkpoint import load_checkpoint
from tomoclass.train.config import PRESETS, TrainConfig, preset
from tomoclass.train.divergence import TrainingDiverged
from tomoclass.train.loop import FitResult, fit
from tomoclass.train.predict import PredictionResult, predict_particles, write_predictions
from tomoclass.train.run import load_run

__all__ = [
    "PRESETS",
    "FitResult",
    "PredictionResult",
    "TrainConfig",
    "TrainingDiverged",
    "fit",
    "load_checkpoint",
    "load_run",
    "predict_particles",
    "preset",
    "write_predictions",
]
