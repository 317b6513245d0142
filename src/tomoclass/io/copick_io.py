"""copick projects: tomograms and picks read and picks written through copick's own API.

A copick project is a JSON configuration (``copick.from_file``) naming the pickable objects and
where runs live. tomoclass maps it onto its own terms:

- a copick **run** is a tomogram: its name is the ``tomogram`` column of the particle table;
- a run's tomogram at a **voxel spacing** and **tomo type** (``wbp``, ``denoised``, ...) is an
  OME-Zarr folder that :func:`tomoclass.io.read_volume` reads (see :mod:`tomoclass.io.omezarr`);
- a **picks** set (object name, user id, session id) is a set of rows with ``class_name`` = the
  object name. copick stores locations in Å (voxel centre ``i`` at ``i * voxel_size``, as its
  RELION and Dynamo converters assume) with a 4x4 object-to-tomogram transform whose
  translation is a refined shift; tomoclass tables hold voxels, so positions are divided by the
  voxel spacing. A pick's rotation (object to tomogram) is the active reference -> particle
  rotation, which is RELION's own matrix of its angles (:func:`tomoclass.io.euler.relion_matrix`,
  RELION's ``Euler_angles2matrix``); copick's RELION converters use the same rule
  (``copick.util.formats._relion_eulers``, ``copick.util.relion.relion_rows_to_poses``).

Needs the optional extra ``tomoclass[copick]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S
from tomoclass.io.euler import relion_angles, relion_matrix

#: copick user id tomoclass writes picks under unless told otherwise (a "tool" in copick's terms).
DEFAULT_USER = "tomoclass"
#: copick session id tomoclass writes picks under unless told otherwise.
DEFAULT_SESSION = "0"


def import_copick(path: str | os.PathLike[str] | None = None):
    """Import ``copick`` without letting it take over the root logger.

    copick's ``copick.util.ome`` calls ``logging.basicConfig(force=True)`` with a rich handler
    on stdout when imported, which would mix log lines into ``--json`` output; the root
    logger's handlers and level are put back. Raises InputError when copick is missing.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        import copick
        import copick.ops.add  # noqa: F401  (imports copick.util.ome, the one that configures)
    except ImportError:
        raise InputError("copick projects need the copick package: pip install "
                         "'tomoclass[copick]'", path=path) from None
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return copick


def open_project(config: str | os.PathLike[str]):
    """Open a copick project from its configuration file (``copick.from_file``).

    Raises
    ------
    InputError
        copick is not installed, or the file is missing or not a copick configuration.
    """
    copick = import_copick(config)
    if not Path(config).is_file():
        raise InputError("no such copick configuration file", path=config)
    try:
        root = copick.from_file(str(config))
    except Exception as exc:  # copick raises pydantic, JSON and fsspec errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"not a readable copick configuration ({first})", path=config) from None
    root._tomoclass_config = str(config)  # so that later errors name the file
    return root


def _config_path(root) -> str | None:
    return getattr(root, "_tomoclass_config", None)


def select_runs(root, names: Sequence[str] | None = None) -> list:
    """The project's runs named in ``names`` (all runs, sorted by name, when None or empty)."""
    runs = {r.name: r for r in root.runs}
    if not names:
        return [runs[n] for n in sorted(runs)]
    missing = [n for n in names if n not in runs]
    if missing:
        raise InputError(f"no run {', '.join(map(repr, missing))} in the copick project (runs: "
                         f"{', '.join(sorted(runs)) or 'none'})", path=_config_path(root),
                         field="run")
    return [runs[n] for n in names]


def _spacing(run, voxel_spacing: float):
    vs = run.get_voxel_spacing(float(voxel_spacing))
    if vs is None:
        have = ", ".join(f"{v.voxel_size:g}" for v in run.voxel_spacings) or "none"
        raise InputError(f"run {run.name!r} has no voxel spacing {voxel_spacing:g} Å (it has: "
                         f"{have})", path=_config_path(run.root), field="voxel_spacing")
    return vs


