"""train/resume.py: one resume rule for the library and the CLI (the run's own plan)."""

from __future__ import annotations

import pytest
from train_support import TINY_KWARGS, TINY_MODEL, make_dataset, one_thread

from tomoclass.cli.main import main
from tomoclass.train import fit, preset
from tomoclass.train.options import config_from_options
from tomoclass.train.resume import resumed_config

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def _cfg(**kw):
    base = dict(model=TINY_MODEL, model_kwargs=TINY_KWARGS, batch_size=6, epochs=1,
                base_lr=1e-2, lr_reference_batch=6, checkpoint_every=0, augment=False, seed=3)
    return preset("default", **{**base, **kw})


def test_resumed_config_is_the_runs_own_with_epochs_only_raised():
    saved = _cfg(epochs=5)
    assert resumed_config(saved, None) == saved
    assert resumed_config(saved, _cfg(epochs=2)).epochs == 5  # never fewer
    longer = resumed_config(saved, preset("paper", epochs=8, base_lr=0.5))
    assert longer.epochs == 8 and longer.base_lr == saved.base_lr  # only epochs changes


def test_library_and_cli_resume_without_epochs_continue_the_runs_plan(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    fit(_cfg(epochs=1), ds, run, progress=False)
    # the library, asking for nothing: the run's own plan (1 epoch), not a preset's 30
    res = fit(None, ds, run, resume=True, progress=False)
    assert res.already_finished and res.epochs_done == 1
    # the CLI builds the same configuration through the same library function
    cfg = config_from_options(resume=True, run_dir=run)
    assert (cfg.model, cfg.epochs) == (TINY_MODEL, 1)
    assert main(["train", "--no-progress", "--data", str(ds), "--out", str(run),
                 "--resume"]) == 0
    assert "already finished its 1 epochs" in capsys.readouterr().out


def test_fit_without_config_needs_resume(tmp_path):
    with pytest.raises(TypeError, match="resume"):
        fit(None, tmp_path / "ds", tmp_path / "run")
