import os
import stat

import pytest

from tomoclass.io.atomic import atomic_dir, atomic_path
from tomoclass.io.outputs import MARKER


def test_atomic_path_writes_or_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_outputs_are_readable_by_others_under_a_usual_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) & 0o044 == 0o044
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) & 0o055 == 0o055


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "ds"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, overwrite=True) as d:
            (d / "b").write_text("2")
            raise RuntimeError("fail")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    with atomic_dir(target, overwrite=True) as d:
        (d / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
