"""Never destroy a user's files (issue 17): output folders, run locks, temporaries of killed
jobs, resume plans and non-finite values."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
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
from tomoclass.data import ClassMap, open_dataset, write_dataset
from tomoclass.errors import InputError
from tomoclass.io import write_particles, write_volume
from tomoclass.io.atomic import atomic_dir, atomic_path
from tomoclass.io.lock import LOCK_FILE, acquire, release
from tomoclass.io.outputs import (
    MARKER,
    check_open_dir,
    open_dir,
    output_policy,
    read_marker,
)
from tomoclass.train import checkpoint as ckpt_mod
from tomoclass.train import load_checkpoint
from tomoclass.train.divergence import diverged

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _host_tag() -> str:
    from tomoclass.io.atomic import _host_tag

    return _host_tag()


# -- output folders -----------------------------------------------------------------------
def test_overwrite_replaces_only_an_own_output_of_the_same_kind(tmp_path):
    target = tmp_path / "ds"
    with atomic_dir(target, kind="dataset") as d:
        (d / "a.npy").write_text("1")
        (d / "sub").mkdir()
        (d / "sub" / "b.txt").write_text("2")
    assert read_marker(target)["files"] == ["a.npy", "sub/b.txt"]
    with pytest.raises(InputError, match="pass --overwrite"):
        with atomic_dir(target, kind="dataset"):
            pass
    with pytest.raises(InputError, match="is a tomoclass dataset folder, not an evaluation output"):
        with atomic_dir(target, kind="evaluation", overwrite=True):
            pass
    with atomic_dir(target, kind="dataset", overwrite=True) as d:
        (d / "c.npy").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "c.npy"]
    # a file the user put there blocks replacing; so does an input of the command
    (target / "mine.txt").write_text("mine")
    with pytest.raises(InputError, match="'mine.txt' that tomoclass did not write"):
        with atomic_dir(target, kind="dataset", overwrite=True):
            pass
    (target / "mine.txt").unlink()
    with output_policy(overwrite=True, inputs=[target / "c.npy"]):
        with pytest.raises(InputError, match="an input of this command"):
            with atomic_dir(target, kind="dataset"):
                pass
    assert (target / "c.npy").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_existing_user_folder_file_and_path_under_a_file_are_refused(tmp_path):
    user = tmp_path / "project"
    user.mkdir()
    (user / "notes.txt").write_text("x")
    for target, msg in ((user, "is not a tomoclass output"),
                        (user / "notes.txt", "exists and is not a folder"),
                        (user / "notes.txt" / "sub", "is a file, not a folder")):
        with pytest.raises(InputError, match=msg):
            with atomic_dir(target, kind="dataset", overwrite=True):
                pass
    with pytest.raises(InputError, match="is a folder"):
        with atomic_path(user):
            pass
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]
    # an empty folder is used
    (tmp_path / "empty").mkdir()
    with atomic_dir(tmp_path / "empty", kind="dataset") as d:
        (d / "a").write_text("1")
    assert (tmp_path / "empty" / "a").read_text() == "1"


def test_temporaries_of_a_killed_writer_are_removed_at_the_next_write(tmp_path):
    pid = _dead_pid()
    stale_dir = tmp_path / f".ds.{pid}@{_host_tag()}.abcd1234.tmp"
    stale_dir.mkdir()
    (stale_dir / "subtomograms.npy").write_bytes(b"0" * 100)
    stale_file = tmp_path / f".t.mrc.{pid}@{_host_tag()}.abcd1234.mrc.tmp"
    stale_file.write_bytes(b"0")
    other_host = tmp_path / f".ds.{pid}@elsewhere.abcd1234.tmp"
    other_host.mkdir()
    with atomic_dir(tmp_path / "ds") as d:
        (d / "a").write_text("1")
    with atomic_path(tmp_path / "t.mrc") as t:
        t.write_text("x")
    assert not stale_dir.exists() and not stale_file.exists()
    assert other_host.exists()  # another machine's job may still run: only reported


def test_a_killed_simulation_leaves_nothing_after_the_next_run(tmp_path):
    out = tmp_path / "sim"
    argv = ["-q", "simulate", "subtomograms", "--classes", "globule", "--box-size", "16",
            "--n-per-class", "400", "--out", str(out)]
    code = runner_prelude() + f"from tomoclass.cli.main import main; main({argv!r})"
    proc = subprocess.Popen([PY, "-c", code], env={**os.environ, **SUBPROCESS_ENV},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".sim.*.tmp")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the simulation ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(tmp_path.glob(".sim.*.tmp")) and not out.exists()
    assert main(["-q", "simulate", "subtomograms", "--classes", "globule", "--box-size", "16",
                 "--n-per-class", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]


# -- run folders: lock, resume plan -------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds")


def _train(ds, out, *extra):
    return ["train", "--no-progress", "--data", str(ds), "--out", str(out), *extra]


def _plan(epochs):
    return ["--model", TINY_MODEL, *tiny_model_args(), "--epochs", str(epochs), "--batch-size",
            "6", "--lr", "0.01", "--lr-reference-batch", "6", "--seed", "3", "--deterministic",
            "--no-augment", "--checkpoint-every", "1"]


def test_resume_without_epochs_continues_the_interrupted_plan_bit_identically(
        dataset, tmp_path, capsys, monkeypatch):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(_train(dataset, straight, *_plan(2))) == 0
    real_hook = ckpt_mod.pause_hook

    def ctrl_c_after_epoch_1(event):  # 18 training boxes, batch 6: 3 batches an epoch
        if event == "batch:1:3":
            os.kill(os.getpid(), signal.SIGINT)
        real_hook(event)

    monkeypatch.setattr(ckpt_mod, "pause_hook", ctrl_c_after_epoch_1)
    assert main(_train(dataset, split, *_plan(2))) == 130
    hint = capsys.readouterr().out.strip().splitlines()[-1]
    assert hint.endswith(f"--out {split} --resume") and "--epochs" not in hint
    assert load_checkpoint(split / "checkpoints" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(ckpt_mod, "pause_hook", real_hook)
    # exactly the printed command: no --epochs, no model options (the preset says 30 epochs)
    assert main(_train(dataset, split, "--resume")) == 0
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    assert b["epoch"] == 2 and b["train_config"]["epochs"] == 2
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    # a finished run says so and changes nothing
    capsys.readouterr()
    before = {p: p.read_bytes() for p in split.rglob("*") if p.is_file()}
    assert main(_train(dataset, split, "--resume")) == 0
    assert "already finished its 2 epochs" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in split.rglob("*") if p.is_file()} == before


def test_a_second_train_into_a_running_run_is_refused(dataset, tmp_path, capsys):
    out = tmp_path / "run_conc"
    argv = _train(dataset, out, *_plan(1))
    flag = tmp_path / "flag"
    code = runner_prelude() + f"from tomoclass.cli.main import main; sys.exit(main({argv!r}))"
    env = {**os.environ, **SUBPROCESS_ENV, "TOMOCLASS_TEST_PAUSE": f"batch:1:1@{flag}"}
    proc = subprocess.Popen([PY, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.02)
        lock = json.loads((out / LOCK_FILE).read_text())
        assert lock["pid"] == proc.pid and lock["what"] == "training"
        capsys.readouterr()
        assert main(_train(dataset, out, *_plan(1), "--overwrite")) == 2
        err = capsys.readouterr().err
        assert f"in use by a tomoclass training (PID {proc.pid}" in err
        assert main(["evaluate", "--run", str(out), "--data", str(dataset)]) == 2
        assert "in use by a tomoclass training" in capsys.readouterr().err
    finally:
        flag.unlink(missing_ok=True)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not (out / LOCK_FILE).exists()


def test_stale_lock_and_temporaries_of_a_killed_train_are_cleared(tmp_path, caplog):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    pid = _dead_pid()
    (run / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": os.uname().nodename,
                                             "what": "training"}))
    tmp_cfg = run / f".config.yaml.{pid}@{_host_tag()}.abcd1234.yaml.tmp"
    tmp_cfg.write_text("half")
    tmp_ck = run / "checkpoints" / ".last.pt.x1y2z3w4.pt.tmp"  # an older tomoclass's name
    tmp_ck.write_bytes(b"half")
    from tomoclass.io.lock import folder_lock

    with folder_lock(run, "training"):
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(InputError, match="in use by a tomoclass training"):
            acquire(run, "evaluation")
    assert not tmp_cfg.exists() and not tmp_ck.exists() and not (run / LOCK_FILE).exists()
    release(run)  # not held: nothing happens


def test_overwrite_replaces_a_previous_run_but_not_a_foreign_file(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train(dataset, run, *_plan(1))) == 0
    first = (run / "checkpoints" / "last.pt").read_bytes()
    (run / "my_plot.png").write_bytes(b"png")
    assert main(_train(dataset, run, *_plan(1), "--overwrite")) == 2
    assert "'my_plot.png' that tomoclass did not write" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.pt").read_bytes() == first
    (run / "my_plot.png").unlink()
    assert main(["evaluate", "--run", str(run), "--data", str(dataset), "--split", "val",
                 "--no-cam"]) == 0
    (run / "evaluation_val" / "notes.txt").write_text("mine")
    assert main(_train(dataset, run, *_plan(1), "--overwrite")) == 2
    assert "'evaluation_val/notes.txt' that tomoclass did not" in capsys.readouterr().err
    (run / "evaluation_val" / "notes.txt").unlink()
    assert main(_train(dataset, run, *_plan(1), "--overwrite", "--seed", "4")) == 0
    assert not (run / "evaluation_val").exists()  # the previous run's own evaluation went too
    assert (run / "checkpoints" / "last.pt").read_bytes() != first


# -- non-finite values --------------------------------------------------------------------
def test_extraction_skips_non_finite_boxes_by_option_and_names_them(tmp_path, caplog):
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((24, 24, 24)).astype(np.float32)
    vol[2:8, 2:8, 2:8] = 1e37  # overflows float32 in the box's z-score
    write_volume(tmp_path / "t.mrc", vol, 10.0)
    table = pd.DataFrame({"tomogram": "t", "x": [5.0, 16.0], "y": [5.0, 16.0],
                          "z": [5.0, 16.0], "class_name": ["a", "a"]})
    write_particles(tmp_path / "t.star", table, format="star")
    base = ["extract", "--tomograms", str(tmp_path / "t.mrc"), "--tables",
            str(tmp_path / "t.star"), "--box", "8", "--test-tomograms", ""]
    assert main([*base, "--out", str(tmp_path / "ds")]) == 2
    assert not (tmp_path / "ds").exists()
    assert main([*base, "--out", str(tmp_path / "ds"), "--nonfinite", "skip"]) == 0
    assert "x 5, y 5, z 5" in caplog.text and "overflow float32" in caplog.text
    store = open_dataset(tmp_path / "ds")
    assert len(store) == 1 and store.meta["finite_check"]["nonfinite_rows"] == []


def test_the_store_records_non_finite_rows_and_notices_an_edited_array(tmp_path):
    vols = np.zeros((3, 4, 4, 4), np.float32)
    vols[1, 0, 0, 0] = np.inf
    table = pd.DataFrame({"tomogram": "t", "x": 1.0, "y": 2.0, "z": [0.0, 1.0, 2.0],
                          "class_name": "a"})
    with pytest.raises(InputError, match="NaN/inf values, first of t at x 1, y 2, z 1"):
        write_dataset(tmp_path / "refused", vols, table, ClassMap(["a"], [""]), 10.0)
    assert not (tmp_path / "refused").exists()
    from tomoclass.data.finite import nonfinite_rows
    from tomoclass.data.store import DatasetWriter

    with DatasetWriter(tmp_path / "ds", box=4, class_map=ClassMap(["a"], [""]),
                       voxel_size_angstrom=10.0, record_nonfinite=True) as w:
        w.append(vols, table)
    store = open_dataset(tmp_path / "ds")
    assert store.meta["finite_check"]["nonfinite_rows"] == [1]
    assert nonfinite_rows(store).tolist() == [1]
    arr = np.load(tmp_path / "ds" / "subtomograms.npy", mmap_mode="r+")
    arr[2, 0, 0, 0] = np.nan
    arr.flush()
    del arr
    os.utime(tmp_path / "ds" / "subtomograms.npy", ns=(1, 1))
    assert nonfinite_rows(open_dataset(tmp_path / "ds")).tolist() == [1, 2]


def test_divergence_names_the_data_or_the_learning_rate():
    finite = torch.zeros(2, 1, 4, 4, 4)
    assert "lower the learning rate" in str(diverged(float("nan"), finite, 3, 7, 0.1, None))
    bad = finite.clone()
    bad[1, 0, 0, 0, 0] = float("nan")
    msg = str(diverged(float("nan"), bad, 3, 7, 0.1, Path("ds")))
    assert "1 input subtomogram of ds hold NaN/inf" in msg and "--lr" not in msg


def test_an_output_written_before_markers_counts_as_its_kind(tmp_path):
    old = tmp_path / "evaluation_test"  # an evaluation of an older tomoclass: no marker
    old.mkdir()
    for name in ("report.json", "report.md", "confusion.csv"):
        (old / name).write_text("{}")
    with pytest.raises(InputError, match="is a tomoclass evaluation folder"):
        with atomic_dir(old, kind="dataset", overwrite=True):
            pass
    with atomic_dir(old, kind="evaluation", overwrite=True) as d:
        (d / "report.json").write_text("new")
    assert sorted(p.name for p in old.iterdir()) == [MARKER, "report.json"]
    (old / "notes.txt").write_text("mine")  # with a user file it is no output of ours
    old.joinpath(MARKER).unlink()
    with pytest.raises(InputError, match="is not a tomoclass output"):
        with atomic_dir(old, kind="evaluation", overwrite=True):
            pass


def test_a_user_file_inside_a_sub_output_or_a_link_blocks_overwrite(tmp_path):
    run = tmp_path / "run"
    with atomic_dir(run, kind="comparison") as d:
        (d / "compare.json").write_text("{}")
    with atomic_dir(run / "inner", kind="evaluation") as d:  # an output put inside later
        (d / "report.json").write_text("{}")
    with pytest.raises(InputError, match="'inner/' that tomoclass did not write"):
        with atomic_dir(run, kind="comparison", overwrite=True):
            pass
    import shutil

    shutil.rmtree(run / "inner")
    (tmp_path / "elsewhere").mkdir()
    (run / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="'link' that tomoclass did not write"):
        with atomic_dir(run, kind="comparison", overwrite=True):
            pass
    (run / "link").unlink()
    with atomic_dir(run, kind="comparison", overwrite=True) as d:
        (d / "compare.json").write_text("new")
    assert sorted(p.name for p in run.iterdir()) == [MARKER, "compare.json"]
    assert (tmp_path / "elsewhere").is_dir()


def test_a_folder_written_in_place_is_claimed_and_replaced_as_a_whole(tmp_path):
    from tomoclass.io.outputs import claim_dir

    maps = tmp_path / "maps"  # as locate with several tomograms and --score-maps writes it

    def write(value):
        with claim_dir(maps, "score-maps", patterns=("*/*",)):
            for stem in ("t1", "t2"):
                with atomic_dir(maps / stem, kind="score-maps") as d:
                    (d / "a.mrc").write_text(value)

    write("1")
    assert read_marker(maps)["files"] == ["t1/a.mrc", "t2/a.mrc"]
    with pytest.raises(InputError, match="pass --overwrite"):
        write("2")
    with output_policy(overwrite=True):
        write("2")
    assert (maps / "t2" / "a.mrc").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps"]
    # a failure before anything was written leaves no folder behind
    with pytest.raises(RuntimeError):
        with claim_dir(tmp_path / "new", "score-maps", patterns=()):
            raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()


def test_a_folder_runs_add_to_is_made_reused_and_never_emptied(tmp_path):
    """open_dir: a results or scratch folder that successive calls fill. New or empty: made
    and marked; the same kind: used as it is (a user's README beside the results stays);
    another kind or an unmarked folder with files: refused, untouched; a legacy folder (an
    older writer's own file) is adopted."""
    out = open_dir(tmp_path / "a" / "res", "bench results", patterns=("runs/*.json",))
    assert read_marker(out) == {"format": 1, "kind": "bench results", "files": [],
                                "patterns": ["runs/*.json"]}
    (out / "runs").mkdir()
    (out / "runs" / "m_seed0.json").write_text("{}")
    (out / "README.md").write_text("my notes")
    assert check_open_dir(out, "bench results")
    assert open_dir(out, "bench results", patterns=("runs/*.json",)) == out
    assert (out / "README.md").read_text() == "my notes"
    assert (out / "runs" / "m_seed0.json").exists()
    with pytest.raises(InputError, match="is a tomoclass bench results folder, not a scratch"):
        open_dir(out, "scratch", patterns=("*",))
    (tmp_path / "empty").mkdir()
    assert not check_open_dir(tmp_path / "empty", "bench results")
    open_dir(tmp_path / "empty", "bench results", patterns=())
    assert read_marker(tmp_path / "empty")["kind"] == "bench results"

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "table.md").write_text("a user's table")
    with pytest.raises(InputError) as exc:
        open_dir(mine, "bench results", patterns=("table.md",), option="--work")
    msg = str(exc.value)
    assert "mine" in msg and "--work" in msg and "'table.md'" in msg and "1 entry" in msg
    assert "\n" not in msg and sorted(p.name for p in mine.iterdir()) == ["table.md"]
    # an older version of the writer left its own file: adopted, marked, nothing removed
    (mine / ".old_marker").write_text("")
    open_dir(mine, "bench results", patterns=("table.md",),
             legacy=lambda folder: (folder / ".old_marker").is_file())
    assert read_marker(mine)["kind"] == "bench results"
    assert (mine / "table.md").read_text() == "a user's table"
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_open_dir(tmp_path / "f", "bench results")
    with pytest.raises(InputError, match="is a file"):
        open_dir(tmp_path / "f" / "sub", "bench results", patterns=())
