"""One split rule (tomoclass.splits) for the simulator and the dataset store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tomoclass.data import assign_splits
from tomoclass.simulate.output import split_labels
from tomoclass.splits import round_half_up, stratified_splits


@pytest.mark.parametrize("n_per_class, val, test, seed", [(10, 0.05, 0.25, 0), (7, 0.2, 0.1, 3)])
def test_simulator_and_store_split_the_same_stream_alike(n_per_class, val, test, seed):
    n_classes = 3
    sim = split_labels(n_per_class, n_classes, seed=seed, val_fraction=val, test_fraction=test)
    # the simulator's stream: position i is a sample of class i % n_classes
    table = pd.DataFrame({"tomogram": "simulated",
                          "class_name": [f"c{i % n_classes}" for i in range(len(sim))]})
    store = assign_splits(table, "stratified", val_fraction=val, test_fraction=test, seed=seed)
    assert list(sim) == list(store)


def test_counts_round_halves_up_not_to_even():
    # 10 items: 0.05 * 10 = 0.5 -> 1 val, 0.25 * 10 = 2.5 -> 3 test (round() gives 0 and 2)
    sp = split_labels(10, 1, seed=0, val_fraction=0.05, test_fraction=0.25)
    assert (sp == "val").sum() == 1 and (sp == "test").sum() == 3
    assert round_half_up(0.5) == 1 and round_half_up(2.5) == 3 and round_half_up(2.49) == 2


def test_stratified_splits_is_seeded_per_class():
    classes = np.repeat(["a", "b"], 20)
    a = stratified_splits(classes, val_fraction=0.1, test_fraction=0.2, seed=1)
    assert list(a) == list(stratified_splits(classes, val_fraction=0.1, test_fraction=0.2,
                                             seed=1))
    assert list(a) != list(stratified_splits(classes, val_fraction=0.1, test_fraction=0.2,
                                             seed=2))
    for c in ("a", "b"):
        assert ((a[classes == c] == "test").sum(), (a[classes == c] == "val").sum()) == (4, 2)


def test_a_simulated_dataset_is_split_as_the_store_splits_its_table(tmp_path):
    from tomoclass.cli.main import main
    from tomoclass.data import open_dataset

    out = tmp_path / "ds"
    assert main(["-q", "simulate", "subtomograms", "--classes", "globule", "dimer",
                 "--box-size", "16", "--n-per-class", "5", "--out", str(out), "--seed", "3"]) == 0
    table = open_dataset(out).table.sort_values("index")
    store = assign_splits(table, "stratified", val_fraction=0.1, test_fraction=0.1, seed=3)
    assert list(table["split"]) == list(store)  # 0.1 * 5 = 0.5 -> 1 val and 1 test per class
    assert (table["split"] == "val").sum() == 2 and (table["split"] == "test").sum() == 2
