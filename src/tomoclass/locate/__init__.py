"""Find and classify particles in a whole tomogram with a classifier trained on boxes: the stage.

The whole job for a trained run, :func:`tomoclass.workflows.locate.locate` (and
``locate_many``: several tomograms, one table), sits above this stage. Its parts:
:func:`propose_candidates` finds blobs at the particles' scales and :func:`classify_boxes`
(:func:`classify_candidates`) classifies the box centred on each, cut exactly as training
boxes are (``method="candidates"``); :func:`score_tomogram` classifies every grid point instead
(``"boxes"``), or runs the net fully convolutionally (``"stages"``, ``"tiles"``);
:func:`picks_from_boxes` and :func:`find_peaks` turn the probabilities into a particle table
with non-maximum suppression (:func:`suppress_picks` applies it again to a table);
:func:`background_boxes` makes the "background" class the classifier must be trained with;
:mod:`tomoclass.locate.calibration` keeps a run's pick threshold chosen on a labelled
tomogram; :mod:`tomoclass.locate.radii` the particle radii.
"""

from tomoclass.locate.background import background_boxes
from tomoclass.locate.boxes import BoxClassifier, classify_boxes, classify_candidates
from tomoclass.locate.candidates import Candidates, candidate_scales, propose_candidates
from tomoclass.locate.geometry import Geometry, ScoreMaps, model_geometry, receptive_field_radius
from tomoclass.locate.peaks import BACKGROUND, find_peaks, picks_from_boxes, suppress_picks
from tomoclass.locate.radii import merge_radii, parse_radii, radii_for_tomogram, resolve_radii
from tomoclass.locate.scoring import score_tomogram
from tomoclass.locate.tiles import (
    Tile,
    choose_tile,
    default_tile_voxels,
    padded_extent,
    plan_tiles,
)

__all__ = [
    "BACKGROUND",
    "BoxClassifier",
    "Candidates",
    "candidate_scales",
    "classify_boxes",
    "classify_candidates",
    "picks_from_boxes",
    "propose_candidates",
    "Geometry",
    "ScoreMaps",
    "background_boxes",
    "find_peaks",
    "merge_radii",
    "parse_radii",
    "radii_for_tomogram",
    "resolve_radii",
    "model_geometry",
    "plan_tiles",
    "receptive_field_radius",
    "Tile",
    "choose_tile",
    "default_tile_voxels",
    "padded_extent",
    "score_tomogram",
    "suppress_picks",
]