def tomogram_paths(root, runs: Sequence, voxel_spacing: float, tomo_type: str) -> list[Path]:
    """The OME-Zarr folder of each run's ``tomo_type`` tomogram at ``voxel_spacing`` (Å).

    The paths read with :func:`tomoclass.io.read_volume`; their tomogram name
    (:func:`tomoclass.io.tomogram_name`) is the run name.

    Raises
    ------
    InputError
        A run without that voxel spacing or tomogram type, or a tomogram not on a local file
        system (a Data Portal project: copy the runs locally with copick first).
    """
    paths = []
    for run in runs:
        tomos = _spacing(run, voxel_spacing).get_tomograms(tomo_type)
        if not tomos:
            have = ", ".join(sorted({t.tomo_type for t in _spacing(run, voxel_spacing).tomograms}))
            raise InputError(f"run {run.name!r} has no {tomo_type!r} tomogram at "
                             f"{voxel_spacing:g} Å (it has: {have or 'none'})",
                             path=_config_path(root), field="tomo_type")
        tomo = tomos[0]
        local = str(getattr(tomo, "static_path", None) or getattr(tomo, "overlay_path", ""))
        local = local.removeprefix("local://").removeprefix("file://")
        if not local or not Path(local).is_dir():
            raise InputError(f"tomogram {tomo_type!r} of run {run.name!r} is not on a local file "
                             f"system ({local or 'no path'}); copy it locally with copick first",
                             path=_config_path(root), field="tomo_type")
        paths.append(Path(local))
    return paths


def read_picks(
    root,
    runs: Sequence,
    voxel_spacing: float,
    objects: Sequence[str] | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
) -> pd.DataFrame:
    """Picks of ``runs`` as a particle table in voxels of ``voxel_spacing`` (Å).

    Parameters
    ----------
    root
        The project (:func:`open_project`).
    runs
        Runs to read (:func:`select_runs`).
    voxel_spacing
        Voxel size (Å) of the tomograms the coordinates are for.
    objects
        Object names to read (default: every particle object of the configuration).
    user_id, session_id
        Only picks by this user/tool or session (default: all of them).

    Returns
    -------
    DataFrame
        Schema columns (:mod:`tomoclass.io.schema`) with ``tomogram`` = run name, ``class_name``
        = object name, ``score`` from copick, plus ``copick_user`` and ``copick_session``.
    """
    known = {o.name: o for o in root.pickable_objects}
    if objects:
        missing = [o for o in objects if o not in known]
        if missing:
            raise InputError(f"no pickable object {', '.join(map(repr, missing))} in the copick "
                             f"configuration (objects: {', '.join(sorted(known))})",
                             path=_config_path(root), field="object")
        names = list(objects)
    else:
        names = sorted(n for n, o in known.items() if o.is_particle)
    frames = []
    for run in runs:
        for name in names:
            for picks in run.get_picks(object_name=name, user_id=user_id, session_id=session_id):
                frames.append(_picks_frame(run.name, picks, float(voxel_spacing)))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object if c in (S.TOMOGRAM, S.CLASS_NAME)
                                          else float) for c in S.PARTICLE_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def _picks_frame(run_name: str, picks, voxel_spacing: float) -> pd.DataFrame:
    centres = picks.full_positions() / voxel_spacing  # Å (location + shift) -> voxels
    _, transforms = picks.numpy()
    n = len(centres)
    angles = np.full((n, 3), np.nan)
    if n:
        rot = transforms[:, :3, :3]
        identity = np.all(np.isclose(rot, np.eye(3)), axis=(1, 2))
        angles[identity] = 0.0  # as copick: no gimbal-lock warning for unrotated picks
        if (~identity).any():
            angles[~identity] = relion_angles_of(rot[~identity])
    return pd.DataFrame({
        S.TOMOGRAM: [run_name] * n,
        S.X: centres[:, 0] if n else [], S.Y: centres[:, 1] if n else [],
        S.Z: centres[:, 2] if n else [],
        S.CLASS_NAME: [picks.pickable_object_name] * n,
        S.ROT: angles[:, 0], S.TILT: angles[:, 1], S.PSI: angles[:, 2],
        S.SCORE: picks.scores() if n else [],
        S.IS_PROTEIN: [True] * n,
        "copick_user": [picks.user_id] * n, "copick_session": [str(picks.session_id)] * n,
    })


