"""End to end: tiny runs trained with tomoclass.train -> evaluate -> compare -> cam (CLI too)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import tomoclass.data as tdata
from tomoclass.cli.main import main
from tomoclass.errors import InputError
from tomoclass.io.outputs import MARKER
from tomoclass.train import fit, preset
from tomoclass.workflows.evaluate import evaluate_run

# trains two tiny nets for 2 epochs (~8 s on an idle 2-core machine), then evaluates them
pytestmark = pytest.mark.slow

BOX = 16
NAMES = ["blob_s", "blob_m", "blob_l"]
GROUPS = ["tiny", "small", "large"]
TINY = {"growth_rate": 4, "num_blocks": 2, "layers_per_block": 2}
MODELS = {"dilated_densenet3d": {**TINY, "dilations": [1, 2]}, "densenet3d": TINY}


def _blobs(labels, rng, noise):
    c = (BOX - 1) / 2
    z, y, x = np.mgrid[:BOX, :BOX, :BOX]
    r2 = (z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2
    clean = np.stack([np.exp(-r2 / (2 * (1.5 + 1.2 * k) ** 2)) for k in labels])
    return (clean + noise * rng.standard_normal(clean.shape)).astype(np.float32), clean


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalrun")
    rng = np.random.default_rng(0)
    splits = {"train": 4, "val": 2, "test": 2}
    labels = np.array([k for s, n in splits.items() for k in range(3) for _ in range(n)])
    split = [s for s, n in splits.items() for _ in range(3) for _ in range(n)]
    vols, clean = _blobs(labels, rng, 0.3)
    table = pd.DataFrame({
        "tomogram": "t0", "x": 0.0, "y": 0.0, "z": 0.0,
        "class_name": [NAMES[k] for k in labels], "rot": np.nan, "tilt": np.nan, "psi": np.nan,
        "score": np.nan, "is_protein": True,
        "class_id": labels, "split": split, "index": np.arange(len(labels)),
    })
    ds = root / "ds"
    tdata.write_dataset(ds, vols, table, tdata.ClassMap(NAMES, GROUPS), 10.0,
                        clean=clean.astype(np.float32))
    out = {}
    for name, kw in MODELS.items():
        cfg = preset("default", model=name, model_kwargs=kw, batch_size=6, epochs=2,
                     base_lr=1e-2, lr_reference_batch=6, checkpoint_every=1,
                     augment=False, seed=3)
        fit(cfg, ds, root / name, progress=False)
        out[name] = root / name
    return ds, out


def test_evaluate_run_writes_consistent_report(runs):
    ds, run_dirs = runs
    run = run_dirs["dilated_densenet3d"]
    rep = evaluate_run(run, ds, "test", device="cpu")
    assert rep.out_dir == run / "evaluation_test"
    d = json.loads((rep.out_dir / "report.json").read_text())
    assert d["summary"]["n"] == 6 and d["class_names"] == NAMES
    cm = np.array(d["confusion"])
    assert cm.sum(axis=1).tolist() == [2, 2, 2]
    assert list(d["summary"]["group_f1"]) == ["tiny", "small", "large"]
    # the report's F1 follows from its own confusion matrix (Eq. 2)
    tp = np.diag(cm)
    f1 = [r["f1"] for r in d["per_class"]]
    for i in range(3):
        den = 2 * tp[i] + cm[i].sum() - tp[i] + cm[:, i].sum() - tp[i]
        assert f1[i] == pytest.approx(2 * tp[i] / den)
    assert d["cam"]["method"] == "cam" and d["cam"]["n_scored"] == 6
    assert 0.0 <= d["cam"]["mean"] <= 1.0
    assert 0.0 < d["cam"]["mean_mask_fraction"] < 1.0
    again = evaluate_run(run, ds, "test", device="cpu", out_dir=run / "again", cam=False)
    np.testing.assert_array_equal(again.metrics.confusion, cm)  # deterministic
    assert again.cam is None


def test_evaluate_refuses_bad_split_and_checkpoint(runs):
    ds, run_dirs = runs
    with pytest.raises(InputError, match="no particles in split 'nope'"):
        evaluate_run(run_dirs["densenet3d"], ds, "nope", device="cpu")
    with pytest.raises(InputError, match="epoch_009"):
        evaluate_run(run_dirs["densenet3d"], ds, which="epoch_009", device="cpu")


def test_cli_evaluate_compare_cam(runs, tmp_path, capsys):
    ds, run_dirs = runs
    for r in run_dirs.values():
        assert main(["evaluate", "--run", str(r), "--data", str(ds), "--device", "cpu"]) == 0
    assert "macro F1" in capsys.readouterr().out
    cmp_dir = tmp_path / "cmp"
    assert main(["compare", *map(str, run_dirs.values()), "--out", str(cmp_dir)]) == 0
    out = capsys.readouterr().out
    assert "| model | tiny | small | large |" in out and "CAM score" in out
    files = sorted(p.name for p in cmp_dir.iterdir() if p.name != MARKER)
    assert files == ["compare.json", "compare.md", "fig4a.png", "fig4b.png", "table2.csv"]
    comp = json.loads((cmp_dir / "compare.json").read_text())
    assert [c["epochs"] for c in comp["curves"]] == [[1, 2], [1, 2]]  # from metrics.jsonl
    # Fig. 4B from the periodic checkpoints instead of the log
    assert main(["compare", *map(str, run_dirs.values()), "--out", str(tmp_path / "c2"),
                 "--data", str(ds), "--curve-from", "checkpoints", "--device", "cpu"]) == 0
    comp2 = json.loads((tmp_path / "c2" / "compare.json").read_text())
    assert [c["epochs"] for c in comp2["curves"]] == [[1, 2], [1, 2]]
    # validation F1 at the last epoch, recomputed from the checkpoint, equals the logged one
    np.testing.assert_allclose([c["f1"][-1] for c in comp2["curves"]],
                               [c["f1"][-1] for c in comp["curves"]], atol=1e-9)
    fig = tmp_path / "cam.png"
    assert main(["cam", "--run", str(run_dirs["dilated_densenet3d"]), "--run",
                 str(run_dirs["densenet3d"]), "--data", str(ds), "--n", "4", "--out", str(fig),
                 "--mrc-dir", str(tmp_path / "mrc"), "--orthogonal", "--device", "cpu"]) == 0
    assert fig.is_file() and "figure:" in capsys.readouterr().out
    assert len(list((tmp_path / "mrc").glob("*.mrc"))) == 8
    assert main(["cam", "--run", str(tmp_path / "missing"), "--data", str(ds)]) == 2
