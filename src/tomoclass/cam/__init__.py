"""Class activation maps (the paper's Eq. 1, Grad-CAM for other nets), their figures and score.

- :func:`class_activation_maps` -> :class:`CamResult` (maps, class, method, probabilities);
- :func:`cam_score` -> :class:`CamScore`: share of positive CAM energy inside the particle's
  ground-truth mask (:func:`particle_mask`), averaged per class;
- :func:`cam_figure` (Fig. 5 layout) and :func:`write_cam_volumes` (MRC);
- the figure and maps for trained runs on a dataset (what ``tomoclass cam`` calls) are a
  workflow: :func:`tomoclass.workflows.cam.cam_for_runs`.
"""

from tomoclass.cam.figure import CamPanel, cam_figure
from tomoclass.cam.maps import METHODS, CamResult, cam_method, class_activation_maps
from tomoclass.cam.score import (
    DEFAULT_MASK_LEVEL,
    CamScore,
    cam_score,
    energy_fraction,
    particle_mask,
)
from tomoclass.cam.volumes import write_cam_volumes

__all__ = [
    "DEFAULT_MASK_LEVEL",
    "METHODS",
    "CamPanel",
    "CamResult",
    "CamScore",
    "cam_figure",
    "cam_method",
    "cam_score",
    "class_activation_maps",
    "energy_fraction",
    "particle_mask",
    "write_cam_volumes",
]
