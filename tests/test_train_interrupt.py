"""Interrupted training: SIGKILL mid-epoch and mid-checkpoint-write leave only complete
checkpoints and --resume continues exactly; SIGINT/SIGTERM stop after writing one."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from test_train import tiny_cfg
from test_train_support import (
    PY,
    SUBPROCESS_ENV,
    TINY_MODEL,
    make_dataset,
    one_thread,
    runner_prelude,
    tiny_model_args,
)

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


def _start(dataset, out, pause, *extra, epochs=3):
    cfg = tiny_cfg()
    argv = ["train", "--no-progress", "--data", str(dataset), "--out", str(out),
            "--model", TINY_MODEL,
            *tiny_model_args(), "--epochs", str(epochs), "--batch-size", str(cfg.batch_size),
            "--lr", str(cfg.base_lr), "--lr-reference-batch", str(cfg.lr_reference_batch),
            "--seed", str(cfg.seed), "--checkpoint-every", "1", "--deterministic",
            "--no-augment", *extra]
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


def test_sigkill_mid_epoch_and_mid_write_then_resume(dataset, straight, tmp_path):
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
    leftovers = list(ckdir.glob(".*.tmp"))
    assert leftovers, "the kill should have caught a half-written temporary file"
    assert load_checkpoint(ckdir / "last.pt")["epoch"] == 1  # target untouched
    # 3) resume continues from the last complete checkpoint, cleans up, and ends where an
    #    uninterrupted run ends
    res = fit(tiny_cfg(epochs=3), dataset, out, resume=True, progress=False)
    assert res.epochs_done == 3
    assert not list(ckdir.glob(".*")), "temporary files left behind"
    for p in ckdir.glob("*.pt"):
        load_checkpoint(p)  # every file there is complete
    _same_weights(ckdir / "last.pt", straight / "checkpoints" / "last.pt")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_sigterm_stop_after_writing_a_checkpoint(dataset, straight, tmp_path, sig, code):
    out = tmp_path / "run"
    proc, flag = _start(dataset, out, "batch:2:2")
    proc.send_signal(sig)
    flag.unlink()  # let it finish the batch it is in
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr[-2000:]
    assert "--resume" in stdout and "Traceback" not in stderr
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["epoch"] == 1 and ck["epoch_progress"]["batches_done"] == 2
    assert not list((out / "checkpoints").glob(".*"))
    # resuming inside the interrupted epoch reproduces the uninterrupted run
    fit(tiny_cfg(epochs=3), dataset, out, resume=True, progress=False)
    _same_weights(out / "checkpoints" / "last.pt", straight / "checkpoints" / "last.pt")
