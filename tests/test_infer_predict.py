"""tomoclass predict: per-particle classes and probabilities from a trained run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from infer_support import BOX, make_world
from train_support import one_thread

from tomoclass.cli.main import main
from tomoclass.data import extract_subtomograms
from tomoclass.errors import InputError
from tomoclass.infer import load_run
from tomoclass.infer.predict import predict_particles
from tomoclass.io import read_volume, write_volume

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained tiny run, a 40^3 tomogram at 10 Å with 6 blobs, and their picks as CSV."""
    return make_world(tmp_path_factory.mktemp("predict"))


def test_predictions_are_the_models_softmax_on_the_extracted_boxes(world):
    res = predict_particles(world / "run", world / "tomo.mrc", world / "picks.csv",
                            batch_size=4)
    t = res.table
    assert len(t) == 6 and res.probabilities.shape == (6, 3)
    np.testing.assert_allclose(res.probabilities.sum(1), 1.0, rtol=1e-5)
    assert (t["class_number"] == res.probabilities.argmax(1) + 1).all()
    np.testing.assert_allclose(t["confidence"], res.probabilities.max(1), rtol=1e-6)
    assert list(t["input_class_name"]) == [f"class{k}" for k in [0, 1, 2, 0, 1, 2]]
    # same numbers as running the model by hand on boxes from the data package's extraction
    model, cmap, _ = load_run(world / "run")
    vol = read_volume(world / "tomo.mrc")
    boxes = extract_subtomograms(vol, t, BOX).subtomograms
    with torch.inference_mode():
        ref = torch.softmax(model(torch.from_numpy(boxes[:, None])), 1).numpy()
    np.testing.assert_allclose(res.probabilities, ref, atol=1e-5)
    for j, n in enumerate(cmap.names):
        np.testing.assert_allclose(t[f"prob_{n}"], ref[:, j], atol=1e-5)


def test_cli_writes_relion_star_and_csv(world, tmp_path, capsys):
    star, csv = tmp_path / "preds.star", tmp_path / "preds.csv"
    code = main(["predict", "--run", str(world / "run"), "--tomogram", str(world / "tomo.mrc"),
                 "--coords", str(world / "picks.csv"), "--out", str(star), "--out", str(csv),
                 "--no-progress"])
    assert code == 0 and "classified 6 particles" in capsys.readouterr().out
    s = starfile.read(star)
    s = s["particles"] if isinstance(s, dict) else s
    c = pd.read_csv(csv)
    names = ["class0", "class1", "class2"]
    assert s["rlnClassNumber"].between(1, 3).all()
    assert [names[k - 1] for k in s["rlnClassNumber"]] == list(s["tomoclassClassName"])
    assert list(s["tomoclassClassName"]) == list(c["class_name"])
    np.testing.assert_allclose(s["rlnCoordinateX"], c["x"])
    # RELION 5 centred coordinates too: the 40^3 tomogram at 10 Å has its centre at 20
    np.testing.assert_allclose(s["rlnCenteredCoordinateXAngst"], (c["x"] - 20.0) * 10.0)
    np.testing.assert_allclose(s["rlnAutopickFigureOfMerit"], c["confidence"], rtol=1e-5)
    probs = s[[f"tomoclass_prob_{n}" for n in names]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-4)


