"""A small project folder of inputs (tomogram, table, dataset, runs) and broken variants of
each, for the bad-input suite (tests/test_bad_inputs.py) and the output-safety tests."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import torch
from test_train import tiny_cfg
from train_support import make_dataset

from tomoclass.io import write_particles, write_volume
from tomoclass.train import fit
from tomoclass.train.checkpoint import load_checkpoint, save_checkpoint

SHAPE = (24, 24, 24)


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha1 of every file (and '<dir>' for every folder) under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "<dir>" if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def _mrc(path: Path, data: np.ndarray, voxel=(10.0, 10.0, 10.0), stack: bool = False) -> Path:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        if stack:
            m.set_image_stack()
        m.voxel_size = voxel
    return path


def make_project(root: Path) -> Path:
    """Write the project: good inputs, then one broken variant per case under ``bad/``."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    vol = rng.standard_normal(SHAPE).astype(np.float32)
    write_volume(root / "tomo.mrc", vol, 10.0)
    table = pd.DataFrame({"tomogram": "tomo", "x": [6.0, 12.0, 17.0, 8.0],
                          "y": [6.0, 12.0, 17.0, 15.0], "z": [6.0, 12.0, 17.0, 10.0],
                          "class_name": ["a", "b", "a", "b"]})
    write_particles(root / "tomo.star", table, format="star")
    table.to_csv(root / "tomo.csv", index=False)
    (root / "notes.txt").write_text("my notes\n")
    ds = make_dataset(root / "ds")
    fit(tiny_cfg(epochs=1), ds, root / "runA", progress=False)
    bad = root / "bad"
    bad.mkdir()
    _bad_volumes(bad, vol)
    _bad_tables(bad, table)
    _bad_configs(bad)
    _bad_datasets(bad, ds)
    _bad_runs(bad, root / "runA")
    return root


def _bad_volumes(bad: Path, vol: np.ndarray) -> None:
    good = (bad.parent / "tomo.mrc").read_bytes()
    (bad / "truncated.mrc").write_bytes(good[:2000])
    (bad / "trailing.mrc").write_bytes(good + b"\0" * 100)
    (bad / "gzipped.mrc").write_bytes(gzip.compress(good))
    (bad / "folder.mrc").mkdir()
    (bad / "empty.mrc").write_bytes(b"")
    (bad / "garbage.mrc").write_bytes(np.random.default_rng(1).bytes(3000))
    _mrc(bad / "stack.mrcs", vol[:5].copy(), stack=True)
    _mrc(bad / "image2d.mrc", vol[0].copy())
    _mrc(bad / "complex.mrc", vol.astype(np.complex64))
    _mrc(bad / "voxel0.mrc", vol, voxel=(0.0, 0.0, 0.0))
    _mrc(bad / "aniso.mrc", vol, voxel=(10.0, 10.0, 20.0))
    _mrc(bad / "absurd_voxel.mrc", vol, voxel=(5000.0, 5000.0, 5000.0))
    nan = vol.copy()
    nan[12, 12, 12] = np.nan
    write_volume(bad / "nan.mrc", nan, 10.0)
    write_volume(bad / "huge.mrc", (vol * 1e37).astype(np.float32), 10.0)
    write_volume(bad / "constant.mrc", np.ones(SHAPE, np.float32), 10.0)


def _bad_tables(bad: Path, table: pd.DataFrame) -> None:
    (bad / "empty.star").write_text("")
    (bad / "noblock.star").write_text("# just a comment\n")
    table.drop(columns=["z"]).to_csv(bad / "noz.csv", index=False)
    t = table.astype({"x": object})
    t.loc[1, "x"] = "abc"
    t.to_csv(bad / "textcoord.csv", index=False)
    t = table.copy()
    t.loc[2, "y"] = np.nan
    t.to_csv(bad / "nancoord.csv", index=False)
    t = table.copy()
    t.loc[0, "x"] = 500.0
    t.to_csv(bad / "outside.csv", index=False)
    t = table.copy()
    t["x"] = 1e308
    t.to_csv(bad / "huge.csv", index=False)
    pd.concat([table, table.iloc[:1]]).to_csv(bad / "dups.csv", index=False)
    (bad / "binary.star").write_bytes(b"\x00\xff\xfe" * 200)
    table.assign(class_name="zzz").to_csv(bad / "unknownclass.csv", index=False)


def _bad_configs(bad: Path) -> None:
    (bad / "notyaml.yaml").write_text("a: [1, 2\n  b: }\n")
    (bad / "unknown_key.yaml").write_text("no_such_option: 3\n")
    (bad / "python_tag.yaml").write_text("seed: !!python/object/apply:os.system ['true']\n")
    (bad / "list.yaml").write_text("- 1\n- 2\n")
    (bad / "train_negative.yaml").write_text("epochs: -3\n")
    (bad / "train_unknown.yaml").write_text("learning_speed: 3\n")
    (bad / "train_badtype.yaml").write_text("batch_size: many\n")


def _bad_datasets(bad: Path, ds: Path) -> None:
    shutil.copytree(ds, bad / "ds_nan")
    arr = np.load(bad / "ds_nan" / "subtomograms.npy", mmap_mode="r+")
    arr[2, 1, 1, 1] = np.nan  # edited after writing: the record no longer matches the file
    arr.flush()
    del arr
    shutil.copytree(ds, bad / "ds_nometa")
    (bad / "ds_nometa" / "dataset.yaml").unlink()
    shutil.copytree(ds, bad / "ds_version")
    text = (bad / "ds_version" / "dataset.yaml").read_text()
    (bad / "ds_version" / "dataset.yaml").write_text(
        text.replace("format_version: 1", "format_version: 99"))
    shutil.copytree(ds, bad / "ds_rows")
    np.save(bad / "ds_rows" / "subtomograms.npy",
            np.zeros((3, 12, 12, 12), dtype=np.float32))
    shutil.copytree(ds, bad / "ds_foreign")
    (bad / "ds_foreign" / "mynotes.txt").write_text("mine\n")


def _bad_runs(bad: Path, run: Path) -> None:
    shutil.copytree(run, bad / "run_nan")
    ck = load_checkpoint(run / "checkpoints" / "best.pt")
    first = next(k for k, v in ck["model_state"].items() if v.is_floating_point())
    ck["model_state"][first] = torch.full_like(ck["model_state"][first], float("nan"))
    for name in ("best.pt", "last.pt"):
        save_checkpoint(bad / "run_nan" / "checkpoints" / name, ck)
    shutil.copytree(run, bad / "run_truncated")
    p = bad / "run_truncated" / "checkpoints" / "best.pt"
    p.write_bytes(p.read_bytes()[:500])
    shutil.copytree(run, bad / "run_foreign")
    torch.save({"weights": torch.zeros(3)}, bad / "run_foreign" / "checkpoints" / "best.pt")
    shutil.copytree(run, bad / "run_pickle")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "tomoclass-checkpoint", "x": Evil()},
               bad / "run_pickle" / "checkpoints" / "best.pt")
    shutil.copytree(run, bad / "run_locked")
    import json
    import os
    import socket

    (bad / "run_locked" / ".tomoclass.lock").write_text(json.dumps(
        {"pid": os.getppid(), "host": socket.gethostname() or "localhost", "what": "training",
         "started": "2026-01-01T00:00:00+00:00"}))
