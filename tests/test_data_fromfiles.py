"""data.fromfiles: extract_from_files, the library form of ``tomoclass extract``."""

import numpy as np
import pandas as pd
import pytest

from tomoclass.data.fromfiles import extract_from_files, split_options
from tomoclass.data.store import open_dataset
from tomoclass.errors import InputError
from tomoclass.io import write_particles, write_volume


def _files(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("tomo_a", "tomo_b"):
        write_volume(tmp_path / f"{name}.mrc", rng.normal(size=(12, 16, 16)).astype(np.float32),
                     10.0)
    rows = pd.DataFrame({"x": [5, 9, 12], "y": [6, 8, 10], "z": [5, 6, 6],
                         "class_name": ["a", "b", "a"]})
    write_particles(tmp_path / "objl.csv", rows)
    return [tmp_path / "tomo_a.mrc", tmp_path / "tomo_b.mrc"]


def test_tables_named_by_spec_and_tuple_split_by_tomogram(tmp_path):
    tomos = _files(tmp_path)
    table = tmp_path / "objl.csv"
    report = extract_from_files(
        tmp_path / "ds", tomos, [f"{table}=tomo_a", (table, "tomo_b")], box=6,
        split={"test_tomograms": ["tomo_b"]}, classes=["b", "a"])
    assert report.n_written == 6 and report.per_tomogram == {"tomo_a": 3, "tomo_b": 3}
    store = open_dataset(tmp_path / "ds")
    assert list(store.class_map.names) == ["b", "a"]
    assert (store.table.loc[store.table["tomogram"] == "tomo_b", "split"] == "test").all()
    assert store.meta["provenance"]["tables"] == [f"{table}=tomo_a", f"{table}=tomo_b"]


def test_no_tables_and_unknown_class_raise(tmp_path):
    tomos = _files(tmp_path)
    with pytest.raises(InputError, match="no particle tables"):
        extract_from_files(tmp_path / "ds", tomos, [])
    with pytest.raises(InputError, match="unknown class"):
        extract_from_files(tmp_path / "ds", tomos, [(tmp_path / "objl.csv", "tomo_a")],
                           classes=["a"], box=6)
    assert not (tmp_path / "ds").exists()


def test_split_options_per_method():
    assert split_options("tomogram", seed=3, test_tomograms=[9]) == {
        "seed": 3, "val_fraction": 0.0, "test_tomograms": ["9"], "val_tomograms": []}
    assert split_options("stratified", test_fraction=0.2) == {
        "seed": 0, "val_fraction": 0.0, "test_fraction": 0.2}
