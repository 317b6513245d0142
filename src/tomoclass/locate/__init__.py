"""Find and classify particles in a whole tomogram with a GAP + linear classifier.

The classifier runs fully convolutionally (:func:`score_tomogram`), its per-class score maps
become a particle table by peak finding with non-maximum suppression (:func:`find_peaks`),
and :func:`background_boxes` makes the "background" class it must be trained with.
"""

from tomoclass.locate.background import background_boxes
from tomoclass.locate.peaks import BACKGROUND, find_peaks
from tomoclass.locate.pipeline import (
    LocateResult,
    locate,
    merge_radii,
    parse_radii,
    resolve_radii,
    write_score_maps,
)
from tomoclass.locate.scoring import (
    Geometry,
    ScoreMaps,
    Tile,
    choose_tile,
    model_geometry,
    plan_tiles,
    receptive_field_radius,
    score_tomogram,
)

__all__ = [
    "BACKGROUND",
    "Geometry",
    "LocateResult",
    "ScoreMaps",
    "background_boxes",
    "find_peaks",
    "locate",
    "merge_radii",
    "parse_radii",
    "resolve_radii",
    "write_score_maps",
    "model_geometry",
    "plan_tiles",
    "receptive_field_radius",
    "Tile",
    "choose_tile",
    "score_tomogram",
]
