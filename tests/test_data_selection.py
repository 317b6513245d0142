"""data.select_particles: the border rule is plan_extraction's, the cap is seeded per class."""

from __future__ import annotations

import pandas as pd
import pytest

from tomoclass.data import plan_extraction, select_particles
from tomoclass.errors import InputError


def _table():
    return pd.DataFrame({
        "tomogram": ["a"] * 5 + ["b"],
        "class_name": ["p", "p", "p", "q", "q", "p"],
        "z": [16.0, 48.0, 15.0, 32.0, 32.0, 49.0],
        "y": [32.0] * 6,
        "x": [32.0] * 6,
    })


def test_skip_keeps_exactly_the_boxes_extraction_keeps():
    t = _table()
    kept = select_particles(t, (64, 64, 64), 32, border="skip")
    # box 32 in 64 voxels: centres 16..48 fit (first voxel c - 16 >= 0, last c + 15 <= 63)
    assert kept["z"].tolist() == [16.0, 48.0, 32.0, 32.0]
    plan = plan_extraction((64, 64, 64), t, 32, border="skip")
    assert kept["z"].tolist() == t["z"].iloc[plan.rows].tolist()
    assert len(select_particles(t, (64, 64, 64), 32, border="pad")) == 6


def test_cap_per_tomogram_and_class_is_seeded():
    t = _table()
    a = select_particles(t, (64, 64, 64), 32, border="pad", cap=1, seed=3)
    assert sorted(zip(a.tomogram, a.class_name, strict=True)) == [
        ("a", "p"), ("a", "q"), ("b", "p")]
    assert a.equals(select_particles(t, (64, 64, 64), 32, border="pad", cap=1, seed=3))


def test_unknown_border_is_an_input_error():
    with pytest.raises(InputError, match="border"):
        select_particles(_table(), (64, 64, 64), 32, border="crop")


def test_select_particles_skips_border_boxes_and_caps_per_class():
    t = pd.DataFrame({
        "tomogram": ["a"] * 5 + ["b"],
        "class_name": ["p", "p", "p", "q", "q", "p"],
        "z": [32.0, 30.0, 10.0, 32.0, 32.0, 32.0],
        "y": [32.0, 33.0, 32.0, 32.0, 54.0, 32.0],
        "x": [32.0, 31.0, 32.0, 32.0, 32.0, 32.0],
    })
    # box 32 in a 64^3 tomogram: centres 16..48 fit on every axis (plan_extraction's rule)
    kept = select_particles(t, (64, 64, 64), 32, border="skip")
    assert kept[["z", "y"]].values.tolist() == [[32, 32], [30, 33], [32, 32], [32, 32]]
    assert len(select_particles(t, (64, 64, 64), 32, border="pad")) == 6
    capped = select_particles(t, (64, 64, 64), 32, border="skip", cap=1, seed=3)
    pairs = sorted(zip(capped.tomogram, capped.class_name, strict=True))
    assert pairs == [("a", "p"), ("a", "q"), ("b", "p")]
    again = select_particles(t, (64, 64, 64), 32, border="skip", cap=1, seed=3)
    assert capped.equals(again)
