"""The nearest-class-mean correlation baseline: the floor a trained net must beat."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import tomoclass.data as tdata
from tomoclass.cli.main import main
from tomoclass.errors import InputError
from tomoclass.evaluate.baseline import class_mean_baseline, class_mean_boxes, nearest_class_mean

BOX = 12
NAMES = ["small", "large", "absent"]


def _balls(labels, rng, noise):
    """Gaussian blobs whose width grows with the label, in white noise."""
    c = (BOX - 1) / 2
    z, y, x = np.mgrid[:BOX, :BOX, :BOX]
    r2 = (z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2
    clean = np.stack([np.exp(-r2 / (2 * (1.2 + 2.0 * k) ** 2)) for k in labels])
    return (clean + noise * rng.standard_normal(clean.shape)).astype(np.float32)


def test_size_is_enough_and_intensity_scale_is_ignored():
    rng = np.random.default_rng(0)
    train = np.repeat([0, 1], 20)
    test = np.repeat([0, 1], 30)
    means, counts = class_mean_boxes(_balls(train, rng, 0.3), train, 3)
    assert counts.tolist() == [20, 20, 0] and np.isnan(means[2]).all()
    np.testing.assert_allclose(means[:2].mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(means[:2].std(axis=1), 1)
    boxes = _balls(test, rng, 0.3)
    pred, corr = nearest_class_mean(boxes, means)
    assert (pred == test).mean() >= 0.95
    assert np.isnan(corr[:, 2]).all() and (pred != 2).all()  # no mean: never predicted
    # contrast and offset of a box do not matter (each box is normalised); polarity does
    again, _ = nearest_class_mean(3.0 * boxes - 7.0, means)
    np.testing.assert_array_equal(again, pred)
    flipped, _ = nearest_class_mean(-boxes, means)
    assert (flipped == test).mean() < 0.5


def test_labels_that_carry_no_signal_score_near_chance():
    rng = np.random.default_rng(1)
    boxes = rng.standard_normal((400, BOX, BOX, BOX)).astype(np.float32)
    labels = rng.integers(0, 4, 400)
    means, _ = class_mean_boxes(boxes[:200], labels[:200], 4)
    pred, _ = nearest_class_mean(boxes[200:], means)
    assert abs((pred == labels[200:]).mean() - 0.25) < 0.1


def test_bad_labels_and_no_means_are_refused():
    boxes = np.zeros((3, BOX, BOX, BOX), np.float32)
    with pytest.raises(InputError, match="labels"):
        class_mean_boxes(boxes, np.array([0, 1, 5]), 3)
    with pytest.raises(InputError, match="labels"):
        class_mean_boxes(boxes, np.array([0, 1]), 3)
    with pytest.raises(InputError, match="no class"):
        nearest_class_mean(boxes, np.full((2, BOX**3), np.nan))


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(2)
    splits = {"train": 10, "val": 4, "test": 10}
    labels = np.array([k for n in splits.values() for k in range(2) for _ in range(n)])
    split = [s for s, n in splits.items() for _ in range(2) for _ in range(n)]
    table = pd.DataFrame({
        "tomogram": "t0", "x": 0.0, "y": 0.0, "z": 0.0,
        "class_name": [NAMES[k] for k in labels], "rot": np.nan, "tilt": np.nan,
        "psi": np.nan, "score": np.nan, "is_protein": True, "split": split,
    })
    ds = tmp_path / "ds"
    tdata.write_dataset(ds, _balls(labels, rng, 0.3), table,
                        tdata.ClassMap(NAMES, ["tiny", "large", "small"]), 10.0)
    return ds


def test_baseline_on_a_dataset_and_through_the_cli(dataset, tmp_path, capsys):
    store = tdata.open_dataset(dataset)
    m = class_mean_baseline(store)
    assert list(m.class_names) == NAMES and m.confusion.sum() == 20
    assert m.f1[0] == 1.0 and m.f1[1] == 1.0 and np.isnan(m.f1[2])  # no support, never named
    assert m.group_f1()["tiny"] == 1.0
    out = tmp_path / "base"
    assert main(["baseline", "--data", str(dataset), "--out", str(out)]) == 0
    assert "class_mean_correlation on test (20 particles): macro F1 1.000" in (
        capsys.readouterr().out)
    rec = json.loads((out / "report.json").read_text())
    assert rec["model_name"] == "class_mean_correlation" and rec["split"] == "test"
    assert (out / "confusion.csv").exists()
    assert ("no trained run: method nearest class mean by correlation, class means from the "
            "train split, boxes as measured") in (out / "report.md").read_text()
    # class means from val instead: still a report, of the same split
    assert main(["baseline", "--data", str(dataset), "--out", str(tmp_path / "v"),
                 "--train-split", "val"]) == 0


def test_clean_boxes_measure_what_the_shapes_alone_separate(dataset, tmp_path, capsys):
    rng = np.random.default_rng(3)
    store = tdata.open_dataset(dataset)
    labels = store.table["class_id"].to_numpy()
    clean = _balls(labels, rng, 0.0)
    noisy = rng.standard_normal(clean.shape).astype(np.float32)  # the signal drowned
    ds = tmp_path / "drowned"
    tdata.write_dataset(ds, noisy, store.table[["tomogram", "x", "y", "z", "class_name",
                                                "split"]], store.class_map, 10.0, clean=clean)
    drowned = tdata.open_dataset(ds)
    assert class_mean_baseline(drowned, clean=True).macro_f1 == 1.0
    assert class_mean_baseline(drowned).macro_f1 < 0.9
    assert main(["baseline", "--data", str(ds), "--out", str(tmp_path / "c"), "--clean"]) == 0
    assert "macro F1 1.000" in capsys.readouterr().out
    assert "boxes clean (noise-free)" in (tmp_path / "c" / "report.md").read_text()
    # a dataset without clean boxes says so
    assert main(["baseline", "--data", str(dataset), "--out", str(tmp_path / "n"),
                 "--clean"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clean" in err[0] and "ds" in err[0]
    assert not (tmp_path / "n").exists()


def test_baseline_refusals_write_nothing(dataset, tmp_path, capsys):
    out = tmp_path / "base"
    assert main(["baseline", "--data", str(dataset), "--out", str(out), "--split",
                 "nonsense"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "split" in err[0]
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    assert main(["baseline", "--data", str(dataset), "--out", str(mine)]) != 0
    assert (mine / "notes.txt").read_text() == "a user's file"
