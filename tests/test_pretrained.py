"""Pretrained models by name: registry, checksum, --run NAME, models --pretrained, train --init."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from train_support import TINY_KWARGS, TINY_MODEL, make_dataset, one_thread

from tomoclass.cli.main import main
from tomoclass.errors import InputError
from tomoclass.infer import load_run
from tomoclass.models import pretrained as pretrained_mod
from tomoclass.models.pretrained import ENV_DIR, list_pretrained, resolve_pretrained, sha256_of
from tomoclass.train import fit, preset
from tomoclass.train.loop import build_model
from tomoclass.train.pretrained import initialize_from, register_run

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("pre")
    ds = make_dataset(base / "ds", n_per_class=(3, 3, 3), n_val_per_class=1, box=12)
    cfg = preset("default", model=TINY_MODEL, model_kwargs=TINY_KWARGS, batch_size=6,
                 epochs=1, lr_reference_batch=6, augment=False, checkpoint_every=0)
    fit(cfg, ds, base / "run", progress=False, check_resources=False)
    return base / "run"


@pytest.fixture()
def registered(source_run, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "pretrained"))
    # the shipped models (tests/test_pretrained_shipped.py) are out of these tests' lists
    monkeypatch.setattr(pretrained_mod, "PACKAGE_DIR", tmp_path / "no_package_models")
    entry = register_run(source_run, "tiny-cls", description="test model")
    return entry


def test_register_resolve_and_load_by_name(registered, source_run):
    e = registered
    assert e.sha256 == sha256_of(resolve_pretrained("tiny-cls"))
    assert e.model == TINY_MODEL and e.classes == ["class0", "class1", "class2"]
    assert e.voxel_size_angstrom == 10.0 and e.box == 12 and not e.detector
    assert "val_macro_f1" in e.metrics["validation"]
    assert [m.name for m in list_pretrained()] == ["tiny-cls"]
    model, class_map, info = load_run("tiny-cls")
    ref, _, _ = load_run(source_run)
    assert list(class_map.names) == ["class0", "class1", "class2"]
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(InputError, match="already exists"):
        register_run(source_run, "tiny-cls")


def test_changed_file_unknown_name_and_missing_file_are_refused(registered):
    path = resolve_pretrained("tiny-cls")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum is not the registered sha256"):
        load_run("tiny-cls")
    path.unlink()
    with pytest.raises(InputError, match="weights are missing"):
        resolve_pretrained("tiny-cls")
    with pytest.raises(InputError, match=r"no run directory or pretrained model named 'nope'.*"
                                         r"tiny-cls"):
        load_run("nope")


def test_models_pretrained_lists_provenance(registered, capsys):
    assert main(["models", "--pretrained", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "tiny-cls" and row["status"] == "ok"
    assert row["sha256"] == registered.sha256 and row["training_command"]
    assert main(["models", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert "tiny-cls: dilated_densenet3d, 3 classes, classifier" in out and "file ok" in out


def test_initialize_copies_backbone_and_matching_head_rows(registered):
    src, _, _ = load_run("tiny-cls")
    new = build_model(TINY_MODEL, 3, dict(TINY_KWARGS))
    report = initialize_from(new, "tiny-cls", ["class2", "lab_x", "class0"])
    assert report["head"] == "new" and report["classes_from_source"] == ["class2", "class0"]
    head_keys = {"classifier.weight", "classifier.bias"} & set(new.state_dict())
    for k, v in src.state_dict().items():
        if k not in head_keys:
            assert torch.equal(new.state_dict()[k], v), k
    w_new, w_src = new.get_classifier().weight, src.get_classifier().weight
    assert torch.equal(w_new[0], w_src[2]) and torch.equal(w_new[2], w_src[0])
    assert not torch.equal(w_new[1], w_src[1])
    same = build_model(TINY_MODEL, 3, dict(TINY_KWARGS))
    assert initialize_from(same, "tiny-cls", ["class0", "class1", "class2"])["head"] == "copied"
    assert torch.equal(same.get_classifier().weight, w_src)
    other = build_model(TINY_MODEL, 2, {**TINY_KWARGS, "growth_rate": 4})
    with pytest.raises(InputError, match="weights do not fit this model"):
        initialize_from(other, "tiny-cls", ["a", "b"])


def test_train_init_by_name_fine_tunes_on_other_classes(registered, tmp_path, capsys):
    ds = make_dataset(tmp_path / "lab", n_per_class=(2, 2), n_val_per_class=1, box=12,
                      names=["class1", "lab_y"])
    rc = main(["train", "--no-progress", "--data", str(ds), "--out", str(tmp_path / "ft"),
               "--init", "tiny-cls", "--epochs", "1", "--batch-size", "4",
               "--lr-reference-batch", "4", "--checkpoint-every", "0"])
    assert rc == 0, capsys.readouterr().err
    cfg = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())["train"]
    assert cfg["init"] == "tiny-cls" and cfg["model"] == TINY_MODEL
    assert cfg["model_kwargs"] == TINY_KWARGS
    _, class_map, _ = load_run(tmp_path / "ft")
    assert list(class_map.names) == ["class1", "lab_y"]


def test_predict_by_name_writes_picks_into_copick(registered, tmp_path, capsys):
    pytest.importorskip("copick", reason="copick not installed (pip install '.[copick]')")
    import numpy as np
    import pandas as pd

    from tomoclass.io import copick_io, write_volume

    copick = copick_io.import_copick()
    from copick.models import PickableObject

    cfg = tmp_path / "proj" / "copick.json"
    root = copick.new_config(str(cfg), str(tmp_path / "proj" / "overlay"), pickable_objects=[
        PickableObject(name=f"class{i}", is_particle=True, label=i + 1) for i in range(3)])
    root.new_run("TS_01")
    rng = np.random.default_rng(2)
    write_volume(tmp_path / "rec_TS_01.mrc", rng.normal(size=(24, 24, 24)).astype(np.float32),
                 10.0)
    xyz = np.array([[8.0, 9.0, 10.0], [15.0, 12.0, 9.0], [11.0, 16.0, 14.0]])
    pd.DataFrame(xyz, columns=["x", "y", "z"]).to_csv(tmp_path / "picks.csv", index=False)
    rc = main(["predict", "--run", "tiny-cls", "--tomogram", str(tmp_path / "rec_TS_01.mrc"),
               "--coords", str(tmp_path / "picks.csv"), "--out", str(tmp_path / "p.csv"),
               "--polarity", "dark", "--no-progress", "--copick-out", str(cfg),
               "--copick-out-run", "TS_01"])
    assert rc == 0, capsys.readouterr().err
    assert "copick" in capsys.readouterr().out
    run = copick.from_file(str(cfg)).get_run("TS_01")
    picks = run.get_picks(user_id="tomoclass", session_id="0")
    got = np.concatenate([p.full_positions() for p in picks])
    assert len(got) == 3
    np.testing.assert_allclose(sorted(map(tuple, got)), sorted(map(tuple, xyz * 10.0)))


def test_evaluate_by_name_needs_out(registered, tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds", n_per_class=(1, 1, 1), n_val_per_class=1, box=12)
    rc = main(["evaluate", "--run", "tiny-cls", "--data", str(ds), "--split", "val"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "give --out" in err[0]
    assert not (tmp_path / "tiny-cls").exists()
    assert main(["evaluate", "--run", "tiny-cls", "--data", str(ds), "--split", "val",
                 "--out", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "report.json").is_file()


def test_calibrated_threshold_travels_with_the_name(registered, source_run, tmp_path, capsys):
    import shutil

    from tomoclass.locate.calibration import run_threshold, save_threshold

    run = tmp_path / "calibrated"
    shutil.copytree(source_run, run)
    save_threshold(run, "best", 0.37, {"truth": "held_out_gt.txt"})
    assert main(["models", "--add-pretrained", "tiny-cal", "--from-run", str(run)]) == 0
    assert "use it as --run tiny-cal" in capsys.readouterr().out
    assert run_threshold("tiny-cal") == (0.37, "calibrated, recorded with pretrained tiny-cal")
    assert run_threshold("tiny-cls") == (0.5, "default")  # registered without calibration


def test_registered_file_is_inference_only_and_smaller(registered, source_run):
    shipped = torch.load(resolve_pretrained("tiny-cls"), weights_only=True)
    full = torch.load(source_run / "checkpoints" / "best.pt", weights_only=True)
    assert "optimizer_state" in full and "rng" in full
    for key in ("optimizer_state", "schedule_state", "rng", "sampler"):
        assert key not in shipped, key
    assert shipped["class_names"] == full["class_names"] and shipped["epoch"] == full["epoch"]
    assert resolve_pretrained("tiny-cls").stat().st_size < 0.6 * (
        source_run / "checkpoints" / "best.pt").stat().st_size


def test_detector_radii_are_recorded_in_angstrom_and_used_by_locate(source_run, tmp_path,
                                                                    monkeypatch, capsys):
    import numpy as np

    from tomoclass.io import write_volume
    from tomoclass.locate.radii import pretrained_radii
    from tomoclass.workflows.locate import locate

    monkeypatch.setenv(ENV_DIR, str(tmp_path / "pretrained"))
    monkeypatch.setattr(pretrained_mod, "PACKAGE_DIR", tmp_path / "no_package_models")
    ds = make_dataset(tmp_path / "ds", n_per_class=(2, 2, 2), n_val_per_class=1, box=12,
                      names=["background", "ribo", "prot"])
    cfg = preset("default", model=TINY_MODEL, model_kwargs=TINY_KWARGS, batch_size=6,
                 epochs=1, lr_reference_batch=6, augment=False, checkpoint_every=0)
    fit(cfg, ds, tmp_path / "det", progress=False, check_resources=False)
    assert main(["models", "--add-pretrained", "tiny-det", "--from-run", str(tmp_path / "det"),
                 "--radius", "ribo=5", "--radius", "prot=2.5"]) == 0
    capsys.readouterr()
    assert main(["models", "--pretrained", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["detector"] and row["radii_angstrom"] == {"ribo": 50.0, "prot": 25.0}
    assert pretrained_radii("tiny-det") == {"ribo": 5.0, "prot": 2.5}
    assert pretrained_radii(tmp_path / "det") is None  # a run directory records none
    tomo = tmp_path / "t.mrc"
    write_volume(tomo, np.random.default_rng(0).normal(size=(24, 28, 32)).astype(np.float32),
                 10.0)
    res = locate("tiny-det", tomo, tmp_path / "picks.star", polarity="dark", progress=False)
    assert res.radii == {"ribo": 5.0, "prot": 2.5}
    res = locate("tiny-det", tomo, tmp_path / "picks2.star", polarity="dark", progress=False,
                 radii={"ribo": 7, "prot": 3})
    assert res.radii == {"ribo": 7.0, "prot": 3.0}  # given radii win
    # a 5 Å tomogram located with --rescale: the radii follow the tomogram's voxels
    write_volume(tmp_path / "fine.mrc",
                 np.random.default_rng(1).normal(size=(48, 48, 48)).astype(np.float32), 5.0)
    res = locate("tiny-det", tmp_path / "fine.mrc", tmp_path / "picks3.star", polarity="dark",
                 progress=False, rescale=True)
    assert res.radii == {"ribo": 10.0, "prot": 5.0}
    with pytest.raises(InputError, match="no radius for class 'prot'"):
        register_run(tmp_path / "det", "tiny-det2", radii_voxels={"ribo": 5})
    with pytest.raises(InputError, match="does not have: nope"):
        register_run(tmp_path / "det", "tiny-det3", radii_voxels={"*": 5, "nope": 2})
