"""Issue 18's small-particle tier: the YAML tier, the resumable driver and time to accuracy.

The end-to-end check runs the ``small12_smoke`` tier (2 tiny tomograms, 32^3 boxes, 2 epochs,
narrow DenseNets) through ``main(argv)`` twice, as two sessions would; it checks the plumbing
(records, skipping finished runs, reusing the data, the aggregate), not F1 values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from bench_support import BENCH, load_script

ROOT = Path(__file__).resolve().parents[1]
CONFIG = BENCH / "configs" / "shrec12.yaml"
DATA = Path(os.environ.get("TOMOCLASS_SHARED_DATA", ROOT / ".." / "shared" / "data"))
realdata = pytest.mark.skipif(not (DATA / "structures" / "pdb").is_dir(),
                              reason=f"shared data absent ({DATA / 'structures' / 'pdb'})")
ISSUE_CLASSES = {"1s3x", "3qm1", "3gl1", "3d2f", "1u6g", "2cg9", "3h84"}  # issue 18, verbatim


def _load(name):
    return load_script(name)


@pytest.fixture(scope="module")
def tier():
    return _load("small_tier")


@pytest.fixture(scope="module")
def tta():
    return _load("time_to_accuracy")


def test_small12_tier_is_the_issue_classes_at_32_with_five_seeds_per_model():
    raw = yaml.safe_load(CONFIG.read_text())
    t = raw["tiers"]["small12"]
    groups = {c["name"]: c["size_group"] for c in raw["classes"]}
    assert ISSUE_CLASSES <= set(t["classes"])
    anchors = set(t["classes"]) - ISSUE_CLASSES
    assert 1 <= len(anchors) <= 2 and {groups[a] for a in anchors} == {"medium"}
    assert t.get("box", raw["extraction"]["box"]) == 32
    assert set(t["seeds"]) == {"shrec_cnn", "densenet3d", "dilated_densenet3d",
                               "monai_densenet121"}
    assert all(len(s) >= 5 for s in t["seeds"].values())
    # no batch of one sample (MONAI's 1^3 last map cannot batch-normalise one sample)
    n_train = t["max_per_class_per_tomogram"] * len(t["classes"]) * len(t["train_tomograms"])
    assert n_train % t["batch_size"] != 1


def test_parse_seeds_and_a_foreign_work_folder(tier, tmp_path):
    import argparse

    assert tier.parse_seeds("0-4,7") == [0, 1, 2, 3, 4, 7]
    assert tier.parse_seeds("3") == [3]
    with pytest.raises(argparse.ArgumentTypeError):
        tier.parse_seeds("a-b")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "mine.txt").write_text("keep")
    from tomoclass.errors import InputError

    with pytest.raises(InputError, match="was not made as a small_tier.py scratch folder"):
        tier.open_work(tmp_path / "w")
    assert (tmp_path / "w" / "mine.txt").read_text() == "keep"
    # a scratch folder of an earlier version (its own marker file) is reused as it is
    (tmp_path / "w" / load_script("tier_data").WORK_MARKER).write_text("")
    assert tier.open_work(tmp_path / "w") == tmp_path / "w"
    assert (tmp_path / "w" / "mine.txt").read_text() == "keep"
    assert tier.open_work(tmp_path / "w") == tmp_path / "w"  # and again, now marked


@realdata  # the tier's benchmark checks its data root on load
def test_a_results_folder_it_did_not_make_is_refused(tier, tmp_path):
    from tomoclass.errors import InputError

    # its fixed names would replace a user's files
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "table.md").write_text("my table")
    bench = tier.load_benchmark(CONFIG, "small12_smoke")
    with pytest.raises(InputError, match="was not made as a small_tier.py results folder"):
        tier.check_protocol(tmp_path / "w", bench, "default", 2)
    assert tier.main(["--tier", "small12_smoke", "--out", str(tmp_path / "w"),
                      "--aggregate-only"]) == 2
    assert (tmp_path / "w" / "table.md").read_text() == "my table"
    assert not (tmp_path / "w" / "protocol.json").exists()


def test_aggregate_only_takes_the_dose_of_the_folders_runs(tier, tmp_path):
    """A dose-sweep folder's aggregate must use that dose's dataset for the baseline row
    (without --dose it used to look for the frozen dose's and silently drop the row)."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "protocol.json").write_text(json.dumps({"data": {"dose": 80.0}}))
    assert tier.results_dose(out, None, 110.0) == 80.0
    assert tier.results_dose(out, 80, 110.0) == 80.0
    with pytest.raises(tier.InputError, match="made at 80 e/A.2, not --dose 150") as exc:
        tier.results_dose(out, 150, 110.0)
    assert exc.value.field == "data.dose" and "protocol.json" in str(exc.value)
    assert tier.results_dose(tmp_path / "none", None, 110.0) == 110.0  # nothing recorded
    assert tier.results_dose(tmp_path / "none", 60, 110.0) == 60.0
    (out / "protocol.json").write_text(json.dumps({"data": {"dose": "lots"}}))
    with pytest.raises(tier.InputError, match="not a number"):
        tier.results_dose(out, None, 110.0)
    (out / "protocol.json").write_text('{"data": {"dose": 8')  # cut short: refused, not
    with pytest.raises(tier.InputError, match="cannot read it as JSON"):  # read as "no dose"
        tier.results_dose(out, 150, 110.0)
    (out / "protocol.json").write_text(json.dumps({"data": {"tier": "small12"}}))
    assert tier.results_dose(out, None, 110.0) == 110.0  # a record from before doses were kept


@realdata
def test_aggregate_only_refuses_a_dose_the_runs_were_not_made_at(tier, tmp_path, capsys):
    """Through main: the contradiction is one line on stderr, exit 2, nothing written."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "protocol.json").write_text(json.dumps({"data": {"dose": 80.0}}))
    rc = tier.main(["--tier", "small12_smoke", "--out", str(out), "--work",
                    str(tmp_path / "w"), "--aggregate-only", "--dose", "150"])
    err = capsys.readouterr().err
    assert rc == 2 and "not --dose 150" in err and not (out / "table.md").exists()


def test_a_checkpoint_of_another_plan_is_not_resumed_under_the_new_protocol(tmp_path):
    """A tier whose schedule changed must not continue the old runs' checkpoints: they
    would train on with the old schedule, recorded under the new protocol."""
    from train_support import TINY_KWARGS, TINY_MODEL, make_dataset

    from tomoclass.train import fit, preset

    td = load_script("tier_data")
    cfg = preset("default", model=TINY_MODEL, model_kwargs=TINY_KWARGS, batch_size=6, epochs=1,
                 checkpoint_every=1, seed=2, lr_step_epochs=4)
    assert not td.resumable(tmp_path / "run", cfg)  # nothing there
    fit(cfg, make_dataset(tmp_path / "ds"), tmp_path / "run", progress=False)
    assert td.resumable(tmp_path / "run", cfg.model_copy(update={"epochs": 3}))  # longer: fine
    with pytest.raises(td.InputError, match=r"another training plan \(differs in lr_step_epochs"):
        td.resumable(tmp_path / "run", cfg.model_copy(update={"lr_step_epochs": 100}))
    with pytest.raises(td.InputError, match="last.pt"):
        td.resumable(tmp_path / "run", cfg.model_copy(update={"seed": 3}))


@realdata
def test_unknown_tier_class_and_mixed_protocols_are_refused(tier, tmp_path, capsys):
    bad = yaml.safe_load(CONFIG.read_text())
    bad["tiers"]["small12"]["classes"] = ["1s3x", "nope"]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    assert tier.main(["--tier", "small12", "--config", str(cfg), "--out", str(tmp_path / "o"),
                      "--aggregate-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope" in err and "tiers.small12.classes" in err and "\n" not in err
    bench = tier.load_benchmark(CONFIG, "small12_smoke")
    tier.check_protocol(tmp_path / "r", bench, "default", 2)
    tier.check_protocol(tmp_path / "r", bench, "default", 2)  # the same: fine
    with pytest.raises(tier.InputError, match="another protocol"):
        tier.check_protocol(tmp_path / "r", bench, "plain", 2)
    # the schedule is part of the protocol (it is not part of the data)
    bench.tier["lr_step_epochs"] = 100
    with pytest.raises(tier.InputError, match=r"another protocol \(differs in train\)"):
        tier.check_protocol(tmp_path / "r", bench, "default", 2)
    bench = tier.load_benchmark(CONFIG, "small12_smoke")
    # a calibration dose is part of the data: its runs cannot join the frozen dose's folder
    bench.dose = 80.0
    with pytest.raises(tier.InputError, match="another protocol.*data"):
        tier.check_protocol(tmp_path / "r", bench, "default", 2)
    assert tier.main(["--tier", "small12_smoke", "--out", str(tmp_path / "o"), "--work",
                      str(tmp_path / "w"), "--dose", "0"]) == 2
    assert "--dose" in capsys.readouterr().err and not (tmp_path / "w").exists()


@realdata
def test_a_folder_recorded_before_a_training_field_existed_keeps_its_protocol(tier, tmp_path):
    """protocol.json of a folder made before TrainConfig gained early_stopping_* lacks those
    keys; those runs trained as the defaults do, so new seeds may join it. A probe that sets
    the field is another protocol."""
    bench = tier.load_benchmark(CONFIG, "small12_smoke")
    tier.check_protocol(tmp_path / "r", bench, "default", 2)
    path = tmp_path / "r" / "protocol.json"
    old = json.loads(path.read_text())
    for k in ("early_stopping_patience", "early_stopping_min_delta"):
        del old["train"][k]
    path.write_text(json.dumps(old))
    tier.check_protocol(tmp_path / "r", bench, "default", 2)  # the same protocol
    assert "early_stopping_patience" not in json.loads(path.read_text())["train"]
    with pytest.raises(tier.InputError, match=r"another protocol \(differs in train\)"):
        tier.check_protocol(tmp_path / "r", bench, "default", 2,
                            {"early_stopping_patience": 3})


@realdata
def test_a_model_train_override_changes_that_model_only_and_the_protocol(tier, tmp_path,
                                                                         capsys):
    """A tier's ``train_overrides`` (SHREC-CNN's rate on small12) is a stated protocol
    deviation: it reaches that model's config only, is recorded in protocol.json, and a folder
    of runs without it refuses runs with it (and the reverse); ``--lr`` is a probe's own
    protocol too."""
    bench = tier.load_benchmark(CONFIG, "small12_smoke")
    base = {m: tier.train_config(bench, m, 0).base_lr for m in ("shrec_cnn", "densenet3d")}
    tier.check_protocol(tmp_path / "r", bench, "default", 2)
    bench.tier["train_overrides"] = {"shrec_cnn": {"base_lr": 5e-4, "lr_reference_batch": 6}}
    shrec = tier.train_config(bench, "shrec_cnn", 0)
    assert (shrec.base_lr, shrec.lr_reference_batch) == (5e-4, 6) != (base["shrec_cnn"], 64)
    assert tier.train_config(bench, "densenet3d", 0).base_lr == base["densenet3d"]
    assert tier.protocol(bench, "default", 2)["train_overrides"] == {
        "shrec_cnn": {"base_lr": 5e-4, "lr_reference_batch": 6}}
    with pytest.raises(tier.InputError, match=r"another protocol \(differs in train_overrides"):
        tier.check_protocol(tmp_path / "r", bench, "default", 2)
    tier.check_protocol(tmp_path / "r2", bench, "default", 2)
    del bench.tier["train_overrides"]
    with pytest.raises(tier.InputError, match=r"differs in train_overrides"):
        tier.check_protocol(tmp_path / "r2", bench, "default", 2)
    # a probe's --lr replaces the rate of every model of the call and is its own protocol
    probe = tier.train_config(bench, "shrec_cnn", 0, overrides={"base_lr": 3e-4,
                                                                "lr_reference_batch": 6})
    assert (probe.base_lr, probe.lr_reference_batch) == (3e-4, 6)
    assert tier.main(["--tier", "small12_smoke", "--out", str(tmp_path / "r"), "--work",
                      str(tmp_path / "w"), "--lr", "3e-4", "--models", "shrec_cnn"]) == 2
    assert "differs in train" in capsys.readouterr().err and not (tmp_path / "w").exists()
    # --set: any training field, read as YAML; an unknown field or a bare word is refused
    assert tier.parse_settings(["batch_size=4", "max_grad_norm=1.0"]) == {
        "batch_size": 4, "max_grad_norm": 1.0}
    for bad, field in ((["bogus_field=1"], "bogus_field"), (["batch_size"], "--set")):
        assert tier.main(["--tier", "small12_smoke", "--out", str(tmp_path / "r3"), "--work",
                          str(tmp_path / "w"), "--models", "shrec_cnn",
                          *[x for b in bad for x in ("--set", b)]]) == 2
        assert field in capsys.readouterr().err
        assert not (tmp_path / "w").exists() and not (tmp_path / "r3").exists()
    # an override for a model the benchmark does not know is refused on load
    bad = yaml.safe_load(CONFIG.read_text())
    bad["tiers"]["small12_smoke"]["train_overrides"] = {"resnet": {"base_lr": 1e-3}}
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    with pytest.raises(tier.InputError, match="train_overrides for unknown model 'resnet'"):
        tier.load_benchmark(cfg, "small12_smoke")

def test_time_to_accuracy_variants(tta, tmp_path):
    if not (DATA / "structures" / "pdb").is_dir():
        pytest.skip("shared data absent")
    bench = tta.load_benchmark(CONFIG, "small12_smoke")
    cfg = tta.variant_config(bench, "plain+batch32+augment", "dilated_densenet3d", 0, 3, "cpu")
    assert (cfg.preset, cfg.batch_size, cfg.peak_lr, cfg.augment) == ("plain", 32, 1e-3, True)
    cfg = tta.variant_config(bench, "default+memory_efficient", "dilated_densenet3d", 0, 3,
                             "cpu")
    assert cfg.model_kwargs["memory_efficient"] and not cfg.augment
    cfg = tta.variant_config(bench, "default+step100", "dilated_densenet3d", 0, 3, "cpu")
    assert cfg.lr_step_epochs == 100 and cfg.bn_recalibration_samples > 0
    assert cfg.warmup_epochs > 0
    cfg = tta.variant_config(bench, "plain+precisebn", "dilated_densenet3d", 0, 3, "cpu")
    assert cfg.bn_recalibration_samples > 0 and cfg.warmup_epochs == 0 and cfg.peak_lr == 1e-3
    cfg = tta.variant_config(bench, "default+nowarmup", "dilated_densenet3d", 0, 3, "cpu")
    assert cfg.warmup_epochs == 0 and cfg.bn_recalibration_samples > 0
    with pytest.raises(tta.InputError, match="fast"):
        tta.variant_config(bench, "plain+fast", "dilated_densenet3d", 0, 3, "cpu")


@pytest.mark.slow
@pytest.mark.realdata
@realdata
def test_smoke_tier_end_to_end_resumes_and_aggregates(tier, tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    models = "dilated_densenet3d,densenet3d"  # MONAI's net: tests/test_models_monai.py
    argv = ["--tier", "small12_smoke", "--out", str(out), "--work", str(work),
            "--models", models, "--seeds", "0"]
    # the data alone first (as the GPU script does before its parallel lanes): the baseline
    # is printed and nothing is written to --out
    assert tier.main(argv[:6] + ["--data-only"]) == 0
    assert "nearest-class-mean baseline macro F1" in capsys.readouterr().out
    assert (work / "dataset").is_dir() and not out.exists()
    stamp = (work / "data.json").stat().st_mtime_ns
    with pytest.raises(SystemExit) as exc:  # one of them at a time (argparse's group)
        tier.main(argv + ["--data-only", "--no-aggregate"])
    assert exc.value.code == 2
    assert "not allowed with argument --data-only" in capsys.readouterr().err
    # records only (lanes sharing one --out): no table or figures yet
    assert tier.main(argv + ["--no-aggregate"]) == 0
    assert not (out / "table.md").exists() and not (out / "summary.json").exists()
    assert (work / "data.json").stat().st_mtime_ns == stamp  # the data reused
    rec = json.loads((out / "runs" / "dilated_densenet3d_seed0.json").read_text())
    assert len(rec["epochs"]) == 2 and rec["epochs"][-1]["val_loss"] > 0
    assert set(rec["convergence"]) >= {"converged", "last_val_loss", "relative_range"}
    assert set(rec["f1"]) == set(tier.load_benchmark(CONFIG, "small12_smoke").names)
    assert rec["wall_seconds_this_session"] > 0 and not rec["resumed"]
    # a second session: finished runs are skipped, a new seed is added, the data reused
    stamp = (work / "data.json").stat().st_mtime_ns
    before = (out / "runs" / "dilated_densenet3d_seed0.json").read_bytes()
    assert tier.main(argv[:6] + ["--models", "dilated_densenet3d,densenet3d",
                                 "--seeds", "0-1"]) == 0
    assert (work / "data.json").stat().st_mtime_ns == stamp
    assert (out / "runs" / "dilated_densenet3d_seed0.json").read_bytes() == before
    summary = json.loads((out / "summary.json").read_text())
    paired = summary["paired"]
    assert paired["macro"]["seeds"] == [0, 1] and set(paired["groups"]) == {
        "tiny", "small", "medium"}
    text = (out / "table.md").read_text()
    assert "paired by seed" in text and "Convergence" in text
    assert summary["baseline"]["n"] == len(tier.load_benchmark(CONFIG, "small12_smoke").names)
    assert "| class_mean_correlation | floor: no training" in text
    for png in ("fig4a.png", "time_f1.png", "curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "dilated - plain macro F1" in capsys.readouterr().out

    # time to accuracy on the same scratch folder (the data reused): a target no run reaches
    tta = _load("time_to_accuracy")
    assert tta.main(["--tier", "small12_smoke", "--out", str(out / "tta"), "--work", str(work),
                     "--target-f1", "1.0", "--max-epochs", "2", "--variants", "plain"]) == 0
    assert (work / "data.json").stat().st_mtime_ns == stamp
    (res,) = (out / "tta").glob("time_to_accuracy_small12_smoke_*.json")
    (v,) = json.loads(res.read_text())["variants"]
    assert v["variant"] == "plain" and v["reached_at_epoch"] is None
    assert [c["epoch"] for c in v["curve"]] == [1, 2] and v["minutes_trained"] > 0
    assert v["train_config"]["warmup_epochs"] == 0 and v["train_config"]["epochs"] == 2
    assert v["complete"] and "flat_at_peak_lr" in v["convergence"]
    # a later session goes on with the same run: epoch 3 only, the curve kept
    assert tta.main(["--tier", "small12_smoke", "--out", str(out / "tta2"), "--work", str(work),
                     "--target-f1", "1.0", "--max-epochs", "3", "--variants", "plain"]) == 0
    (res2,) = (out / "tta2").glob("time_to_accuracy_small12_smoke_*.json")
    (v2,) = json.loads(res2.read_text())["variants"]
    assert [c["epoch"] for c in v2["curve"]] == [1, 2, 3] and v2["curve"][:2] == v["curve"]
    lines = (work / "tta_runs" / "dilated_densenet3d_plain_seed0" / "metrics.jsonl"
             ).read_text().splitlines()
    assert len(lines) == 3  # trained once each, not again from epoch 1
    # a checkpoint whose curve is lost (killed between the two writes) starts over cleanly
    run = work / "tta_runs" / "dilated_densenet3d_plain_seed0"
    (run / "tta_curve.json").unlink()
    assert tta.main(["--tier", "small12_smoke", "--out", str(out / "tta3"), "--work", str(work),
                     "--target-f1", "1.0", "--max-epochs", "1", "--variants", "plain"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert len(json.loads((run / "tta_curve.json").read_text())) == 1
    # the report: the tta record beside the tier run of the same model and seed
    run = out / "runs" / "dilated_densenet3d_seed0.json"
    assert tta.main(["--tier", "small12_smoke", "--out", str(out / "tta"), "--report",
                     "--target-f1", "1.0", "--with-run", str(run)]) == 0
    md = (out / "tta" / "time_to_accuracy_small12_smoke_dilated_densenet3d_seed0.md").read_text()
    assert "| plain | not reached |" in md and "default (tier run, 2 epochs" in md
    other = out / "runs" / "densenet3d_seed0.json"
    assert tta.main(["--tier", "small12_smoke", "--out", str(out / "tta"), "--report",
                     "--target-f1", "1.0", "--with-run", str(other)]) == 2


def test_an_interrupted_training_stops_the_benchmark(monkeypatch, tmp_path):
    """fit returns normally when a signal stops it; the benchmarks must not go on to evaluate
    and record the half-trained run as done (small_tier.py did, writing its run JSON)."""
    from types import SimpleNamespace

    import shrec12

    import tomoclass.train

    calls = []

    def fake_fit(cfg, data, run_dir, **kw):
        calls.append(run_dir)
        return SimpleNamespace(interrupted=stop_with)

    monkeypatch.setattr(tomoclass.train, "fit", fake_fit)
    stop_with = "SIGINT"
    with pytest.raises(SystemExit) as ex:
        shrec12.fit_or_stop(None, tmp_path, tmp_path / "run")
    assert ex.value.code == 130
    stop_with = "SIGTERM"
    with pytest.raises(SystemExit) as ex:
        shrec12.fit_or_stop(None, tmp_path, tmp_path / "run")
    assert ex.value.code == 143
    stop_with = None
    assert shrec12.fit_or_stop(None, tmp_path, tmp_path / "run").interrupted is None
    assert len(calls) == 3


def test_a_monitored_val_tomogram_must_be_declared(tier, tmp_path):
    """``monitor: val`` needs val_tomograms; ``evaluate_checkpoint: best`` needs ``monitor:
    val`` (else the checkpoint would be chosen on the test boxes); other values are refused,
    each naming the tier field."""
    raw = yaml.safe_load(CONFIG.read_text())
    cases = (({"monitor": "val"}, "val_tomograms", "needs val_tomograms"),
             ({"monitor": "train"}, "monitor", "must be test or val"),
             ({"evaluate_checkpoint": "best"}, "evaluate_checkpoint", "needs monitor: val"),
             ({"evaluate_checkpoint": "epoch_002", "monitor": "val", "n_tomograms": 3,
               "val_tomograms": [2]}, "evaluate_checkpoint", "must be last or best"))
    for i, (change, field, words) in enumerate(cases):
        bad = json.loads(json.dumps(raw))
        bad["tiers"]["small12_smoke"].update(change)
        cfg = tmp_path / f"bad{i}.yaml"
        cfg.write_text(yaml.safe_dump(bad))
        with pytest.raises(tier.InputError, match=words) as exc:
            tier.load_benchmark(cfg, "small12_smoke")
        assert f"tiers.small12_smoke.{field}" in str(exc.value)


@realdata  # loading a whole tier needs the structure files
def test_a_val_tier_trains_on_its_val_split(tier):
    tiny = tier.load_benchmark(CONFIG, "tiny3_val")
    assert tiny.monitor == "val" and tier.load_benchmark(CONFIG, "tiny3").monitor == "test"
    assert tier.train_config(tiny, "densenet3d", 0).val_split == "val"
    assert tier.train_config(tier.load_benchmark(CONFIG, "tiny3"), "densenet3d",
                             0).val_split == "test"


@pytest.mark.slow
@pytest.mark.realdata
@realdata
def test_a_val_tomogram_tier_never_monitors_or_chooses_on_the_test_tomogram(tier, tmp_path):
    """With ``monitor: val`` the third tomogram's boxes are the val split, training watches
    them (and may stop early on them), the test tomogram is scored with best.pt, and the
    table says which checkpoint it scored."""
    raw = yaml.safe_load(CONFIG.read_text())
    raw["tiers"]["small12_smoke"].update(n_tomograms=3, val_tomograms=[2], monitor="val",
                                         evaluate_checkpoint="best", epochs=3)
    cfg = tmp_path / "val.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["--tier", "small12_smoke", "--config", str(cfg), "--data-root", str(DATA),
            "--out", str(out), "--work", str(work), "--models", "dilated_densenet3d",
            "--seeds", "0"]
    assert tier.main(argv + ["--no-aggregate", "--set", "early_stopping_patience=1"]) == 0
    store = tier.open_dataset(work / "dataset")
    by_split = store.table.groupby("split")["tomogram"].unique()
    assert [list(by_split[s]) for s in ("train", "val", "test")] == [
        ["tomo_000"], ["tomo_002"], ["tomo_001"]]
    rec = json.loads((out / "runs" / "dilated_densenet3d_seed0.json").read_text())
    assert rec["checkpoint"] == "best" and rec["monitored_split"] == "val"
    assert rec["train_config"]["val_split"] == "val"
    assert rec["train_config"]["early_stopping_patience"] == 1
    run_cfg = yaml.safe_load((work / "runs" / "dilated_densenet3d_seed0" / "config.yaml")
                             .read_text())
    assert run_cfg["data"]["n_val"] == int((store.table["split"] == "val").sum()) > 0
    assert tier.main(argv + ["--aggregate-only", "--set", "early_stopping_patience=1"]) == 0
    assert ("scored with the checkpoint of the best macro F1 on the validation tomograms, "
            "best.pt;") in (out / "table.md").read_text()
