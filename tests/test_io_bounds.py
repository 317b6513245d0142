"""io.bounds: inside a tomogram is [-0.5, n - 0.5) per axis; overshoot flags a pixel-size mix-up."""

import numpy as np

from tomoclass.io.bounds import OVERSHOOT_RATIO, outside_tomogram, overshoot


def test_outside_tomogram_half_voxel_edges():
    shape_zyx = (4, 6, 8)  # x < 7.5, y < 5.5, z < 3.5
    xyz = np.array([[-0.5, 0, 0], [-0.51, 0, 0], [7.49, 5.49, 3.49], [7.5, 0, 0], [0, 0, 3.5]])
    out = outside_tomogram(xyz, shape_zyx)
    assert out.any(axis=1).tolist() == [False, True, False, True, True]
    assert out[4].tolist() == [False, False, True]


def test_overshoot_on_the_axes_given():
    shape_zyx = (10, 100, 200)
    assert overshoot(np.array([[400.0, 50.0]]), shape_zyx) == 2.0  # x, y only
    assert overshoot(np.array([[100.0, 50.0, 30.0]]), shape_zyx) == 3.0
    assert overshoot(np.array([[400.0, 50.0]]), shape_zyx) > OVERSHOOT_RATIO
