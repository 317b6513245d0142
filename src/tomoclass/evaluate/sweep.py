"""Scoring pick files: the tables, the threshold sweep and the calibration record.

What ``tomoclass score-picks`` does around :func:`tomoclass.evaluate.picks.score_picks`, for a
library caller: read ground truth and picks (a PolNet motif list, in Å, with the voxel size),
score them, sweep thresholds, choose the calibrated one, and give the records written as JSON
(``--json``) and stored in a run directory (``--calibrate``; storing is ``locate``'s:
:func:`tomoclass.locate.calibration.save_threshold`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tomoclass.errors import InputError
from tomoclass.evaluate.picks import PickScore, score_picks
from tomoclass.evaluate.thresholds import ThresholdChoice, choose_threshold, threshold_sweep
from tomoclass.io import read_particles, table_format

Radii = float | Mapping[str, float]


@dataclass
class PickFileScores:
    """The scores of one picks file against its ground truth.

    Attributes
    ----------
    result
        :class:`~tomoclass.evaluate.picks.PickScore` of every pick.
    sweep
        Localization P/R/F1 per threshold (:func:`~tomoclass.evaluate.thresholds.threshold_sweep`),
        or None when no thresholds were asked for.
    choice
        The threshold of best localization F1, or None when calibration was not asked for.
    record
        What a calibration stores beside the threshold (the choice, both files' absolute
        paths, the radii), or None.
    """

    result: PickScore
    sweep: pd.DataFrame | None = None
    choice: ThresholdChoice | None = None
    record: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: the scores, plus ``threshold_sweep`` and ``calibration`` if any."""
        data = self.result.to_dict()
        if self.sweep is not None:
            data["threshold_sweep"] = json.loads(self.sweep.to_json(orient="records"))
        if self.choice is not None:
            data["calibration"] = self.choice.to_dict()
        return data


def parse_thresholds(text: str) -> list[float]:
    """``"0.5,0.7"`` -> ``[0.5, 0.7]``; anything else raises InputError (field ``sweep``)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--sweep {text!r} is not a comma-separated list of numbers",
                         field="sweep") from None


def read_truth_and_picks(truth: str | os.PathLike[str], picks: str | os.PathLike[str],
                         voxel_size_angstrom: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ground truth and picks (which may be empty) as schema tables.

    ``voxel_size_angstrom`` converts only a PolNet motif list's Å coordinates (given for
    other formats it would also convert STAR origin shifts in Å, which it must not).
    """
    def voxel_for(path: str | os.PathLike[str]) -> float | None:
        return voxel_size_angstrom if table_format(path) == "polnet" else None

    return (read_particles(truth, voxel_size_angstrom=voxel_for(truth)),
            read_particles(picks, allow_empty=True, voxel_size_angstrom=voxel_for(picks)))


def score_pick_files(
    truth: str | os.PathLike[str],
    picks: str | os.PathLike[str],
    radii: Radii,
    *,
    voxel_size_angstrom: float = 10.0,
    region: str = "sphere",
    matching: str = "greedy",
    thresholds: Sequence[float] | None = None,
    calibrate: bool = False,
) -> PickFileScores:
    """Score a picks file against a ground-truth file, as ``tomoclass score-picks`` does.

    Parameters
    ----------
    truth, picks
        Particle tables (any format :func:`tomoclass.io.read_particles` reads).
    radii
        Hit radius in voxels, one number or class name -> radius.
    voxel_size_angstrom
        Voxel size (Å) of the tomogram, for a PolNet motif list's Å coordinates.
    region, matching
        As :func:`tomoclass.evaluate.picks.score_picks`.
    thresholds
        Also sweep these score thresholds.
    calibrate
        Also choose the threshold of best localization F1 and build its record.

    Returns
    -------
    PickFileScores
    """
    truth_df, picks_df = read_truth_and_picks(truth, picks, voxel_size_angstrom)
    out = PickFileScores(score_picks(truth_df, picks_df, radii, region=region,
                                     matching=matching))
    if thresholds:
        out.sweep = threshold_sweep(truth_df, picks_df, radii, list(thresholds),
                                    region=region, matching=matching)
    if calibrate:
        out.choice = choose_threshold(truth_df, picks_df, radii, region=region,
                                      matching=matching)
        out.record = calibration_record(out.choice, truth, picks, radii)
    return out


def calibration_record(choice: ThresholdChoice, truth: str | os.PathLike[str],
                       picks: str | os.PathLike[str], radii: Radii) -> dict[str, Any]:
    """What a calibrated threshold is stored with: the choice, both files, the radii."""
    return {**choice.to_dict(), "truth": str(Path(truth).resolve()),
            "picks": str(Path(picks).resolve()),
            "radii": dict(radii) if isinstance(radii, Mapping) else float(radii)}


def sweep_markdown(sweep: pd.DataFrame) -> str:
    """The threshold sweep as a Markdown table (one row per threshold)."""
    lines = ["| threshold | picks | TP | FP | FN | precision | recall | F1 |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.threshold:g} | {r.n_picks} | {r.tp} | {r.fp} | {r.fn} | "
              f"{r.precision:.3f} | {r.recall:.3f} | {r.f1:.3f} |" for r in sweep.itertuples()]
    return "\n".join(lines) + "\n"
