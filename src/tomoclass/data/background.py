"""Background boxes: the non-particle class a classifier needs before it can locate.

(Here in ``data`` so that ``extract`` can add them; ``tomoclass.locate.background_boxes`` is
the same function.)

A GAP + linear classifier trained only on particle classes gives every position of a
tomogram some particle class. SHREC'19's CNN added a 13th class, "background", of boxes that
are *not* centred on a particle; tomoclass does the same. Two kinds are drawn:

``random``
    Uniform positions in the tomogram whose centre lies inside no particle (farther than the
    particle's radius from every particle centre).
``offcentre``
    A particle's centre moved in a uniformly random direction by a distance drawn uniformly
    in ``(radius, max_offset]``, again kept only if the new centre lies inside no particle:
    boxes that hold most of a particle but not at the centre, so the classifier learns that
    "particle" means "centred particle" and the score map peaks on centres.

"Inside a particle" is the same test :func:`tomoclass.evaluate.picks.score_picks` uses for a
hit (a sphere of the particle's radius), so a pick at any background position would be a false
positive there. Positions are whole voxels (extraction centres boxes on voxels) and, with
``box``, far enough from the border that the whole box lies inside the tomogram.

The rows use the particle-table schema with ``class_name == "background"``,
``is_protein == False`` (what :func:`tomoclass.io.read_particles` also sets for that class)
and a ``background_kind`` column; append them to the ground truth before extraction so the
dataset gets the class.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from tomoclass.errors import InputError
from tomoclass.io import schema
from tomoclass.io.schema import BACKGROUND

log = logging.getLogger(__name__)


def background_boxes(
    truth: pd.DataFrame,
    shape: Sequence[int],
    radii: float | Mapping[str, float],
    *,
    n_random: int,
    n_offcentre: int,
    seed: int | np.random.Generator,
    box: int | None = None,
    max_offset: float | None = None,
    tomogram: str | None = None,
    max_tries: int = 50,
) -> pd.DataFrame:
    """Draw background box centres for one tomogram.

    Parameters
    ----------
    truth
        The tomogram's ground-truth particles (schema columns ``x, y, z`` in voxels and
        ``class_name``). Rows with ``is_protein == False`` (vesicles, fiducials) are not
        particles: boxes on them are fair background.
    shape
        Tomogram size (z, y, x) in voxels.
    radii
        Particle radius in voxels: one number, or a mapping class name -> radius
        (case-insensitive) covering every class in ``truth`` (a ``"*"`` entry covers the
        classes not named).
    n_random, n_offcentre
        How many boxes of each kind to draw.
    seed
        Seed or generator; the same seed gives the same table.
    box
        Box edge in voxels; when given, centres keep the whole box inside the tomogram
        (``c - box // 2 >= 0`` and ``c - box // 2 + box <= n``).
    max_offset
        Largest off-centre shift in voxels (default ``box / 2``, or twice the largest
        radius without ``box``). Must exceed every particle's radius.
    tomogram
        Value of the ``tomogram`` column (default: the truth's single tomogram name, or "").
    max_tries
        Candidates drawn per requested box before giving up; fewer boxes than requested
        are returned (and logged) when the tomogram is too crowded.

    Returns
    -------
    pandas.DataFrame
        ``n_random + n_offcentre`` rows (or fewer, see ``max_tries``) in the schema of
        :mod:`tomoclass.io.schema`, plus ``background_kind`` ("random" or "offcentre").

    Raises
    ------
    InputError
        A missing radius, a box larger than the tomogram, or a ``max_offset`` not larger
        than the particle radii.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    shape_arr = np.asarray(shape, dtype=int)
    if shape_arr.shape != (3,) or (shape_arr <= 0).any():
        raise InputError(f"tomogram shape must be 3 positive sizes (z, y, x), got {shape}")
    truth = _particles_of(truth)
    space = _FreeSpace(truth, _radii(truth, radii), *_centre_limits(shape_arr, box))
    if max_offset is None:
        max_offset = box / 2 if box is not None else 2 * space.r_max
    if len(space.r) and max_offset <= space.r_max:
        raise InputError(
            f"max_offset {max_offset} must exceed the largest particle radius {space.r_max}",
            field="max_offset",
        )
    rows = []
    got = _draw(
        n_random,
        max_tries,
        rng,
        space,
        lambda m: rng.integers(space.lo, space.hi, size=(m, 3)).astype(float),
    )
    rows.append((got, "random"))
    if n_offcentre and len(space.centres) == 0:
        raise InputError(
            "off-centre background boxes need ground-truth particles", field="n_offcentre"
        )
    propose = _offcentre_proposer(rng, space, max_offset)
    rows.append((_draw(n_offcentre, max_tries, rng, space, propose), "offcentre"))
    return _background_table(rows, _tomogram_of(truth, tomogram))


def _particles_of(truth: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``truth`` that are particles; a missing column raises."""
    for col in (*schema.COORDS, schema.CLASS_NAME):
        if col not in truth.columns:
            raise InputError(f"ground-truth table has no column '{col}'", field=col)
    if schema.IS_PROTEIN in truth.columns:
        truth = truth[truth[schema.IS_PROTEIN].fillna(True).astype(bool)]
    return truth


def _centre_limits(shape_arr: np.ndarray, box: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(lo inclusive, hi exclusive) z, y, x of centres whose whole ``box`` lies inside."""
    if box is None:
        return np.zeros(3, int), shape_arr
    if box > shape_arr.min():
        raise InputError(
            f"box {box} is larger than the tomogram {tuple(shape_arr)}", field="box"
        )
    return np.full(3, box // 2), shape_arr - box + box // 2


class _FreeSpace:
    """``space(points)``: which (M, 3) zyx points lie inside the limits and inside no particle."""

    def __init__(self, truth: pd.DataFrame, r: np.ndarray, lo: np.ndarray,
                 hi: np.ndarray) -> None:
        self.centres = truth[[schema.Z, schema.Y, schema.X]].to_numpy(float)  # (N, 3) z, y, x
        self.r, self.lo, self.hi = r, lo, hi
        self.r_max = float(r.max()) if len(r) else 0.0
        self.tree = cKDTree(self.centres) if len(self.centres) else None

    def __call__(self, points: np.ndarray) -> np.ndarray:
        ok = ((points >= self.lo) & (points < self.hi)).all(axis=1)
        if self.tree is None or not ok.any():
            return ok
        for i, near in enumerate(self.tree.query_ball_point(points, self.r_max)):
            if ok[i] and near:
                d = np.linalg.norm(self.centres[near] - points[i], axis=1)
                ok[i] = not (d <= self.r[near]).any()
        return ok


def _offcentre_proposer(rng: np.random.Generator, space: _FreeSpace, max_offset: float):
    """``propose(m)``: particle centres moved in random directions by (radius, max_offset]."""
    centres, r = space.centres, space.r

    def offcentre(m: int) -> np.ndarray:
        k = rng.integers(0, len(centres), size=m)
        direction = rng.normal(size=(m, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        dist = rng.uniform(r[k], max_offset)
        return np.rint(centres[k] + direction * dist[:, None])

    return offcentre


def _tomogram_of(truth: pd.DataFrame, tomogram: str | None) -> str:
    """The ``tomogram`` value: given, else the truth's single tomogram name, else ""."""
    if tomogram is not None:
        return tomogram
    names = truth[schema.TOMOGRAM].unique() if schema.TOMOGRAM in truth.columns else []
    return str(names[0]) if len(names) == 1 else ""


def _background_table(rows: Sequence[tuple[np.ndarray, str]], name: str) -> pd.DataFrame:
    """Schema rows of class ``background`` for each (zyx centres, kind)."""
    tables = []
    for zyx, kind in rows:
        tables.append(
            pd.DataFrame(
                {
                    schema.TOMOGRAM: name,
                    schema.X: zyx[:, 2],
                    schema.Y: zyx[:, 1],
                    schema.Z: zyx[:, 0],
                    schema.CLASS_NAME: BACKGROUND,
                    schema.ROT: np.nan,
                    schema.TILT: np.nan,
                    schema.PSI: np.nan,
                    schema.SCORE: np.nan,
                    schema.IS_PROTEIN: False,
                    "background_kind": kind,
                }
            )
        )
    return pd.concat(tables, ignore_index=True)


def _draw(n: int, max_tries: int, rng: np.random.Generator, free, propose) -> np.ndarray:
    """Rejection-sample ``n`` free positions from ``propose(m) -> (m, 3)`` in batches."""
    out = np.zeros((0, 3))
    tries = 0
    while len(out) < n and tries < n * max_tries:
        m = max(16, 2 * (n - len(out)))
        cand = propose(m)
        tries += m
        ok = cand[free(cand)]
        # No two background boxes at the same voxel.
        out = np.unique(np.concatenate([out, ok]), axis=0) if len(ok) else out
    if len(out) < n:
        log.warning("background: found %d of %d requested free positions", len(out), n)
    # np.unique sorted the rows: shuffle with the same generator, then trim.
    out = out[rng.permutation(len(out))][:n]
    return out


def _radii(truth: pd.DataFrame, radii: float | Mapping[str, float]) -> np.ndarray:
    names = truth[schema.CLASS_NAME].fillna("").astype(str)
    if isinstance(radii, Mapping):
        table = {str(k).casefold(): float(v) for k, v in radii.items()}
        if "*" in table:
            table.update({n.casefold(): table["*"] for n in names if n.casefold() not in table})
        missing = sorted({n for n in names if n.casefold() not in table})
        if missing:
            raise InputError(
                f"no particle radius for class(es) {', '.join(missing)}", field="radius"
            )
        r = np.array([table[n.casefold()] for n in names], float)
    else:
        r = np.full(len(names), float(radii))
    if len(r) and not (np.isfinite(r).all() and (r > 0).all()):
        raise InputError("particle radii must be positive numbers of voxels", field="radius")
    return r


def background_for_tomograms(
    truths: Mapping[str, tuple[pd.DataFrame, Sequence[int]]],
    radii: float | Mapping[str, float],
    *,
    n_random: int,
    n_offcentre: int,
    seed: int,
    box: int | None = None,
    max_offset: float | None = None,
) -> pd.DataFrame:
    """:func:`background_boxes` for several tomograms, each with its own seeded stream.

    Parameters
    ----------
    truths
        Tomogram name -> (its ground-truth rows, its shape (z, y, x)). Tomogram ``k`` in
        sorted name order draws with ``numpy.random.default_rng([seed, k])``, so adding a
        tomogram does not change the others' boxes.
    radii, n_random, n_offcentre, box, max_offset
        As for :func:`background_boxes` (``n_*`` per tomogram).
    seed
        Base seed of the per-tomogram streams.

    Returns
    -------
    pandas.DataFrame
        The background rows of every tomogram (``tomogram`` column = its name).
    """
    if n_random < 0 or n_offcentre < 0:
        raise InputError("numbers of background boxes must be >= 0", field="background")
    tables = []
    for k, name in enumerate(sorted(truths)):
        truth, shape = truths[name]
        tables.append(background_boxes(
            truth, shape, radii, n_random=n_random, n_offcentre=n_offcentre,
            seed=np.random.default_rng([int(seed), k]), box=box, max_offset=max_offset,
            tomogram=name))
    if not tables:
        return pd.DataFrame(columns=[*schema.PARTICLE_COLUMNS, "background_kind"])
    return pd.concat(tables, ignore_index=True)


def write_background_tables(
    written: Sequence[Mapping[str, Any]],
    radii: float | Mapping[str, float],
    *,
    n_random: int,
    n_offcentre: int,
    seed: int,
    max_offset: float | None = None,
) -> list[Path]:
    """Background boxes for simulated tomograms, as ``<name>_background.star`` beside each.

    Parameters
    ----------
    written
        What :func:`tomoclass.simulate.output.simulate_tomograms` returns: per tomogram a
        mapping with its ``"tomogram"`` and ``"ground_truth"`` paths.
    radii
        Particle radius in voxels per class (the templates' radii).
    n_random, n_offcentre, max_offset
        As for :func:`background_boxes`, per tomogram.
    seed
        Tomogram ``k`` draws with ``numpy.random.default_rng([seed, k])``.

    Returns
    -------
    list of Path
        The STAR files written (give them to ``extract --tables`` with the ground truth).
    """
    from tomoclass.io import read_particles, read_volume, tomogram_name, write_particles

    out = []
    for k, w in enumerate(written):
        tomo = Path(w["tomogram"])
        name = tomogram_name(tomo)
        truth = read_particles(w["ground_truth"], tomogram=name)
        shape = read_volume(tomo, check="none").shape
        bg = background_boxes(truth, shape, radii, n_random=n_random, n_offcentre=n_offcentre,
                              seed=np.random.default_rng([int(seed), k]),
                              max_offset=max_offset, tomogram=name)
        out.append(write_particles(tomo.parent / f"{name}_background.star",
                                   bg.drop(columns="background_kind")))
    return out
