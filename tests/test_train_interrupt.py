"""Interrupted training: SIGKILL mid-epoch and mid-checkpoint-write leave only complete
checkpoints and --resume continues exactly; SIGINT/SIGTERM stop after writing one."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from test_train import tiny_cfg
from train_support import (
    PY,
    SUBPROCESS_ENV,
    TINY_MODEL,
    make_dataset,
    one_thread,
    runner_prelude,
    tiny_model_args,
)

from tomoclass.cli.main import main
from tomoclass.train import fit, load_checkpoint

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds")


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory):
    """Uninterrupted 3-epoch run: the reference for every resumed one."""
    out = tmp_path_factory.mktemp("straight") / "run"
    fit(tiny_cfg(epochs=3), dataset, out, progress=False)
    return out


def _argv(dataset, out, epochs, *extra):
    cfg = tiny_cfg()
    return ["train", "--no-progress", "--data", str(dataset), "--out", str(out),
            "--model", TINY_MODEL,
            *tiny_model_args(), "--epochs", str(epochs), "--batch-size", str(cfg.batch_size),
            "--lr", str(cfg.base_lr), "--lr-reference-batch", str(cfg.lr_reference_batch),
            "--seed", str(cfg.seed), "--checkpoint-every", "1", "--deterministic",
            "--no-augment", *extra]


def _start(dataset, out, pause, *extra, epochs=3):
    argv = _argv(dataset, out, epochs, *extra)
    code = runner_prelude() + f"from tomoclass.cli.main import main; sys.exit(main({argv!r}))"
    flag = out.parent / f"flag-{time.monotonic_ns()}"
    env = {**os.environ, **SUBPROCESS_ENV, "TOMOCLASS_TEST_PAUSE": f"{pause}@{flag}"}
    proc = subprocess.Popen([PY, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not flag.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out_, err = proc.communicate(timeout=5) if proc.poll() is not None else ("", "")
            proc.kill()
            pytest.fail(f"training never reached {pause}: rc={proc.returncode} {err[-2000:]}")
        time.sleep(0.02)
    return proc, flag


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a)["model_state"], load_checkpoint(b)["model_state"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=0)


def test_sigkill_mid_epoch_mid_write_and_sigterm_then_resume(dataset, straight, tmp_path):
    out = tmp_path / "run"
    ckdir = out / "checkpoints"
    # 1) killed in the middle of epoch 2: epoch 1's checkpoint is the last complete one
    proc, _ = _start(dataset, out, "batch:2:1")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert load_checkpoint(ckdir / "last.pt")["epoch"] == 1
    # 2) resumed, then killed half way through writing epoch 2's last.pt
    proc, _ = _start(dataset, out, "write:last.pt:2", "--resume")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert list(ckdir.glob(".*.tmp")), "the kill should have caught a half-written temporary"
    assert load_checkpoint(ckdir / "last.pt")["epoch"] == 1  # the target is untouched
    # 3) resumed again (cleaning up), then SIGTERM in epoch 3: it finishes the batch, writes
    #    a checkpoint inside the epoch and exits 143 without a traceback
    proc, flag = _start(dataset, out, "batch:3:2", "--resume")
    assert not list(ckdir.glob(".*.tmp"))
    proc.send_signal(signal.SIGTERM)
    flag.unlink()  # let it go on from the pause
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    assert "--resume" in stdout and "Traceback" not in stderr
    ck = load_checkpoint(ckdir / "last.pt")
    assert ck["epoch"] == 2 and ck["epoch_progress"]["batches_done"] == 2
    # 4) the last resume ends exactly where an uninterrupted run ends
    res = fit(tiny_cfg(epochs=3), dataset, out, resume=True, progress=False)
    assert res.epochs_done == 3
    assert not list(ckdir.glob(".*")), "temporary files left behind"
    for p in ckdir.glob("*.pt"):
        load_checkpoint(p)  # every file there is complete
    _same_weights(ckdir / "last.pt", straight / "checkpoints" / "last.pt")
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_sigint_stops_after_writing_a_checkpoint(dataset, straight, tmp_path, monkeypatch,
                                                 capsys):
    """In-process (no interpreter start-up): Ctrl-C during epoch 1 through the CLI."""
    out = tmp_path / "run"
    flag = tmp_path / "flag"
    monkeypatch.setenv("TOMOCLASS_TEST_PAUSE", f"batch:1:1@{flag}")

    def interrupt_when_paused():
        while not flag.exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        flag.unlink()

    t = threading.Thread(target=interrupt_when_paused, daemon=True)
    t.start()
    code = main(_argv(dataset, out, 3))
    t.join(timeout=10)
    assert code == 130
    assert "--resume" in capsys.readouterr().out
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["epoch"] == 0 and ck["epoch_progress"]["batches_done"] == 1
    monkeypatch.delenv("TOMOCLASS_TEST_PAUSE")
    assert main([*_argv(dataset, out, 3), "--resume"]) == 0
    _same_weights(out / "checkpoints" / "last.pt", straight / "checkpoints" / "last.pt")
