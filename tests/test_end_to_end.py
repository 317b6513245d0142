"""The whole pipeline through the CLI functions on a tiny simulated set (issue 5).

simulate tomograms -> extract -> train 1 epoch -> evaluate -> predict, each as
``tomoclass.cli.main.main(argv)`` returning its exit code, then the outputs read back.
It checks the plumbing and the file contracts between stages, not accuracy.
"""

import json

import numpy as np
import pandas as pd
import pytest
import starfile
from train_support import one_thread

from tomoclass.cli.main import main
from tomoclass.data import open_dataset

pytestmark = pytest.mark.slow

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def test_simulate_extract_train_evaluate_predict(tmp_path):
    sim = tmp_path / "sim"
    assert main(["simulate", "tomograms", "--out", str(sim), "--seed", "3",
                 "--classes", "globule", "ring6", "--shape-zyx", "32", "64", "64",
                 "--n-particles", "14", "--n-tomograms", "3", "--write-density"]) == 0
    tomos = sorted(str(p) for p in sim.glob("tomo_00?.mrc"))
    tables = sorted(str(p) for p in sim.glob("tomo_00?_gt.txt"))
    assert len(tomos) == 3 and len(tables) == 3

    ds = tmp_path / "ds"
    assert main(["extract", "--tomograms", *tomos, "--tables", *tables, "--out", str(ds),
                 "--box", "24", "--split", "tomogram", "--test-tomograms", "tomo_002",
                 "--val-tomograms", "tomo_001"]) == 0
    store = open_dataset(ds)
    assert set(store.table["split"]) == {"train", "val", "test"}
    assert list(store.class_map.names) == ["globule", "ring6"]
    n_gt = sum(len(pd.read_csv(t, sep=r"\s+", header=None)) for t in tables)
    assert len(store.table) == n_gt  # default border handling pads, so nobody is lost

    run = tmp_path / "run"
    assert main(["train", "--data", str(ds), "--out", str(run), "--model", "densenet3d",
                 "--epochs", "1", "--batch-size", "4", "--no-progress",
                 "--bn-recalibration-samples", "8", "--device", "cpu"]) == 0
    assert (run / "checkpoints" / "best.pt").exists()
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["epoch"] == 1

    assert main(["evaluate", "--run", str(run), "--data", str(ds), "--split", "test"]) == 0
    report = json.loads((run / "evaluation_test" / "report.json").read_text())
    n_test = int((store.table["split"] == "test").sum())
    support = [row["support"] for row in report["per_class"]]
    assert support == [
        int(((store.table["split"] == "test") & (store.table["class_id"] == k)).sum())
        for k in range(2)]
    assert sum(support) == n_test == report["summary"]["n"]
    assert np.asarray(report["confusion"]).sum() == n_test

    picks = tmp_path / "picks.csv"
    gt = pd.read_csv(tables[2], sep=r"\s+", header=None)
    pd.DataFrame({"x": gt[1], "y": gt[2], "z": gt[3]}).to_csv(picks, index=False)
    out = tmp_path / "preds.star"
    assert main(["predict", "--run", str(run), "--tomogram", tomos[2], "--coords", str(picks),
                 "--out", str(out)]) == 0
    pred = starfile.read(out)
    pred = pred if isinstance(pred, pd.DataFrame) else next(iter(pred.values()))
    assert len(pred) == len(gt)
    assert set(pred["rlnClassNumber"]).issubset({1, 2})
    probs = pred[[c for c in pred.columns if c.startswith("tomoclass_prob_")]].to_numpy()
    assert probs.shape[1] == 2 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
