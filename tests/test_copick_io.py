"""copick projects and OME-Zarr tomograms, built in the test with copick's and ome-zarr's API."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tomoclass.cli.main import main
from tomoclass.errors import InputError
from tomoclass.io import copick_io, read_volume, tomogram_name

pytest.importorskip("copick", reason="copick not installed (pip install '.[copick]')")
pytest.importorskip("ome_zarr", reason="ome-zarr not installed (pip install '.[zarr]')")
copick = copick_io.import_copick()  # keeps the root logger (copick's import replaces it)

from copick.models import PickableObject  # noqa: E402
from copick.ops.add import add_tomogram  # noqa: E402

SPACING = 10.0
SHAPE = (20, 22, 24)
#: run -> object -> voxel centres (x, y, z)
PICKS = {
    "TS_01": {"ribosome": [(6, 7, 8), (15, 14, 10)], "apoferritin": [(17, 6, 12)]},
    "TS_02": {"ribosome": [(8, 15, 9)], "apoferritin": [(12, 12, 10), (6, 6, 6)]},
}


@pytest.fixture()
def project(tmp_path):
    """A filesystem copick project: two runs, a wbp tomogram at 10 Å, picks by 'curator'."""
    cfg = tmp_path / "proj" / "copick.json"
    root = copick.new_config(str(cfg), str(tmp_path / "proj" / "overlay"), pickable_objects=[
        PickableObject(name="ribosome", is_particle=True, label=1, radius=60),
        PickableObject(name="apoferritin", is_particle=True, label=2, radius=40),
        PickableObject(name="membrane", is_particle=False, label=3)])
    rng = np.random.default_rng(0)
    for run_name, objects in PICKS.items():
        root.new_run(run_name)
        add_tomogram(root, run_name, "wbp", rng.normal(size=SHAPE).astype(np.float32),
                     voxel_spacing=SPACING)
        for obj, xyz in objects.items():
            picks = root.get_run(run_name).new_picks(obj, session_id="0", user_id="curator")
            picks.from_numpy(np.asarray(xyz, float) * SPACING, scores=np.full(len(xyz), 0.7))
    return cfg


def test_tomogram_and_picks_read_in_voxels(project):
    root = copick_io.open_project(project)
    runs = copick_io.select_runs(root)
    assert [r.name for r in runs] == ["TS_01", "TS_02"]
    paths = copick_io.tomogram_paths(root, runs, SPACING, "wbp")
    vol = read_volume(paths[0])
    assert vol.shape == SHAPE and vol.voxel_size_angstrom == SPACING
    assert [tomogram_name(p) for p in paths] == ["TS_01", "TS_02"]
    table = copick_io.read_picks(root, runs, SPACING, ["ribosome"])
    got = table[table.tomogram == "TS_01"][["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(sorted(map(tuple, got)), sorted(PICKS["TS_01"]["ribosome"]))
    assert set(table.class_name) == {"ribosome"} and np.allclose(table.score, 0.7)
    assert table.copick_user.unique().tolist() == ["curator"]
    assert len(copick_io.read_picks(root, runs, SPACING)) == 6  # every particle object


def test_bad_names_are_one_line_errors(project, tmp_path):
    root = copick_io.open_project(project)
    with pytest.raises(InputError, match="no run 'TS_09'.*TS_01, TS_02") as e:
        copick_io.select_runs(root, ["TS_09"])
    assert e.value.path == str(project) and e.value.field == "run"
    runs = copick_io.select_runs(root)
    with pytest.raises(InputError, match="no voxel spacing 7 Å.*10"):
        copick_io.tomogram_paths(root, runs, 7.0, "wbp")
    with pytest.raises(InputError, match="no 'denoised' tomogram.*wbp"):
        copick_io.tomogram_paths(root, runs, SPACING, "denoised")
    with pytest.raises(InputError, match="no pickable object 'ribo'"):
        copick_io.read_picks(root, runs, SPACING, ["ribo"])
    with pytest.raises(InputError, match="no such copick configuration"):
        copick_io.open_project(tmp_path / "missing.json")


def test_extract_and_inspect_from_copick(project, tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["extract", "--copick-config", str(project), "--voxel-spacing", "10",
               "--object", "ribosome", "apoferritin", "--box", "8", "--polarity", "dark",
               "--test-tomograms", "TS_02", "--out", str(out)])
    assert rc == 0
    from tomoclass.data import open_dataset

    store = open_dataset(out)
    assert store.volumes.shape == (6, 8, 8, 8) and store.voxel_size_angstrom == SPACING
    assert sorted(store.class_map.names) == ["apoferritin", "ribosome"]
    assert (store.table[store.table.tomogram == "TS_02"].split == "test").all()
    capsys.readouterr()
    assert main(["inspect", "--copick-config", str(project), "--voxel-spacing", "10",
                 "--copick-run", "TS_01", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert infos[0]["name"] == "TS_01" and infos[0]["voxel_size_angstrom"] == SPACING
    assert infos[1]["format"] == "copick" and infos[1]["classes"] == {"apoferritin": 1,
                                                                    "ribosome": 2}
    assert infos[1]["tomograms"]["TS_01"]["n_outside"] == 0
    assert main(["extract", "--copick-config", str(project), "--out", str(tmp_path / "x")]) == 2
    assert "--voxel-spacing" in capsys.readouterr().err
    assert main(["inspect", "--tomogram", "t.mrc", "--object", "ribosome"]) == 2
    assert "--object selects from a copick project" in capsys.readouterr().err


def test_picks_written_back_are_read_by_copick(project):
    root = copick_io.open_project(project)
    table = pd.DataFrame({
        "tomogram": ["TS_01", "TS_01", "TS_02", "TS_02"], "x": [3.0, 9.5, 4.0, 1.0],
        "y": [4.0, 2.0, 5.0, 1.0], "z": [5.0, 7.0, 6.0, 1.0],
        "class_name": ["ribosome", "apoferritin", "ribosome", "background"],
        "rot": [10.0, np.nan, 0.0, np.nan], "tilt": [20.0, np.nan, 0.0, np.nan],
        "psi": [30.0, np.nan, 0.0, np.nan], "score": [0.9, 0.8, 0.6, 0.99],
        "is_protein": [True, True, True, False]})
    written = copick_io.write_picks(root, table, SPACING, session_id="7")
    assert written == {"TS_01": {"apoferritin": 1, "ribosome": 1}, "TS_02": {"ribosome": 1}}
    fresh = copick.from_file(str(project))  # copick itself reads what was written
    (picks,) = fresh.get_run("TS_01").get_picks(object_name="ribosome", user_id="tomoclass",
                                                session_id="7")
    np.testing.assert_allclose(picks.full_positions(), [[30.0, 40.0, 50.0]])
    np.testing.assert_allclose(picks.scores(), [0.9])
    back = copick_io.read_picks(copick_io.open_project(project), copick_io.select_runs(fresh),
                                SPACING, ["ribosome"], user_id="tomoclass")
    row = back[back.tomogram == "TS_01"].iloc[0]
    np.testing.assert_allclose([row.rot, row.tilt, row.psi], [10, 20, 30], atol=1e-6)
    # a second write to the same session would overwrite copick's file: refused, nothing written
    before = {p.name: p.read_bytes() for p in project.parent.rglob("*.json")}
    with pytest.raises(InputError, match="already has 'apoferritin' picks.*session '7'"):
        copick_io.write_picks(root, table, SPACING, session_id="7")
    assert {p.name: p.read_bytes() for p in project.parent.rglob("*.json")} == before
    with pytest.raises(InputError, match="'nucleosome' is not a pickable object"):
        copick_io.write_picks(root, table.assign(class_name="nucleosome"), SPACING, session_id="8")
    with pytest.raises(InputError, match="no run 'model_1'"):
        copick_io.write_picks(root, table.assign(tomogram="model_1"), SPACING, session_id="8")
    assert not fresh.get_run("TS_01").get_picks(session_id="8")


def test_cli_output_glue_writes_per_tomogram_voxel_size(project, capsys):
    import argparse

    from tomoclass.cli import copick_args

    root = copick_io.open_project(project)
    (path,) = copick_io.tomogram_paths(root, copick_io.select_runs(root, ["TS_02"]), SPACING,
                                       "wbp")
    args = argparse.Namespace(copick_out=str(project), copick_out_run=None,
                              copick_out_user="tomoclass", copick_out_session="1")
    table = pd.DataFrame({"tomogram": ["TS_02"], "x": [2.0], "y": [3.0], "z": [4.0],
                          "class_name": ["apoferritin"], "score": [0.5]})
    copick_args.write_output(args, [table], [path])
    assert "run TS_02: apoferritin 1" in capsys.readouterr().out
    (picks,) = copick.from_file(str(project)).get_run("TS_02").get_picks(
        object_name="apoferritin", session_id="1")
    np.testing.assert_allclose(picks.full_positions(), [[20.0, 30.0, 40.0]])


def test_omezarr_levels_units_and_names(tmp_path):
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_multiscale

    fine = np.random.default_rng(1).normal(size=(8, 10, 12)).astype(np.float32)
    coarse = fine[::2, ::2, ::2].copy()
    path = tmp_path / "TS_07.zarr"
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    write_multiscale([fine, coarse], zarr.group(store=parse_url(path, mode="w").store), axes=axes,
                     coordinate_transformations=[[{"type": "scale", "scale": [1.3] * 3}],
                                                 [{"type": "scale", "scale": [2.6] * 3}]])
    vol = read_volume(path)
    assert vol.shape == (8, 10, 12) and vol.voxel_size_angstrom == pytest.approx(13.0)
    np.testing.assert_array_equal(vol.data, fine)
    level1 = read_volume(path / "1")
    assert level1.shape == (4, 5, 6) and level1.voxel_size_angstrom == pytest.approx(26.0)
    assert read_volume(path, voxel_size_angstrom=9.0).voxel_size_angstrom == 9.0
    assert tomogram_name(path) == tomogram_name(path / "1") == "TS_07"
    from tomoclass.io.omezarr import read_omezarr

    with pytest.raises(InputError, match="no pyramid level '5'; the levels are 0, 1"):
        read_omezarr(path, level="5")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="neither an MRC file nor an OME-Zarr image"):
        read_volume(tmp_path / "plain")


@pytest.mark.slow
def test_copick_round_trip_read_train_predict_write(project, tmp_path, capsys):
    """The issue's check: a copick project is read, trained on and written back to."""
    from train_support import one_thread, tiny_model_args

    one_thread()
    ds, run = tmp_path / "ds", tmp_path / "run"
    assert main(["extract", "--copick-config", str(project), "--voxel-spacing", "10",
                 "--box", "12", "--polarity", "dark", "--test-tomograms", "",
                 "--val-tomograms", "TS_02", "--out", str(ds)]) == 0
    assert main(["train", "--no-progress", "--data", str(ds), "--out", str(run),
                 *tiny_model_args(), "--epochs", "1", "--batch-size", "3",
                 "--lr-reference-batch", "3", "--checkpoint-every", "0"]) == 0
    root = copick_io.open_project(project)
    (tomo,) = copick_io.tomogram_paths(root, copick_io.select_runs(root, ["TS_01"]), SPACING,
                                       "wbp")
    pd.DataFrame({"x": [6.0, 15.0], "y": [7.0, 14.0], "z": [8.0, 10.0]}).to_csv(
        tmp_path / "c.csv", index=False)
    capsys.readouterr()
    assert main(["predict", "--run", str(run), "--tomogram", str(tomo), "--coords",
                 str(tmp_path / "c.csv"), "--out", str(tmp_path / "p.star"), "--polarity",
                 "dark", "--no-progress", "--copick-out", str(project),
                 "--copick-out-session", "9"]) == 0
    assert "copick" in capsys.readouterr().out
    picks = copick.from_file(str(project)).get_run("TS_01").get_picks(user_id="tomoclass",
                                                                      session_id="9")
    got = np.concatenate([p.full_positions() for p in picks])
    np.testing.assert_allclose(sorted(map(tuple, got)), [(60, 70, 80), (150, 140, 100)])
    assert {p.pickable_object_name for p in picks} <= {"ribosome", "apoferritin"}


def test_view_builds_layers_of_a_copick_run(project, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "napari", None)
    rc = main(["view", "--copick-config", str(project), "--voxel-spacing", "10",
               "--copick-run", "TS_02"])
    out, err = capsys.readouterr()
    assert "image: TS_02" in out and "points: apoferritin (2)" in out
    assert "points: ribosome (1)" in out
    assert rc == 2 and "tomoclass[napari]" in err  # napari made unimportable
    assert main(["view", "--copick-config", str(project), "--voxel-spacing", "10"]) == 2
    assert "one --copick-run" in capsys.readouterr().err