def write_picks(
    root,
    table: pd.DataFrame,
    voxel_size_angstrom: float | dict[str, float],
    *,
    user_id: str = DEFAULT_USER,
    session_id: str = DEFAULT_SESSION,
    run_names: dict[str, str] | None = None,
) -> dict[str, dict[str, int]]:
    """Write a particle table's picks into the project, one picks set per run and object.

    Rows that are not proteins (``is_protein`` False, the ``background`` class) are left out.
    Everything is checked before anything is written: every run must exist, every class must be a
    pickable object of the configuration, and no picks set of the same object, user and session
    may exist already (copick would overwrite it; tomoclass never overwrites what it did not
    write: choose another ``session_id``).

    Parameters
    ----------
    root
        The project (:func:`open_project`).
    table
        Particle table in voxels (``tomogram``, ``x``, ``y``, ``z``, ``class_name``, optional
        ``score`` and angles).
    voxel_size_angstrom
        Voxel size of the table's coordinates (Å), or one per tomogram name; copick stores Å.
    user_id, session_id
        copick user (or tool) and session ids of the written picks.
    run_names
        Tomogram name -> copick run name (default: the same name).

    Returns
    -------
    dict
        ``{run: {object: number of points}}``.
    """
    keep = table[table[S.CLASS_NAME].astype(str) != S.BACKGROUND]
    if S.IS_PROTEIN in keep:
        keep = keep[keep[S.IS_PROTEIN].fillna(True).astype(bool)]
    run_names = dict(run_names or {})
    keep = keep.assign(_run=[run_names.get(str(t), str(t)) for t in keep[S.TOMOGRAM]])
    runs = {r.name: r for r in select_runs(root, sorted(set(keep["_run"])))}
    objects = {o.name for o in root.pickable_objects}
    unknown = sorted(set(keep[S.CLASS_NAME].astype(str)) - objects)
    if unknown:
        raise InputError(f"class {', '.join(map(repr, unknown))} is not a pickable object of the "
                         f"copick configuration (objects: {', '.join(sorted(objects))}); add it "
                         "to pickable_objects", path=_config_path(root), field="class_name")
    for (run_name, obj), _ in keep.groupby(["_run", S.CLASS_NAME], sort=True):
        if runs[run_name].get_picks(object_name=obj, user_id=user_id, session_id=session_id):
            raise InputError(f"run {run_name!r} already has {obj!r} picks by {user_id!r} in "
                             f"session {session_id!r}; choose another session id "
                             "(--copick-out-session)", path=_config_path(root), field="session")
    sizes = keep[S.TOMOGRAM].astype(str).map(
        voxel_size_angstrom if isinstance(voxel_size_angstrom, dict)
        else lambda _: float(voxel_size_angstrom))
    if sizes.isna().any():
        raise InputError(f"no voxel size for tomogram {keep[S.TOMOGRAM][sizes.isna()].iloc[0]!r}",
                         field="voxel_size_angstrom")
    keep = keep.assign(_angstrom=sizes.astype(float))
    groups = list(keep.groupby(["_run", S.CLASS_NAME], sort=True))
    written: dict[str, dict[str, int]] = {}
    for (run_name, obj), rows in groups:
        xyz = rows[[S.X, S.Y, S.Z]].to_numpy(float) * rows[["_angstrom"]].to_numpy(float)
        transforms = np.tile(np.eye(4), (len(rows), 1, 1))
        if all(c in rows for c in S.ANGLES):
            angles = rows[list(S.ANGLES)].to_numpy(float)
            ok = np.all(np.isfinite(angles), axis=1)
            if ok.any():
                transforms[ok, :3, :3] = rotation_of_relion(angles[ok])
        scores = rows[S.SCORE].to_numpy(float) if S.SCORE in rows else None
        if scores is not None and not np.all(np.isfinite(scores)):
            scores = np.where(np.isfinite(scores), scores, 1.0)  # copick needs finite scores
        picks = runs[run_name].new_picks(obj, session_id=session_id, user_id=user_id)
        picks.from_numpy(xyz, transforms, scores=scores)
        written.setdefault(run_name, {})[obj] = len(rows)
    return written


def relion_angles_of(rotations: np.ndarray) -> np.ndarray:
    """RELION (rot, tilt, psi) in degrees of copick object-to-tomogram rotations (N, 3, 3).

    A copick rotation takes the object (reference) into the tomogram, which is what RELION's
    matrix of its angles does (:func:`tomoclass.io.euler.relion_angles`); copick's own STAR
    writer (``copick.util.formats._relion_eulers``) gives the same angles. Gimbal lock (tilt 0
    or 180) picks one equivalent triple silently.
    """
    return relion_angles(rotations)


def rotation_of_relion(angles: np.ndarray) -> np.ndarray:
    """Object-to-tomogram rotations (N, 3, 3) of RELION angles (N, 3) in degrees.

    RELION's matrix of the angles (:func:`tomoclass.io.euler.relion_matrix`); the inverse of
    :func:`relion_angles_of`.
    """
    angles = np.asarray(angles, dtype=float).reshape(-1, 3)
    return relion_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
