"""tomoclass.provenance: one git_commit for runs and benchmarks."""

from __future__ import annotations

import json

from tomoclass.provenance import git_commit, machine_info, write_result


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
