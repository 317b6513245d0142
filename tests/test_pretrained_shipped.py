"""The pretrained models shipped in the package: present, verified, loadable, usable by name.

Their recorded accuracy is reproduced by ``benchmarks/pretrained_check.py`` (minutes, not a
test); here: the registry is complete, each file has its registered sha256 and loads with
``weights_only``, gives finite probabilities, and the detector locates by name from a fresh
checkout (the README's quick start) with its recorded threshold and radii.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from tomoclass.cli.main import main
from tomoclass.infer import load_run
from tomoclass.models.pretrained import ENV_DIR, PACKAGE_DIR, REGISTRY_FILE, resolve_pretrained
from tomoclass.train.pretrained import TRAINING_STATE

SHIPPED = ("shrec12-classifier", "shrec12-classifier-plain", "shrec12-detector")
SHREC12 = ["1s3x", "3qm1", "3gl1", "3d2f", "1u6g", "2cg9", "3h84", "1qvr", "1bxn", "3cf3",
           "3j9i", "7p6z"]


@pytest.fixture(autouse=True)
def _package_only(tmp_path, monkeypatch):
    """Look up names in the package only (a user's cache must not shadow the shipped ones)."""
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "no_user_models"))
    torch.set_num_threads(1)


def _registry() -> dict:
    return json.loads((PACKAGE_DIR / REGISTRY_FILE).read_text())["models"]


@pytest.mark.parametrize("name", SHIPPED)
def test_entry_is_complete_and_the_file_checks_out(name):
    entry = _registry()[name]
    # issue 18 item 2: the 12-class classifier dilated and plain, the detector dilated
    assert entry["model"] == ("densenet3d" if name.endswith("-plain") else "dilated_densenet3d")
    assert entry["voxel_size_angstrom"] == 10.0 and entry["box"] == 32
    assert sorted(c for c in entry["classes"] if c != "background") == sorted(SHREC12)
    assert entry["detector"] == ("background" in entry["classes"]) == name.endswith("detector")
    assert entry["commit"] and entry["training_command"]
    rec = entry["metrics"]["recorded"]  # what benchmarks/pretrained_check.py reproduces
    assert rec["tier"] and rec["kind"] == ("detector" if entry["detector"] else "classifier")
    key = "loc_f1" if entry["detector"] else "macro_f1"
    assert 0.0 < rec[key] <= 1.0
    path = resolve_pretrained(name)  # raises unless size and sha256 are the registered ones
    ck = torch.load(path, weights_only=True, map_location="cpu")
    assert ck["class_names"] == entry["classes"]
    assert not set(TRAINING_STATE) & set(ck)
    assert path.stat().st_size < 5 * 2**20


def test_detector_records_its_threshold_and_a_radius_per_class():
    entry = _registry()["shrec12-detector"]
    assert 0.0 < entry["threshold"] < 1.0
    assert sorted(entry["radii_angstrom"]) == sorted(SHREC12)
    # template radii at 10 Å: tiny particles ~40 Å, the largest ~155 Å
    assert all(30.0 <= r <= 200.0 for r in entry["radii_angstrom"].values())


@pytest.mark.parametrize("name", SHIPPED)
def test_loads_by_name_and_gives_probabilities(name):
    model, class_map, info = load_run(name)
    assert not model.training
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 1, 32, 32, 32))
                         .astype(np.float32))
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    assert p.shape == (2, len(class_map.names))
    assert torch.isfinite(p).all() and torch.allclose(p.sum(1), torch.ones(2))
    assert info["box"] == 32


def test_quick_start_locates_with_the_shipped_detector(tmp_path, capsys, caplog):
    from tomoclass.io import write_volume

    caplog.set_level(logging.INFO)
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(40, 64, 64)).astype(np.float32)
    zz, yy, xx = np.mgrid[:40, :64, :64]
    for c in ((20, 20, 20), (20, 44, 40)):  # two dark blobs of ~5 voxels radius
        vol -= 3.0 * np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / 12.0)
    write_volume(tmp_path / "T.mrc", vol, 10.0)
    rc = main(["locate", "--run", "shrec12-detector", "--tomogram", str(tmp_path / "T.mrc"),
               "--out", str(tmp_path / "picks.star"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "picks.star").is_file()
    log = caplog.text  # the recorded threshold and radii were used
    assert "pick threshold" in log
    assert "calibrated, recorded with pretrained shrec12-detector" in log
    assert "radii recorded with pretrained shrec12-detector" in log


def test_demo_models_ship_three_seeds_each_with_their_records():
    from tomoclass.workflows.demo import DEMO_CLASSES, SHIPPED_PREFIX, DemoConfig, shipped_models

    found = shipped_models(SHIPPED_PREFIX)
    assert sorted(found) == [(m, s) for m in ("densenet3d", "dilated_densenet3d")
                             for s in (0, 1, 2)]
    for (model, _seed), name in found.items():
        entry = _registry()[name]
        assert entry["model"] == model and entry["classes"] == list(DEMO_CLASSES)
        assert entry["voxel_size_angstrom"] == DemoConfig.voxel_size_angstrom
        assert entry["box"] == DemoConfig.box
        rec = entry["metrics"]["recorded"]  # what `demo_models.py --check` reproduces
        assert 1.0 / len(DEMO_CLASSES) < rec["test_on_training_simulation"]["macro_f1"] <= 1.0
        assert "converged" in rec["convergence"] and rec["data"]["seed"] != DemoConfig.seed
        path = resolve_pretrained(name)
        ck = torch.load(path, weights_only=True, map_location="cpu")
        assert not set(TRAINING_STATE) & set(ck) and path.stat().st_size < 5 * 2**20
