"""A dataset without a validation split: extract warns, train's refusal says how to fix it."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from train_support import TINY_KWARGS, TINY_MODEL

from tomoclass.cli.main import main
from tomoclass.data import open_dataset
from tomoclass.errors import InputError
from tomoclass.io import write_particles, write_volume
from tomoclass.train import fit, preset


def _extract(tmp_path, *extra):
    rng = np.random.default_rng(0)
    for name in ("model_3", "model_9", "model_10"):
        write_volume(tmp_path / f"{name}.mrc", rng.normal(size=(20, 28, 28)).astype(np.float32),
                     10.0)
    t = pd.DataFrame({"tomogram": ["model_3"] * 6 + ["model_9"] * 2 + ["model_10"] * 2,
                      "x": [8, 12, 16, 20, 10, 14, 10, 14, 10, 14], "y": 10, "z": 9,
                      "class_name": ["a", "b"] * 5})
    write_particles(tmp_path / "gt.csv", t)
    return main(["extract", "--tomograms", *(str(tmp_path / f"{n}.mrc") for n in
                                             ("model_3", "model_9", "model_10")),
                 "--tables", str(tmp_path / "gt.csv"), "--box", "8", *extra])


def test_extract_warns_and_train_says_how_to_fix(tmp_path, caplog):
    ds = tmp_path / "ds"
    with caplog.at_level(logging.WARNING):
        assert _extract(tmp_path, "--test-tomograms", "9,10", "--out", str(ds)) == 0
    assert "no validation split (6 train, 4 test)" in caplog.text
    assert "--val-fraction" in caplog.text and "--val-tomograms" in caplog.text
    cfg = preset("default", model=TINY_MODEL, model_kwargs=TINY_KWARGS, batch_size=2, epochs=1)
    with pytest.raises(InputError, match="validation split") as exc:
        fit(cfg, ds, tmp_path / "run", progress=False)
    assert "tomoclass dataset split" in str(exc.value) and "--val-fraction" in str(exc.value)
    # following the advice gives the dataset a validation split
    assert main(["dataset", "split", str(ds), "--test-tomograms", "9,10",
                 "--val-fraction", "0.34"]) == 0
    assert (open_dataset(ds).table["split"] == "val").sum() == 2


def test_no_warning_with_a_validation_split(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert _extract(tmp_path, "--test-tomograms", "9", "--val-tomograms", "10",
                        "--out", str(tmp_path / "ds")) == 0
    assert "no validation split" not in caplog.text
