"""Trained runs applied to data: the layer between ``train`` and ``locate``/``evaluate``/``cam``.

Public API
----------
load_run(run_dir, which="best", map_location="cpu") -> (model, class_map, info)
    Rebuild a trained model from a run directory, ``.pt`` file or pretrained name.
checkpoint_path(run_dir, which="best")
    Where that checkpoint is (:mod:`tomoclass.train.run`; ``train --init`` needs it too).
select_device, inference_net, PRECISIONS
    The one rule for device and arithmetic (:mod:`tomoclass.train.device`).
prepare_tomogram(run, tomogram, ...) -> PreparedTomogram
    A run made ready for one tomogram (device, run, volume, name, resampling step,
    polarity, spectrum; the net per device): what ``predict`` and ``locate`` share.
predict_particles(run, tomogram, coords, ...) -> PredictionResult; write_predictions
    Classify the picked particles of a tomogram with a trained run (STAR/CSV output).
"""

from tomoclass.infer.predict import (
    PROB_PREFIX,
    PredictionResult,
    predict_particles,
    write_predictions,
)
from tomoclass.infer.prepare import PreparedTomogram, prepare_tomogram
from tomoclass.infer.run import load_run
from tomoclass.train.device import PRECISIONS, inference_net, select_device
from tomoclass.train.run import checkpoint_path

__all__ = [
    "PRECISIONS",
    "PROB_PREFIX",
    "PredictionResult",
    "PreparedTomogram",
    "checkpoint_path",
    "inference_net",
    "load_run",
    "predict_particles",
    "prepare_tomogram",
    "select_device",
    "write_predictions",
]
