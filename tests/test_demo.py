"""The README's main job (``tomoclass demo``) at smoke size, through the CLI function."""

import json

import pytest
import yaml
from train_support import one_thread

from tomoclass.cli.main import main
from tomoclass.io.outputs import check_output_dir

pytestmark = pytest.mark.slow

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def test_quick_demo_writes_report_figures_and_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dilated_densenet3d (trained here for 1 epochs, not converged): test macro F1" \
        in printed and "report:" in printed
    record = json.loads((out / "demo.json").read_text())
    assert set(record["macro_f1"]) == {"dilated_densenet3d", "densenet3d"}
    assert all(0.0 <= f <= 1.0 for f in record["macro_f1"].values())
    for name in ("report.md", "cam.png", "dataset/clean.npy",
                 "runs/densenet3d/evaluation_test/report.json"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "A short training run" in report and "No shipped demo models" in report
    # the floor beside them, on the same test boxes
    assert "nearest class mean (no training, the floor): test macro F1 = " in printed
    assert 0.0 <= record["baseline"]["macro_f1"] <= 1.0
    assert "## The floor: nearest class mean, no training" in report
    assert (out / "baseline" / "report.json").stat().st_size > 0
    train = yaml.safe_load((out / "runs" / "densenet3d" / "config.yaml").read_text())["train"]
    assert train["lr_step_epochs"] >= train["epochs"]  # no step inside the short run
    # `make demo` reruns with --overwrite: nothing in the folder may count as a foreign file
    check_output_dir(out, "demo", overwrite=True)


@pytest.fixture()
def shipped_tiny(tmp_path, monkeypatch):
    """Tiny nets trained on the quick demo's data (two seeds per model), registered as the
    shipped demo models in a temporary pretrained directory."""
    import dataclasses

    from train_support import TINY_KWARGS

    from tomoclass.cli.demo import quick_config
    from tomoclass.models import pretrained as pretrained_mod
    from tomoclass.models.pretrained import ENV_DIR
    from tomoclass.train import fit, preset
    from tomoclass.train.pretrained import register_run
    from tomoclass.workflows.demo import SHIPPED_PREFIX, simulate_demo_data

    monkeypatch.setenv(ENV_DIR, str(tmp_path / "pretrained"))
    monkeypatch.setattr(pretrained_mod, "PACKAGE_DIR", tmp_path / "no_package_models")
    cfg = dataclasses.replace(quick_config(seed=7))  # other tomograms than the demo's
    (tmp_path / "train").mkdir()
    data = simulate_demo_data(tmp_path / "train", cfg)
    kwargs = {"dilated_densenet3d": TINY_KWARGS,
              "densenet3d": {k: v for k, v in TINY_KWARGS.items() if k != "dilations"}}
    for model, kw in kwargs.items():
        for seed in (0, 1):
            run = tmp_path / "runs" / f"{model}_{seed}"
            fit(preset("default", model=model, model_kwargs=kw, batch_size=8, epochs=1,
                       seed=seed, augment=False, checkpoint_every=1),
                data.dataset, run, progress=False, check_resources=False)
            register_run(run, f"{SHIPPED_PREFIX}-{model}-s{seed}", which="last")
    # a registered name that only looks like one (its model differs) is not a shipped model
    register_run(tmp_path / "runs" / "densenet3d_0", f"{SHIPPED_PREFIX}-shrec_cnn-s0",
                 which="last")
    return cfg


def test_demo_evaluates_shipped_seeds_beside_a_short_run(shipped_tiny, tmp_path, capsys,
                                                         monkeypatch):
    import dataclasses

    from tomoclass.cli import demo as cli_demo
    from tomoclass.workflows.demo import shipped_models

    assert sorted(shipped_models("demo-phantoms")) == [
        ("densenet3d", 0), ("densenet3d", 1), ("dilated_densenet3d", 0),
        ("dilated_densenet3d", 1)]
    quick = dataclasses.replace(shipped_tiny, seed=0, shipped_prefix="demo-phantoms",
                                models=("densenet3d",))
    monkeypatch.setattr(cli_demo, "quick_config", lambda seed=0: quick)
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dilated_densenet3d (shipped, 2 training seeds): test macro F1 = " in printed
    assert "dilated - plain, paired by seed:" in printed
    assert "densenet3d (trained here for 1 epochs, not converged)" in printed
    record = json.loads((out / "demo.json").read_text())
    per_model = record["shipped_summary"]["per_model"]
    assert set(per_model) == {"dilated_densenet3d", "densenet3d"}
    # the summary is the mean of the per-seed evaluations written beside it
    for model, pm in per_model.items():
        f1 = [json.loads((out / "shipped" / f"demo-phantoms-{model}-s{s}" / "report.json")
                         .read_text())["summary"]["macro_f1"] for s in (0, 1)]
        assert pm["macro_f1"]["mean"] == pytest.approx(sum(f1) / 2)
        assert pm["macro_f1"]["n"] == 2
    report = (out / "report.md").read_text()
    assert "Shipped models on these fresh tomograms" in report
    assert "Dilated − plain, paired by seed" in report and "not a ranking" in report
    for name in ("shipped_f1.png", "cam.png"):
        assert (out / name).stat().st_size > 0
    check_output_dir(out, "demo", overwrite=True)


def test_demo_without_shipped_models_says_so(tmp_path, monkeypatch):
    from tomoclass.cli.demo import quick_config
    from tomoclass.errors import InputError
    from tomoclass.models import pretrained as pretrained_mod
    from tomoclass.models.pretrained import ENV_DIR
    from tomoclass.workflows.demo import run_demo

    monkeypatch.setenv(ENV_DIR, str(tmp_path / "empty"))
    monkeypatch.setattr(pretrained_mod, "PACKAGE_DIR", tmp_path / "none")
    import dataclasses
    cfg = dataclasses.replace(quick_config(), shipped_prefix="demo-phantoms", models=())
    with pytest.raises(InputError, match="a model to train or a shipped model"):
        run_demo(tmp_path / "d", cfg)
    assert not (tmp_path / "d").exists()


def test_the_short_run_keeps_the_peak_rate():
    from tomoclass.train.schedule import epoch_lr
    from tomoclass.workflows.demo import DemoConfig, short_run_config

    for epochs in (1, 2, 5):
        tcfg = short_run_config(DemoConfig(epochs=epochs), "densenet3d")
        assert [epoch_lr(tcfg, e) for e in range(1, epochs + 1)] == [tcfg.peak_lr] * epochs
