"""Which ground-truth particles to extract: the boxes that fit, at most ``cap`` per class."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tomoclass.data.extract import plan_extraction
from tomoclass.errors import InputError
from tomoclass.io import schema as S

__all__ = ["select_particles"]


def select_particles(
    table: pd.DataFrame,
    shape_zyx: tuple[int, int, int],
    box: int,
    *,
    border: str = "skip",
    cap: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Rows to extract from one tomogram: boxes that fit, at most ``cap`` per (tomogram, class).

    Parameters
    ----------
    table
        Ground-truth rows (schema columns; ``x, y, z`` in voxels of the tomogram).
    shape_zyx
        Tomogram shape (z, y, x) in voxels.
    box
        Box edge in voxels.
    border
        ``"skip"``: keep only the rows whose box lies wholly inside the tomogram, by the rule
        :func:`tomoclass.data.plan_extraction` (and so ``extract_dataset``) applies;
        ``"pad"``: keep every row.
    cap
        Keep at most this many rows per (tomogram, class), drawn without replacement by
        ``numpy.random.default_rng([seed, 7])``; None keeps all.
    seed
        Seed of the draw.

    Returns
    -------
    pandas.DataFrame
        The kept rows, in their original order, index reset.

    Raises
    ------
    InputError
        Unknown ``border``, a box larger than the tomogram, missing or non-finite coordinates.
    """
    if border not in ("skip", "pad"):
        raise InputError(f"border must be 'pad' or 'skip', not {border!r}", field="border")
    table = table.reset_index(drop=True)
    sub = table
    if border == "skip" and len(table):
        plan = plan_extraction(tuple(int(n) for n in shape_zyx), table, int(box), border="skip")
        sub = table.iloc[plan.rows]
    if cap is not None:
        rng = np.random.default_rng([seed, 7])
        rows = []
        for _, grp in sub.groupby([S.TOMOGRAM, S.CLASS_NAME], sort=True):
            idx = grp.index.to_numpy()
            rows.append(np.sort(rng.choice(idx, size=min(int(cap), len(idx)), replace=False)))
        sub = table.loc[np.sort(np.concatenate(rows))] if rows else sub
    return sub.reset_index(drop=True)
