"""napari layer data from tomoclass outputs, built headless (napari is never imported)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from tomoclass.cli.main import main
from tomoclass.errors import InputError
from tomoclass.io import write_particles, write_volume
from tomoclass.view import build_layers, class_colors


@pytest.fixture()
def outputs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "napari", None)  # any napari import would now fail
    rng = np.random.default_rng(0)
    write_volume(tmp_path / "TS_01.mrc", rng.normal(size=(12, 14, 16)).astype(np.float32), 10.0)
    picks = pd.DataFrame({
        "tomogram": ["TS_01"] * 4, "x": [2.0, 5.0, 9.0, 3.0], "y": [3.0, 6.0, 10.0, 4.0],
        "z": [4.0, 7.0, 8.0, 5.0], "class_name": ["ribosome", "ribosome", "apoferritin",
                                                 "background"],
        "score": [0.2, 1.0, 0.6, 0.9], "is_protein": [True, True, True, False]})
    write_particles(tmp_path / "picks.csv", picks)
    maps = tmp_path / "maps"
    maps.mkdir()
    for name in ("ribosome", "objectness"):
        write_volume(maps / f"{name}.mrc", rng.random((12, 14, 16)).astype(np.float32), 10.0)
    write_volume(tmp_path / "cam_row0.mrc", rng.random((8, 8, 8)).astype(np.float32), 10.0)
    return tmp_path


def test_layers_for_tomogram_picks_maps_and_cam(outputs):
    layers = build_layers(outputs / "TS_01.mrc", [outputs / "picks.csv"], [outputs / "maps"],
                          [outputs / "cam_row0.mrc"])
    kinds = [(kind, kw["name"]) for _, kw, kind in layers]
    assert kinds == [("image", "TS_01"), ("points", "apoferritin (1)"),
                     ("points", "ribosome (2)"), ("image", "score map: objectness"),
                     ("image", "score map: ribosome"), ("image", "CAM: cam_row0")]
    assert all(kw["scale"] == (10.0, 10.0, 10.0) for _, kw, _ in layers)
    assert layers[0][0].shape == (12, 14, 16) and layers[0][2] == "image"
    data, kw, _ = layers[2]
    np.testing.assert_allclose(data, [[4, 3, 2], [7, 6, 5]])  # (z, y, x) voxels
    np.testing.assert_allclose(kw["features"]["score"], [0.2, 1.0])
    colors = class_colors(["ribosome", "apoferritin", "background"])
    assert kw["metadata"]["color"] == colors["ribosome"] != layers[1][1]["metadata"]["color"]
    face = kw["face_color"]
    assert face.shape == (2, 4) and face[0, 3] < face[1, 3] == 1.0  # opacity follows the score
    np.testing.assert_allclose(face[:, :3], face[[1, 0], :3])  # one colour per class
    assert layers[3][1]["visible"] and not layers[4][1]["visible"]  # objectness shown first


def test_filters_and_background(outputs):
    layers = build_layers(outputs / "TS_01.mrc", [outputs / "picks.csv"], min_score=0.5,
                          include_background=True)
    names = [kw["name"] for _, kw, kind in layers if kind == "points"]
    assert names == ["apoferritin (1)", "background (1)", "ribosome (1)"]


def test_errors_are_one_line(outputs):
    with pytest.raises(InputError, match="voxel size"):
        build_layers(None, [outputs / "picks.csv"])
    assert len(build_layers(None, [outputs / "picks.csv"], voxel_size_angstrom=10.0)) == 2
    (outputs / "empty").mkdir()
    with pytest.raises(InputError, match="no .mrc score map"):
        build_layers(None, score_maps=[outputs / "empty"])
    with pytest.raises(InputError, match="no picks of tomogram 'TS_01'"):
        other = pd.DataFrame({"tomogram": ["TS_02", "TS_03"], "x": [1.0, 2.0], "y": [1.0, 2.0],
                              "z": [1.0, 2.0], "class_name": ["a", "b"]})
        write_particles(outputs / "other.csv", other)
        build_layers(outputs / "TS_01.mrc", [outputs / "other.csv"])


def test_view_without_napari_is_a_one_line_error(outputs, capsys):
    rc = main(["view", "--tomogram", str(outputs / "TS_01.mrc"), "--picks",
               str(outputs / "picks.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "pip install 'tomoclass[napari]'" in err
