import numpy as np
import pandas as pd
import pytest

from tomoclass.errors import InputError
from tomoclass.evaluate.picks import score_picks
from tomoclass.io import read_particles, write_particles
from tomoclass.locate.background import background_boxes

SHAPE = (40, 60, 60)
RADII = {"big": 6.0, "small": 3.0}


@pytest.fixture
def truth():
    rng = np.random.default_rng(0)
    n = 12
    zyx = rng.uniform([8, 8, 8], [32, 52, 52], size=(n, 3))
    return pd.DataFrame(
        {
            "tomogram": "tomo",
            "x": zyx[:, 2],
            "y": zyx[:, 1],
            "z": zyx[:, 0],
            "class_name": ["big", "small"] * (n // 2),
            "is_protein": True,
        }
    )


def test_background_boxes_lie_in_no_particle_and_inside_the_tomogram(truth):
    bg = background_boxes(truth, SHAPE, RADII, n_random=30, n_offcentre=40, seed=1, box=16)
    assert len(bg) == 70
    assert (bg["class_name"] == "background").all() and (~bg["is_protein"]).all()
    assert (bg["tomogram"] == "tomo").all()
    assert sorted(bg["background_kind"].unique()) == ["offcentre", "random"]
    zyx = bg[["z", "y", "x"]].to_numpy()
    assert (zyx == np.rint(zyx)).all()
    assert (zyx >= 8).all() and (zyx - 8 + 16 <= np.array(SHAPE)).all()
    centres = truth[["z", "y", "x"]].to_numpy()
    r = truth["class_name"].map(RADII).to_numpy()
    d = np.linalg.norm(zyx[:, None] - centres[None], axis=2)  # (boxes, particles)
    assert (d > r[None]).all()
    # off-centre boxes sit within max_offset (box / 2) of a particle, beyond its radius
    off = (bg["background_kind"] == "offcentre").to_numpy()
    assert (((d[off] > r) & (d[off] <= 8 + np.sqrt(3) / 2)).any(axis=1)).all()
    # and so none of them is a hit for the pick scorer
    assert score_picks(truth, bg.assign(class_name="big"), RADII).tp == 0


def test_background_boxes_are_reproducible(truth):
    kw = dict(n_random=10, n_offcentre=10, box=16)
    a = background_boxes(truth, SHAPE, RADII, seed=5, **kw)
    b = background_boxes(truth, SHAPE, RADII, seed=5, **kw)
    c = background_boxes(truth, SHAPE, RADII, seed=6, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not a[["x", "y", "z"]].equals(c[["x", "y", "z"]])


def test_background_rows_survive_a_star_round_trip(truth, tmp_path):
    bg = background_boxes(truth, SHAPE, RADII, n_random=5, n_offcentre=5, seed=0, box=16)
    path = write_particles(tmp_path / "with_bg.star", pd.concat([truth, bg], ignore_index=True))
    back = read_particles(path)
    assert (back["class_name"] == "background").sum() == 10
    assert not back.loc[back["class_name"] == "background", "is_protein"].any()


def test_bad_inputs(truth):
    with pytest.raises(InputError, match="no particle radius"):
        background_boxes(truth, SHAPE, {"big": 6.0}, n_random=1, n_offcentre=1, seed=0)
    with pytest.raises(InputError, match="max_offset"):
        background_boxes(truth, SHAPE, RADII, n_random=1, n_offcentre=1, seed=0, max_offset=5)
    with pytest.raises(InputError, match="larger than the tomogram"):
        background_boxes(truth, SHAPE, RADII, n_random=1, n_offcentre=1, seed=0, box=64)
