"""The train/val/test split rule, written once for the simulator and the dataset store.

A core module below the stages (it imports only :mod:`tomoclass.errors` and the column
names of :mod:`tomoclass.io.schema`), so that ``simulate`` (which may not import ``data``)
and ``data`` (:func:`tomoclass.data.store.assign_splits`) apply the same rule:

- per class, ``round_half_up(fraction * n)`` rows go to test and to val (halves up, so 5 of
  10 rows at 0.05 round to 1, never to even);
- one :class:`numpy.random.Generator` seeded with ``seed`` shuffles the rows of each class in
  turn, classes in order of first appearance; test takes the first rows of the shuffle, val
  the next ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from tomoclass.errors import InputError
from tomoclass.io import schema as S

__all__ = ["assign_splits", "round_half_up", "stratified_splits", "tomogram_number"]

def round_half_up(x: float) -> int:
    """``floor(x + 0.5)``: the count of a fraction of rows (Python's ``round`` halves to even)."""
    return int(np.floor(x + 0.5))


def tomogram_number(name: str) -> int | None:
    """Trailing integer of a tomogram name (``"model_9"`` -> 9, ``"9"`` -> 9), else None."""
    m = re.search(r"(\d+)$", str(name))
    return int(m.group(1)) if m else None


def _matches(name: str, wanted: Iterable[str | int]) -> bool:
    num = tomogram_number(name)
    for w in wanted:
        if str(w) == str(name):
            return True
        if num is not None and str(w).isdigit() and int(w) == num:
            return True
    return False


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise InputError(f"{name} must be in [0, 1), not {f}", field=name)


def stratified_splits(
    classes: Sequence | np.ndarray,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> np.ndarray:
    """Per class, ``test_fraction`` and ``val_fraction`` of the rows to test and val.

    Parameters
    ----------
    classes
        Class of every row, shape (n,) (names or indices).
    val_fraction, test_fraction
        Fractions per class, each in [0, 1), summing to below 1; counts rounded halves up.
    seed
        Seed of the shuffles (same seed, same split).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` str array of ``"train"``/``"val"``/``"test"``.

    Raises
    ------
    InputError
        Fractions outside [0, 1) or summing to 1 or more.
    """
    _check_fractions(val_fraction, test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise InputError("val_fraction + test_fraction must be below 1", field="split")
    classes = np.asarray(classes)
    rng = np.random.default_rng(seed)
    split = np.full(len(classes), "train", dtype=object)
    for c in pd.unique(classes):
        idx = rng.permutation(np.flatnonzero(classes == c))
        k_test = round_half_up(test_fraction * len(idx))
        k_val = round_half_up(val_fraction * len(idx))
        split[idx[:k_test]] = "test"
        split[idx[k_test:k_test + k_val]] = "val"
    return split.astype(str)


def assign_splits(
    table: pd.DataFrame,
    method: str = "tomogram",
    *,
    test_tomograms: Sequence[str | int] = ("9",),
    val_tomograms: Sequence[str | int] = (),
    val_fraction: float = 0.0,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Assign ``train``/``val``/``test`` to every row.

    Parameters
    ----------
    table
        Particle table (``tomogram`` and ``class_name`` columns).
    method
        ``"tomogram"``: rows of ``test_tomograms`` are test, of ``val_tomograms`` val, the rest
        train (default: the SHREC convention, train on tomograms 0-8 and test on 9). A tomogram
        matches by its exact name or, for a number, by the trailing integer of its name
        (``9`` matches ``model_9``). If ``val_fraction`` > 0 and no ``val_tomograms`` are given,
        that fraction of each class's training rows becomes val (seeded).
        ``"stratified"``: :func:`stratified_splits` of the ``class_name`` column.
    test_tomograms, val_tomograms
        Tomogram names or numbers of the test / val splits (method ``"tomogram"``).
    val_fraction, test_fraction
        Fractions per class (``test_fraction`` only for ``"stratified"``).
    seed
        Seed of the shuffles (same seed, same split).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` array of split names.

    Raises
    ------
    InputError
        Unknown method, fractions outside [0, 1) or summing to 1 or more.
    """
    n = len(table)
    if method not in ("tomogram", "stratified"):
        raise InputError(f"split method must be 'tomogram' or 'stratified', not {method!r}",
                         field="split")
    _check_fractions(val_fraction, test_fraction)
    classes = table[S.CLASS_NAME].astype(str).to_numpy() if n else np.array([], dtype=object)
    if method == "stratified":
        return stratified_splits(classes, val_fraction=val_fraction,
                                 test_fraction=test_fraction, seed=seed)
    rng = np.random.default_rng(seed)
    split = np.full(n, "train", dtype=object)
    tomos = table[S.TOMOGRAM].astype(str).to_numpy()
    cache: dict[str, str] = {}
    for t in pd.unique(tomos):
        cache[t] = ("test" if _matches(t, test_tomograms)
                    else "val" if _matches(t, val_tomograms) else "train")
    split[:] = [cache[t] for t in tomos]
    if val_fraction > 0 and not val_tomograms:
        for c in pd.unique(classes):
            idx = np.flatnonzero((classes == c) & (split == "train"))
            k = round_half_up(val_fraction * len(idx))
            split[rng.permutation(idx)[:k]] = "val"
    return split.astype(str)
