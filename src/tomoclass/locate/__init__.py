"""Find and classify particles in a whole tomogram with a classifier trained on boxes.

:func:`locate` is the whole job (:func:`locate_many`: several tomograms, one table). Its
parts: :func:`propose_candidates` finds blobs at the particles' scales and
:func:`classify_boxes` classifies the box centred on each, cut exactly as training boxes are
(``method="candidates"``); :func:`score_tomogram` classifies every grid point instead
(``"boxes"``), or runs the net fully convolutionally (``"stages"``, ``"tiles"``);
:func:`picks_from_boxes` and :func:`find_peaks` turn the probabilities into a particle table
with non-maximum suppression; :func:`background_boxes` makes the "background" class the
classifier must be trained with; :mod:`tomoclass.locate.calibration` keeps a run's pick
threshold chosen on a labelled tomogram.
"""

from tomoclass.locate.background import background_boxes
from tomoclass.locate.candidates import Candidates, candidate_scales, propose_candidates
from tomoclass.locate.peaks import BACKGROUND, find_peaks, picks_from_boxes
from tomoclass.locate.pipeline import (
    LocateResult,
    locate,
    locate_many,
    merge_radii,
    parse_radii,
    radii_for_tomogram,
    resolve_radii,
    write_score_maps,
)
from tomoclass.locate.scoring import (
    BoxClassifier,
    Geometry,
    ScoreMaps,
    Tile,
    choose_tile,
    classify_boxes,
    model_geometry,
    plan_tiles,
    receptive_field_radius,
    score_tomogram,
)

__all__ = [
    "BACKGROUND",
    "BoxClassifier",
    "Candidates",
    "candidate_scales",
    "classify_boxes",
    "picks_from_boxes",
    "propose_candidates",
    "Geometry",
    "LocateResult",
    "ScoreMaps",
    "background_boxes",
    "find_peaks",
    "locate",
    "locate_many",
    "merge_radii",
    "parse_radii",
    "radii_for_tomogram",
    "resolve_radii",
    "write_score_maps",
    "model_geometry",
    "plan_tiles",
    "receptive_field_radius",
    "Tile",
    "choose_tile",
    "score_tomogram",
]
