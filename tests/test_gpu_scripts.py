"""The GPU-machine scripts (benchmarks/gpu_session.sh, gpu_small12.sh) never write into a
folder holding files they did not write: refused with one line and exit 2, before anything is
made (they write fixed names there: results.tgz, session.log, queue, ...)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", f"benchmarks/{script}", *args], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, "WHEELS": "", **env},
                          timeout=60)


def _user_folder(path: Path) -> dict[str, str]:
    path.mkdir()
    files = {"results.tgz": "a user's archive\n", "queue": "a user's list\n"}
    for name, text in files.items():
        (path / name).write_text(text)
    return files


@pytest.mark.parametrize("script", ["gpu_session.sh", "gpu_small12.sh"])
def test_an_out_folder_with_a_users_files_is_refused_and_left_as_it_was(script, tmp_path):
    out = tmp_path / "mine"
    files = _user_folder(out)
    res = _run(script, {"OUT": str(out), "WORK": str(tmp_path / "work")})
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "(OUT)" in err[0]
    assert {p.name: p.read_text() for p in out.iterdir()} == files
    assert not (tmp_path / "work").exists()


def test_a_work_folder_with_a_users_files_is_refused_before_out_is_made(tmp_path):
    work = tmp_path / "mine"
    files = _user_folder(work)
    res = _run("gpu_small12.sh", {"OUT": str(tmp_path / "out"), "WORK": str(work)})
    assert res.returncode == 2 and "(WORK)" in res.stderr
    assert {p.name: p.read_text() for p in work.iterdir()} == files
    assert not (tmp_path / "out").exists()


def test_plan_lists_a_dose_sweep_by_seed_and_writes_nothing(tmp_path):
    """PLAN=1 prints the queue of a call (the documented calibration call here): every dose's
    DenseNet pair seed by seed, so a call cut at its deadline leaves the same seeds at every
    dose; no folder is made."""
    env = {"PLAN": "1", "DOSES": "60 150", "SEEDS_DOSE": "0-2", "SEEDS_DN": "", "SEEDS_SHREC": "",
           "SEEDS_RECIPES": "", "SEEDS_MONAI": "", "RECIPES_RUN": "",
           "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work")}
    res = _run("gpu_small12.sh", env)
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()]
    assert len(rows) == 2 * 2 * 3
    assert rows[:4] == [["small12_h200_dose60", "dose60", "dilated_densenet3d", "0", "-", "60"],
                        ["small12_h200_dose60", "dose60", "densenet3d", "0", "-", "60"],
                        ["small12_h200_dose150", "dose150", "dilated_densenet3d", "0", "-", "150"],
                        ["small12_h200_dose150", "dose150", "densenet3d", "0", "-", "150"]]
    assert [r[3] for r in rows] == ["0"] * 4 + ["1"] * 4 + ["2"] * 4
    assert not list(tmp_path.iterdir())
    # the default call: no dose runs, every line without a dose
    res = _run("gpu_small12.sh",
               {"PLAN": "1", "OUT": str(tmp_path / "o"), "WORK": str(tmp_path / "w")})
    rows = [line.split() for line in res.stdout.splitlines()]
    assert rows and all(r[5] == "-" for r in rows) and not list(tmp_path.iterdir())
    assert sum(r[2] == "dilated_densenet3d" for r in rows) == 10  # SEEDS_DN 0-9
