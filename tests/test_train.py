"""Training: config/presets, schedule, run directory, exact resume, reproducibility, bad input,
untrusted checkpoints."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from train_support import TINY_KWARGS, TINY_MODEL, make_dataset, one_thread, tiny_model_args

from tomoclass.cli.main import main
from tomoclass.errors import InputError, ResourceError
from tomoclass.infer import load_run
from tomoclass.train import TrainConfig, fit, load_checkpoint, preset
from tomoclass.train import metrics as M
from tomoclass.train.checkpoint import save_checkpoint
from tomoclass.train.schedule import epoch_lr, epochs_without_improvement, lr_at, stop_early

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)

TIME_KEYS = {"samples_per_s", "epoch_seconds"}


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(model=TINY_MODEL, model_kwargs=TINY_KWARGS, batch_size=6, epochs=2,
                base_lr=1e-2, lr_reference_batch=6, checkpoint_every=1, deterministic=True,
                augment=False, seed=3)
    base.update(kw)
    return preset("default", **base)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds")


def curve(history):
    return [{k: v for k, v in h.items() if k not in TIME_KEYS} for h in history]


# -- configuration ------------------------------------------------------------------------
def test_paper_preset_is_the_published_protocol():
    cfg = preset("paper")
    assert (cfg.optimizer, cfg.base_lr, cfg.batch_size, cfg.epochs) == ("adam", 0.1, 64, 30)
    assert (cfg.lr_step_epochs, cfg.lr_gamma) == (10, 0.1)
    assert cfg.warmup_epochs > 0
    # linear scaling rule: doubling the batch doubles the peak lr
    assert preset("paper", batch_size=128).peak_lr == pytest.approx(0.2)


def test_default_preset_gives_shrec_cnn_its_own_lr_unless_told():
    assert preset("default", model="shrec_cnn").base_lr == 4e-4
    assert preset("default", model="shrec_cnn", base_lr=1e-2).base_lr == 1e-2
    assert preset("default", model="dilated_densenet3d").base_lr == 4e-3
    assert preset("paper", model="shrec_cnn").base_lr == 0.1  # the published protocol


def test_config_yaml_round_trip_and_refusals(tmp_path):
    cfg = preset("default", epochs=7, model_kwargs={"growth_rate": 4})
    assert TrainConfig.from_yaml(cfg.to_yaml()) == cfg
    bad = tmp_path / "c.yaml"
    bad.write_text("epochs: 0\n")
    with pytest.raises(InputError, match="epochs"):
        TrainConfig.load(bad)
    bad.write_text("epochz: 3\n")
    with pytest.raises(InputError, match="epochz"):
        TrainConfig.load(bad)


def test_schedule_warms_up_then_steps_down():
    cfg = preset("paper", batch_size=64, warmup_epochs=2)
    spe = 10
    lrs = [lr_at(s, spe, cfg) for s in range(30 * spe)]
    assert lrs[0] == pytest.approx(0.1 * cfg.warmup_start_factor)
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:21], strict=True))  # rising during warm-up
    assert lrs[20] == pytest.approx(0.1)
    assert lrs[10 * spe] == pytest.approx(0.01) and lrs[20 * spe] == pytest.approx(0.001)


def test_epoch_lr_is_the_rate_each_epoch_trains_at():
    cfg = preset("plain", lr_step_epochs=4, lr_gamma=0.1)
    assert [epoch_lr(cfg, e) for e in (1, 4, 5, 8, 9)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-4, 1e-5])
    spe = 7  # the schedule itself, at the last step of each epoch, agrees
    assert [lr_at(e * spe - 1, spe, cfg) for e in (4, 5, 9)] == pytest.approx(
        [epoch_lr(cfg, e) for e in (4, 5, 9)])
    with pytest.raises(ValueError, match="1-based"):
        epoch_lr(cfg, 0)


def test_f1_against_hand_computed_confusion():
    # class 2 has no predictions, class 3 no support and no predictions
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 0])
    cm = M.confusion_matrix(y_true, y_pred, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    f1 = M.per_class_f1(cm)
    assert f1[0] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))  # TP 2, FN 1, FP 2
    assert f1[1] == pytest.approx(2 * 1 / (2 + 1 + 1))
    assert f1[2] == 0.0 and math.isnan(f1[3])
    assert M.macro_f1(cm) == pytest.approx((4 / 7 + 0.5 + 0) / 3)


# -- a run --------------------------------------------------------------------------------
def test_fit_writes_a_complete_run_and_load_run_rebuilds_it(dataset, tmp_path):
    res = fit(tiny_cfg(epochs=2), dataset, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch_001.pt", "epoch_002.pt", "last.pt"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert all(0.0 <= r["val_macro_f1"] <= 1.0 and r["samples_per_s"] > 0 for r in lines)
    cfg_yaml = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg_yaml["train"]["epochs"] == 2 and cfg_yaml["versions"]["torch"]
    assert "git_commit" in cfg_yaml and cfg_yaml["data"]["voxel_size_angstrom"] == 10.0
    assert [c["name"] for c in yaml.safe_load((run / "classes.yaml").read_text())] == \
        ["class0", "class1", "class2"]
    assert res.best_epoch in (1, 2)

    model, cmap, info = load_run(run, which="last")
    assert list(cmap.names) == ["class0", "class1", "class2"] and info["epoch"] == 2
    assert not model.training
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ck["model_state"][k])
    # best.pt is the epoch with the highest validation macro F1
    _, _, best = load_run(run, which="best")
    assert best["metrics"]["val_macro_f1"] == max(r["val_macro_f1"] for r in lines)
    with pytest.raises(InputError, match="no checkpoint 'epoch_007'"):
        load_run(run, which="7")


def test_names_of_one_epoch_share_one_file_and_later_epochs_leave_it_alone(dataset, tmp_path):
    """last.pt, best.pt and epoch_NNN.pt of one epoch are one file on disk (a checkpoint of
    the paper's SHREC-CNN is 330 MB), and writing a later epoch's last.pt does not change the
    epoch file an earlier link points to."""
    run = tmp_path / "run"
    fit(tiny_cfg(epochs=1), dataset, run, progress=False)
    ck = run / "checkpoints"
    first = (ck / "epoch_001.pt").read_bytes()
    inodes = {(ck / n).stat().st_ino for n in ("last.pt", "best.pt", "epoch_001.pt")}
    assert len(inodes) == 1 and (ck / "last.pt").stat().st_nlink == 3
    fit(tiny_cfg(epochs=2), dataset, run, resume=True, progress=False)
    assert (ck / "epoch_001.pt").read_bytes() == first
    assert load_checkpoint(ck / "epoch_001.pt")["epoch"] == 1
    assert load_checkpoint(ck / "last.pt")["epoch"] == 2
    assert (ck / "last.pt").stat().st_ino == (ck / "epoch_002.pt").stat().st_ino
    assert not list(ck.glob(".*.tmp"))


def test_a_file_system_without_hard_links_gets_copies(tmp_path, monkeypatch):
    src = tmp_path / "a.pt"
    save_checkpoint(src, {"format": "tomoclass-checkpoint", "epoch": 3})

    def no_links(*_a, **_k):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    save_checkpoint(tmp_path / "b.pt", {"format": "tomoclass-checkpoint", "epoch": 4},
                    also=[tmp_path / "c.pt"])
    assert (tmp_path / "c.pt").stat().st_ino != (tmp_path / "b.pt").stat().st_ino
    assert (tmp_path / "c.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.load(tmp_path / "c.pt", weights_only=True)["epoch"] == 4


def test_epochs_without_improvement_counts_from_the_best_loss():
    assert epochs_without_improvement([]) == 0
    assert epochs_without_improvement([1.0, 0.8, 0.85, 0.9]) == 2
    assert epochs_without_improvement([1.0, 0.8, 0.7]) == 0
    # an improvement smaller than min_delta is none; NaN never improves
    assert epochs_without_improvement([1.0, 0.95, 0.92], min_delta=0.1) == 2
    assert epochs_without_improvement([1.0, 0.95, 0.85], min_delta=0.1) == 0
    assert epochs_without_improvement([float("nan"), float("nan")]) == 2
    hist = [{"val_loss": v} for v in (1.0, 0.8, 0.85, 0.9)]
    assert stop_early(hist, 2) and not stop_early(hist, 3) and not stop_early(hist, None)
    # not before min_epochs epochs; the earlier losses still set the best to beat
    assert not stop_early(hist, 2, min_epochs=5) and stop_early(hist, 2, min_epochs=4)
    assert stop_early(hist + [{"val_loss": 0.85}], 2, min_epochs=5)


def _scripted_val_losses(monkeypatch, losses):
    """Replace the validation loss of each epoch by the next of ``losses``."""
    import tomoclass.train.loop as loop

    real, it = loop._validate, iter(losses)

    def scripted(*a, **k):
        _, cm = real(*a, **k)
        return next(it), cm

    monkeypatch.setattr(loop, "_validate", scripted)


def test_early_stopping_ends_the_run_and_a_resume_does_not_train_on(dataset, tmp_path,
                                                                      monkeypatch):
    _scripted_val_losses(monkeypatch, [1.0, 0.8, 0.85, 0.81, 0.5, 0.4])
    run = tmp_path / "run"
    res = fit(tiny_cfg(epochs=6, early_stopping_patience=2), dataset, run, progress=False)
    assert res.stopped_early and res.epochs_done == 4  # epochs 3 and 4 did not beat 0.8
    assert [r["val_loss"] for r in res.history] == [1.0, 0.8, 0.85, 0.81]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 4
    assert yaml.safe_load((run / "config.yaml").read_text())["train"][
        "early_stopping_patience"] == 2
    # resuming (even asking for more epochs) stops again before training anything
    again = fit(tiny_cfg(epochs=8, early_stopping_patience=2), dataset, run, resume=True,
                progress=False)
    assert again.stopped_early and again.epochs_done == 4 and len(again.history) == 4


def test_early_stopping_from_the_command_line(dataset, tmp_path, monkeypatch, capsys):
    _scripted_val_losses(monkeypatch, [1.0, 1.1, 0.5])
    run = tmp_path / "run"
    code, _ = _cli(capsys, "--data", dataset, "--out", run, "--model", TINY_MODEL,
                   *tiny_model_args(), "--epochs", 3, "--batch-size", 6,
                   "--lr-reference-batch", 6, "--early-stopping", 1)
    assert code == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    code = main(["train", "--no-progress", "--data", str(dataset), "--out", str(run),
                 "--resume"])
    out = capsys.readouterr().out
    assert code == 0 and "early stopping" in out and "trained 2 epochs" in out


def test_early_stopping_waits_for_its_min_epochs(dataset, tmp_path, monkeypatch, capsys):
    """--early-stopping-min-epochs M: no stop before epoch M (patience 1 alone would stop
    after epoch 2 here), then the usual rule, counted from the best of all epochs."""
    _scripted_val_losses(monkeypatch, [1.0, 1.1, 1.2, 0.5, 0.4])
    run = tmp_path / "run"
    code, _ = _cli(capsys, "--data", dataset, "--out", run, "--model", TINY_MODEL,
                   *tiny_model_args(), "--epochs", 5, "--batch-size", 6,
                   "--lr-reference-batch", 6, "--early-stopping", 1,
                   "--early-stopping-min-epochs", 3)
    assert code == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"][
        "early_stopping_min_epochs"] == 3
    code, _ = _cli(capsys, "--data", dataset, "--out", tmp_path / "bad", "--model", TINY_MODEL,
                   "--early-stopping", 1, "--early-stopping-min-epochs", -1)
    assert code == 2 and not (tmp_path / "bad").exists()


def test_resume_names_the_options_it_ignores(dataset, tmp_path, capsys, caplog):
    """--resume continues the run's own plan (only --epochs may grow); an option asking for
    another value is named in a warning instead of being dropped silently."""
    run = tmp_path / "run"
    assert _cli(capsys, *_run_args(dataset, run))[0] == 0
    with caplog.at_level("WARNING", logger="tomoclass.train.options"):
        code, _ = _cli(capsys, "--data", dataset, "--out", run, "--resume", "--epochs", 2,
                       "--lr", 0.5, "--early-stopping", 3, "--lr-reference-batch", 6)
    assert code == 0
    warned = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(warned) == 1 and "base_lr 0.5" in warned[0]
    assert "early_stopping_patience 3 (the run's None)" in warned[0]
    assert "lr_reference_batch" not in warned[0]  # the same value: not a change
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["base_lr"] != 0.5


def test_few_validation_boxes_warn_that_best_pt_is_noisy(dataset, tmp_path, monkeypatch,
                                                          caplog):
    """best.pt is the epoch of the best validation macro F1: on a few dozen boxes a noisy
    choice (tiny3_val: 0.15 below last.pt on 60), so training says so once, naming the count;
    with enough boxes it says nothing."""
    from tomoclass.data import open_dataset
    from tomoclass.train import loop

    with caplog.at_level("WARNING", logger="tomoclass.train.loop"):
        fit(tiny_cfg(epochs=1), dataset, tmp_path / "a", progress=False)
    warned = [r.getMessage() for r in caplog.records if "best.pt" in r.getMessage()]
    n_val = len(open_dataset(dataset).split_indices("val"))
    assert 0 < n_val < loop.FEW_VAL_BOXES
    assert len(warned) == 1 and f"only {n_val} boxes" in warned[0]
    assert "--checkpoint last" in warned[0]
    caplog.clear()
    monkeypatch.setattr(loop, "FEW_VAL_BOXES", n_val)
    with caplog.at_level("WARNING", logger="tomoclass.train.loop"):
        fit(tiny_cfg(epochs=1), dataset, tmp_path / "b", progress=False)
    assert not [r for r in caplog.records if "best.pt" in r.getMessage()]


def test_without_patience_every_epoch_trains(dataset, tmp_path, monkeypatch):
    _scripted_val_losses(monkeypatch, [1.0, 2.0, 3.0])
    res = fit(tiny_cfg(epochs=3), dataset, tmp_path / "run", progress=False)
    assert not res.stopped_early and res.epochs_done == 3


def test_metrics_lr_is_the_rate_the_epoch_trained_at(dataset, tmp_path):
    """x0.1 after every epoch: epoch 1 trained at the peak and epoch 2 at a tenth of it (the
    log once showed the next epoch's rate, which made an annealed run look stepped early)."""
    cfg = tiny_cfg(epochs=2, warmup_epochs=0.0, lr_step_epochs=1, lr_gamma=0.1)
    fit(cfg, dataset, tmp_path / "run", progress=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in lines] == pytest.approx([cfg.peak_lr, cfg.peak_lr * 0.1])


def test_resume_gives_the_same_weights_as_a_straight_run(dataset, tmp_path):
    fit(tiny_cfg(epochs=2), dataset, tmp_path / "straight", progress=False)
    fit(tiny_cfg(epochs=1), dataset, tmp_path / "split", progress=False)
    fit(tiny_cfg(epochs=2), dataset, tmp_path / "split", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for k in a["model_state"]:
        torch.testing.assert_close(a["model_state"][k], b["model_state"][k], atol=1e-6, rtol=0)
    assert curve(a["history"]) == curve(b["history"])


def test_same_seed_same_curve_other_seed_other_curve(dataset, tmp_path):
    h1 = fit(tiny_cfg(), dataset, tmp_path / "a", progress=False).history
    h2 = fit(tiny_cfg(), dataset, tmp_path / "b", progress=False).history
    h3 = fit(tiny_cfg(seed=4), dataset, tmp_path / "c", progress=False).history
    assert curve(h1) == curve(h2)
    assert curve(h1) != curve(h3)


# -- bad input (through the CLI: exit 2, one line naming the file/field) ------------------
def _cli(capsys, *argv):
    code = main(["train", "--no-progress", *map(str, argv)])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _run_args(ds, out, *extra):
    return ("--data", ds, "--out", out, "--model", TINY_MODEL,
            *tiny_model_args(), "--epochs", 1,
            "--batch-size", 6, "--lr-reference-batch", 6, *extra)


def test_class_without_training_samples_is_refused(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds", n_per_class=(4, 4, 0))
    code, err = _cli(capsys, *_run_args(ds, tmp_path / "run"))
    assert code == 2 and len(err) == 1
    assert "class2 has no training samples" in err[0] and "class_id" in err[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_batch_larger_than_dataset_is_refused(dataset, tmp_path, capsys):
    code, err = _cli(capsys, "--data", dataset, "--out", tmp_path / "run", "--batch-size", 1000)
    assert code == 2 and len(err) == 1 and "batch size 1000" in err[0] and "batch_size" in err[0]


def test_resume_with_other_class_map_or_other_model_is_refused(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert _cli(capsys, *_run_args(dataset, run))[0] == 0
    other = make_dataset(tmp_path / "other", names=["a", "b", "c"])
    code, err = _cli(capsys, *_run_args(other, run, "--epochs", 2, "--resume"))
    assert code == 2 and len(err) == 1 and "class map disagrees" in err[0]
    other_model = "densenet3d" if TINY_MODEL != "densenet3d" else "dilated_densenet3d"
    code, err = _cli(capsys, *_run_args(dataset, run, "--model", other_model, "--resume"))
    assert code == 2 and len(err) == 1
    assert f"is for model '{TINY_MODEL}', not '{other_model}'" in err[0]
    # a fresh run into a directory with checkpoints needs --resume
    code, err = _cli(capsys, *_run_args(dataset, run))
    assert code == 2 and "use --resume" in err[0]


def test_memory_and_disk_estimates_refuse_before_starting(dataset, tmp_path, capsys,
                                                          monkeypatch):
    code, err = _cli(capsys, *_run_args(dataset, tmp_path / "r1", "--max-memory", "1K"))
    assert code == 2 and len(err) == 1 and "memory" in err[0] and "--max-memory" in err[0]
    assert not (tmp_path / "r1").exists()

    real = shutil.disk_usage

    def tiny_disk(path):
        return real(path)._replace(free=1000)

    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    with pytest.raises(ResourceError, match="of disk"):
        fit(tiny_cfg(), dataset, tmp_path / "r2", progress=False)
    assert not (tmp_path / "r2").exists()


# -- untrusted checkpoints ----------------------------------------------------------------
class _Payload:
    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_crafted_to_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    _Payload.marker = marker
    evil = tmp_path / "run" / "checkpoints" / "best.pt"
    evil.parent.mkdir(parents=True)
    torch.save({"format": "tomoclass-checkpoint", "x": _Payload()}, evil, pickle_protocol=2)
    with pytest.raises(InputError, match="refused"):
        load_checkpoint(evil)
    with pytest.raises(InputError, match="refused"):
        load_run(tmp_path / "run")
    assert not marker.exists()
    # a plain pickle file (not a torch zip) with the same payload is refused too
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload(), protocol=2))
    with pytest.raises(InputError):
        load_checkpoint(raw)
    assert not marker.exists()
    # and the payload is live: an unrestricted unpickler would have run it
    pickle.loads(raw.read_bytes())
    assert marker.exists()


def test_truncated_or_foreign_checkpoint_is_refused(dataset, tmp_path):
    fit(tiny_cfg(epochs=1), dataset, tmp_path / "run", progress=False)
    good = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_checkpoint(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(InputError, match="not a tomoclass checkpoint"):
        load_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    ck = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    ck["format_version"] = 99
    torch.save(ck, newer)
    with pytest.raises(InputError, match="newer"):
        load_checkpoint(newer)
