"""tomoclass.provenance: one git_commit for runs and benchmarks."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from tomoclass.errors import InputError
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result


def test_environment_names_the_commit_of_a_copy_without_git(monkeypatch, tmp_path):
    monkeypatch.setenv("TOMOCLASS_GIT_COMMIT", "abc123-copy")
    assert git_commit() == "abc123-copy"
    assert git_commit(where=tmp_path) == "abc123-copy"
    monkeypatch.delenv("TOMOCLASS_GIT_COMMIT")
    assert git_commit(where=tmp_path) is None  # not a checkout


def test_write_result_writes_json_to_the_results_folder(tmp_path):
    out = write_result("bench", {"x": 1, "machine": machine_info()}, results_dir=tmp_path)
    assert out.parent == tmp_path and out.name.startswith("bench_") and out.suffix == ".json"
    rec = json.loads(out.read_text())
    assert rec["x"] == 1 and rec["machine"]["cores"] >= 1
    assert write_result("ignored", {"y": 2}, tmp_path / "r.json").read_text().strip().startswith(
        "{")


def test_a_result_never_replaces_a_file(tmp_path):
    mine = tmp_path / "my_notes.json"
    mine.write_text("a user's file\n")
    with pytest.raises(InputError, match="never replaces"):
        write_result("bench", {"x": 1}, mine)
    assert mine.read_text() == "a user's file\n"
    # default names: two records in one minute get two files, the first kept
    first = write_result("bench", {"run": 1}, results_dir=tmp_path)
    second = write_result("bench", {"run": 2}, results_dir=tmp_path)
    assert first != second and second.name.startswith(first.stem + "_")
    assert json.loads(first.read_text()) == {"run": 1}
    assert json.loads(second.read_text()) == {"run": 2}


def test_scripts_refuse_an_existing_out_before_any_work(tmp_path, capsys):
    taken = tmp_path / "taken.json"
    taken.write_text("{}\n")
    ap = argparse.ArgumentParser(prog="bench.py")
    ap.add_argument("--out", type=new_result_file)
    assert ap.parse_args(["--out", str(tmp_path / "new.json")]).out == tmp_path / "new.json"
    with pytest.raises(SystemExit) as exc:
        ap.parse_args(["--out", str(taken)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(taken) in err and "never replaces" in err
    assert taken.read_text() == "{}\n"


def test_every_benchmark_out_file_is_checked_when_read():
    """A script that writes with provenance.write_result(..., args.out) reads --out with
    new_result_file, so that an existing file is refused before the work, not after it."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    for script in sorted(bench.glob("*.py")):
        text = script.read_text()
        shared = re.search(r"from tomoclass\.provenance import [^\n]*\bwrite_result\b", text)
        if shared and re.search(r"write_result\([^\n]*args\.out", text):
            assert "type=new_result_file" in text, script.name