def test_voxel_size_mismatch_is_refused_unless_rescale(world, tmp_path, capsys):
    vol = read_volume(world / "tomo.mrc")
    write_volume(tmp_path / "t.mrc", np.asarray(vol.data), voxel_size_angstrom=10.6)
    argv = ["predict", "--run", str(world / "run"), "--tomogram", str(tmp_path / "t.mrc"),
            "--coords", str(world / "picks.csv"), "--out", str(tmp_path / "p.star"),
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "10.6 Å differs from the training data's 10 Å by +6.0%" in err[0]
    assert "--rescale" in err[0] and not (tmp_path / "p.star").exists()
    assert main([*argv, "--rescale"]) == 0
    assert "resampled from 10.6 to 10" in capsys.readouterr().out
    # within 5 %: accepted as is
    write_volume(tmp_path / "t2.mrc", np.asarray(vol.data), voxel_size_angstrom=10.4)
    res = predict_particles(world / "run", tmp_path / "t2.mrc", world / "picks.csv")
    assert not res.rescaled


def test_picks_outside_the_tomogram_are_refused(world, tmp_path):
    picks = pd.DataFrame({"x": [10.0, 400.0], "y": [10.0, 10.0], "z": [10.0, 10.0]})
    with pytest.raises(InputError, match="outside"):
        predict_particles(world / "run", world / "tomo.mrc", picks)


def test_prediction_memory_estimate_refuses_before_reading_boxes(world, tmp_path, capsys):
    code = main(["predict", "--run", str(world / "run"), "--tomogram", str(world / "tomo.mrc"),
                 "--coords", str(world / "picks.csv"), "--out", str(tmp_path / "p.csv"),
                 "--max-memory", "10K", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "prediction needs about" in err[0]
    assert not (tmp_path / "p.csv").exists()


def test_a_tomogram_of_the_other_contrast_is_inverted_first(world, tmp_path, capsys):
    # the run was trained on bright blobs; the same tomogram with its contrast inverted gives
    # the same predictions: measured dark, inverted back (or told so with polarity="dark")
    assert load_run(world / "run")[2]["data"]["polarity"] == "bright"  # from dataset.yaml
    ref = predict_particles(world / "run", world / "tomo.mrc", world / "picks.csv")
    assert not ref.inverted and ref.polarity.polarity == "bright"
    flipped = tmp_path / "flipped.mrc"
    write_volume(flipped, -np.asarray(read_volume(world / "tomo.mrc").data), 10.0)
    auto = predict_particles(world / "run", flipped, world / "picks.csv", tomogram_name="tomo")
    assert auto.inverted and auto.polarity.polarity == "dark"
    np.testing.assert_allclose(auto.probabilities, ref.probabilities, atol=1e-5)
    told = predict_particles(world / "run", flipped, world / "picks.csv", tomogram_name="tomo",
                             polarity="dark")
    assert told.inverted and told.polarity is None
    np.testing.assert_allclose(told.probabilities, ref.probabilities, atol=1e-5)
    # kept as given when told it is bright: other numbers
    kept = predict_particles(world / "run", flipped, world / "picks.csv", tomogram_name="tomo",
                             polarity="bright")
    assert not kept.inverted
    assert not np.allclose(kept.probabilities, ref.probabilities, atol=1e-3)
    assert main(["predict", "--run", str(world / "run"), "--tomogram", str(flipped),
                 "--coords", str(world / "picks.csv"), "--tomogram-name", "tomo", "--out",
                 str(tmp_path / "p.csv"), "--no-progress"]) == 0
    assert "contrast inverted" in capsys.readouterr().out


def test_picks_in_another_pixel_size(world, tmp_path, capsys):
    # the same picks in 2.5 Å tilt-series pixels (4x): scaled with --coords-angpix
    picks = pd.read_csv(world / "picks.csv")
    for c in "xyz":
        picks[c] = picks[c] * 4
    picks.to_csv(tmp_path / "unbinned.csv", index=False)
    ref = predict_particles(world / "run", world / "tomo.mrc", world / "picks.csv")
    got = predict_particles(world / "run", world / "tomo.mrc", tmp_path / "unbinned.csv",
                            tomogram_name="tomo", coordinate_pixel_size_angstrom=2.5)
    np.testing.assert_allclose(got.table[["x", "y", "z"]], ref.table[["x", "y", "z"]])
    np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-6)
    args = ["predict", "--run", str(world / "run"), "--tomogram", str(world / "tomo.mrc"),
            "--coords", str(tmp_path / "unbinned.csv"), "--tomogram-name", "tomo", "--out",
            str(tmp_path / "p.csv"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "outside the tomogram" in err and "--coords-angpix" in err
    assert main(args + ["--coords-angpix", "2.5"]) == 0
    out = pd.read_csv(tmp_path / "p.csv")
    assert len(out) == 6  # coordinates back in the units they came in
    np.testing.assert_allclose(out[["x", "y", "z"]], picks[["x", "y", "z"]], atol=1e-6)


def test_a_table_of_several_tomograms(world, tmp_path, capsys, caplog):
    # a RELION particles.star of two tomograms (and a third not given): each tomogram
    # classifies its own rows only (the table's rlnTomoName stands), one table comes out
    import shutil

    from tomoclass.infer.predict import write_predictions

    picks = pd.read_csv(world / "picks.csv")
    shutil.copy(world / "tomo.mrc", tmp_path / "TS_01.mrc")
    flipped = np.ascontiguousarray(np.asarray(read_volume(world / "tomo.mrc").data)[:, :, ::-1])
    write_volume(tmp_path / "TS_02.mrc", flipped, 10.0)
    rows = pd.concat([picks.assign(tomogram="TS_01"),
                      picks.assign(tomogram="TS_02", x=39 - picks["x"]),
                      picks.iloc[:2].assign(tomogram="TS_03")], ignore_index=True)
    rows = rows.rename(columns={"class": "class_name"})
    from tomoclass.io import write_particles

    shapes = {"TS_01": (40, 40, 40), "TS_02": (40, 40, 40), "TS_03": (40, 40, 40)}
    star = write_particles(tmp_path / "particles.star", rows, tomogram_shape=shapes,
                           voxel_size_angstrom=10.0)
    # RELION 5 keeps only the centred columns: the other tomograms' sizes are not needed
    raw = starfile.read(star)
    star5 = tmp_path / "relion5.star"
    starfile.write({"particles": raw.drop(columns=["rlnCoordinateX", "rlnCoordinateY",
                                                   "rlnCoordinateZ"])}, star5)
    ref = predict_particles(world / "run", world / "tomo.mrc", world / "picks.csv")
    for table in (star, star5):
        with caplog.at_level("WARNING"):
            one = predict_particles(world / "run", tmp_path / "TS_01.mrc", table)
        assert "differ" not in caplog.text  # the other tomograms' rows are not mis-sized
        assert len(one.table) == 6 and set(one.table["tomogram"]) == {"TS_01"}
        np.testing.assert_allclose(one.table[["x", "y", "z"]], ref.table[["x", "y", "z"]],
                                   atol=1e-3)
        np.testing.assert_allclose(one.probabilities, ref.probabilities, atol=1e-5)
    # both through the CLI: one table, rlnTomoName per row, centred coordinates per tomogram
    out = tmp_path / "preds.star"
    assert main(["predict", "--run", str(world / "run"), "--tomogram",
                 str(tmp_path / "TS_01.mrc"), str(tmp_path / "TS_02.mrc"), "--coords",
                 str(star5), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "TS_01.mrc: classified 6" in text and "TS_02.mrc: classified 6" in text
    got = starfile.read(out)
    assert (got["rlnTomoName"] == "TS_01").sum() == 6 and (got["rlnTomoName"] == "TS_02").sum() == 6
    # the input annotated: its rows of the two tomograms in file order, coordinates as given
    # (RELION 5 centred Å only: no voxel columns are added)
    assert "rlnCoordinateX" not in got.columns and len(got) == 12
    mirrored = got[got["rlnTomoName"] == "TS_02"]
    np.testing.assert_allclose(mirrored["rlnCenteredCoordinateXAngst"],
                               (39 - picks["x"] - 20) * 10.0, atol=1e-2)
    assert set(got["tomoclassClassName"]) <= {"class0", "class1", "class2"}
    assert main(["predict", "--run", str(world / "run"), "--tomogram",
                 str(tmp_path / "TS_01.mrc"), str(tmp_path / "TS_01.mrc"), "--coords",
                 str(star5), "--out", str(tmp_path / "x.star"), "--no-progress"]) == 2
    assert "TS_01" in capsys.readouterr().err and not (tmp_path / "x.star").exists()
    with pytest.raises(InputError, match="no predictions"):
        write_predictions([], tmp_path / "y.star")


def test_spectrum_matching_in_predict(world, tmp_path, capsys):
    # training records the dataset's spectrum; predict matches to it when it resamples
    # (auto) or when asked, and a gain of one everywhere would change nothing
    from scipy import ndimage

    from tomoclass.data import spectrum as SP

    spec = load_run(world / "run")[2]["data"]["spectrum"]
    assert spec["box"] == BOX and len(spec["amplitude"]) == BOX // 2 + 1
    plain = predict_particles(world / "run", world / "tomo.mrc", world / "picks.csv")
    assert plain.spectrum_gain is None
    on = predict_particles(world / "run", world / "tomo.mrc", world / "picks.csv",
                           match_spectrum="on")
    assert len(on.spectrum_gain) == BOX // 2 + 1 and on.spectrum_gain[0] == 1.0
    np.testing.assert_allclose(on.probabilities.sum(1), 1.0, rtol=1e-5)
    # the same tomogram at 5 Å: --rescale resamples the boxes, and auto matches spectra
    fine = ndimage.zoom(np.asarray(read_volume(world / "tomo.mrc").data), 2, order=3)
    write_volume(tmp_path / "fine.mrc", fine.astype(np.float32), 5.0)
    picks = pd.read_csv(world / "picks.csv")
    picks[["x", "y", "z"]] = picks[["x", "y", "z"]] * 2 + 0.5
    picks.to_csv(tmp_path / "fine_picks.csv", index=False)
    res = predict_particles(world / "run", tmp_path / "fine.mrc", tmp_path / "fine_picks.csv",
                            rescale=True)
    assert res.rescaled and res.spectrum_gain is not None
    off = predict_particles(world / "run", tmp_path / "fine.mrc", tmp_path / "fine_picks.csv",
                            rescale=True, match_spectrum="off")
    assert off.spectrum_gain is None
    assert main(["predict", "--run", str(world / "run"), "--tomogram", str(tmp_path / "fine.mrc"),
                 "--coords", str(tmp_path / "fine_picks.csv"), "--rescale", "--out",
                 str(tmp_path / "p.csv"), "--no-progress"]) == 0
    assert "training boxes' spectrum" in capsys.readouterr().out
    # identity gain: the filter leaves z-scored boxes as they are
    import torch
    boxes = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 1, BOX, BOX, BOX))
                             .astype(np.float32))
    boxes = (boxes - boxes.mean(dim=(2, 3, 4), keepdim=True)) / boxes.std(
        dim=(2, 3, 4), keepdim=True, unbiased=False)
    np.testing.assert_allclose(SP.filter_boxes(boxes, torch.ones(BOX, BOX, BOX)), boxes,
                               atol=1e-5)
