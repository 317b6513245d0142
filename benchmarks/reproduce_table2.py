"""Reproduce Gao et al. 2020, Table 2 / Fig. 4 / Fig. 5 on the SHREC-like ``shrec12`` benchmark.

    python benchmarks/reproduce_table2.py --tier cpu|gpu|smoke --out DIR
        [--data-root ../shared/data] [--work SCRATCH] [--config benchmarks/configs/shrec12.yaml]
        [--calibrate] [--device auto]

The benchmark (``benchmarks/configs/shrec12.yaml``) builds SHREC-like tomograms from the 12 real
structures of ``shared/data/structures/pdb`` and runs the paper's experiment with the public
tomoclass API, in the order of :mod:`tomoclass.demo`:

1. ``load_class_templates`` once per run (7p6z, a ribosome, is the slowest: ~2 s);
2. ``simulate_tomograms``-equivalent, one tomogram per process when the tier allows
   (``simulate_tomogram(templates, cfg, index=i)`` + ``write_tomogram``: identical output for
   any number of processes, tomogram ``i`` draws from the stream ``[seed, i]``);
3. ``extract_dataset`` at the ground-truth positions with the noise-free density as
   ``clean.npy`` (for the CAM score), split by tomogram;
4. ``fit`` of shrec_cnn, densenet3d and dilated_densenet3d (train module ``default`` preset =
   the paper's protocol with the working lr) for every seed of the tier;
5. ``evaluate_run`` of each run's final checkpoint on the test tomogram;
6. Table 2 (ours beside the paper's), size-group means (Fig. 4A), F1 against epoch at the
   checkpoint interval (Fig. 4B), the CAM figure (Fig. 5) and CAM scores, and one JSON of
   every number.

``--out DIR`` receives only small files (``results.json``, ``table2.md``, ``fig4a.png``,
``fig4b.png``, ``fig5_cam.png``, ``compare_seed0/``); tomograms, datasets and runs go to the
scratch folder ``--work`` (default ``<tmp>/tomoclass_table2_<tier>``), which is replaced.

``--calibrate`` runs the noise calibration instead: the tier's tomograms at every dose of
``calibration.sweep_dose_e_per_angstrom2``, shrec_cnn trained for the tier's
``calibration_epochs``, the dose whose test macro F1 is nearest the paper's SHREC-CNN mean
chosen; writes ``DIR/calibration.json`` and prints the value to freeze in the YAML (the YAML is
not changed by the script).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    try:
        import tomoclass  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))

if str(ROOT / "benchmarks") not in sys.path:  # provenance, shrec12_locate beside this file
    sys.path.insert(0, str(ROOT / "benchmarks"))

import yaml  # noqa: E402
from provenance import git_commit  # noqa: E402

from tomoclass.errors import InputError, TomoclassError  # noqa: E402

log = logging.getLogger("reproduce_table2")

DEFAULT_CONFIG = ROOT / "benchmarks" / "configs" / "shrec12.yaml"
MODELS = ("shrec_cnn", "densenet3d", "dilated_densenet3d")
GROUPS = ("tiny", "small", "medium", "large")
#: Marker file that lets the script replace a scratch folder it made itself.
WORK_MARKER = ".tomoclass_table2_work"
TIER_KEYS = {"reduces", "n_tomograms", "shape_zyx", "n_particles", "train_tomograms",
             "test_tomograms", "epochs", "batch_size", "checkpoint_every", "seeds",
             "sim_processes", "parallel_runs", "num_workers", "eval_batch_size",
             "calibration_epochs", "cam_particles", "model_kwargs", "box",
             "calibration_sweep_dose_e_per_angstrom2", "border",
             "max_per_class_per_tomogram", "lr_step_epochs", "locate_stride",
             "val_tomograms"}


# -- the benchmark definition ------------------------------------------------------------------
@dataclass
class Benchmark:
    """The parsed benchmark YAML for one tier, with structure paths resolved.

    Attributes
    ----------
    raw
        The whole YAML mapping.
    tier_name, tier
        The chosen tier and its settings.
    data_root
        Folder the structure paths are relative to.
    names, size_groups, structures, paper_names
        Per class, in Table 2 order.
    box
        Subtomogram edge (voxels): the tier's ``box`` or ``extraction.box``.
    dose
        Frozen total dose per tilt series (e/Å²).
    """

    raw: dict[str, Any]
    tier_name: str
    tier: dict[str, Any]
    data_root: Path
    config_path: Path
    names: list[str] = field(default_factory=list)
    size_groups: list[str] = field(default_factory=list)
    structures: list[Path] = field(default_factory=list)
    paper_names: list[str] = field(default_factory=list)
    box: int = 32
    dose: float = 110.0

    @property
    def calibration(self) -> dict[str, Any]:
        return dict(self.raw.get("calibration") or {})

    def seeds(self, model: str) -> list[int]:
        return [int(s) for s in (self.tier.get("seeds") or {}).get(model, [])]

    def model_kwargs(self, model: str) -> dict[str, Any]:
        return dict((self.tier.get("model_kwargs") or {}).get(model, {}) or {})

    def paper_f1(self) -> dict[str, dict[str, float]]:
        """Paper's F1 per model, keyed by our class names (stand-ins mapped)."""
        pt = self.raw["paper_table2"]
        cols = list(pt["columns"])
        out = {}
        for m in MODELS:
            vals = dict(zip(cols, pt[m], strict=True))
            out[m] = {n: float(vals[p]) for n, p in zip(self.names, self.paper_names, strict=True)}
        return out


def _need(mapping: dict, key: str, path: Path, where: str = "") -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise InputError("missing key", path=path, field=f"{where}{key}")
    return mapping[key]


def default_data_root(raw: dict[str, Any]) -> Path:
    """``$TOMOCLASS_SHARED_DATA`` if set, else ``data_root_default`` of the YAML relative to
    the repository root (``../shared/data``)."""
    env = os.environ.get("TOMOCLASS_SHARED_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (ROOT / str(raw.get("data_root_default", "../shared/data"))).resolve()


def load_benchmark(config: str | Path, tier: str, data_root: str | Path | None = None
                   ) -> Benchmark:
    """Read and check the benchmark YAML for one tier.

    Raises
    ------
    InputError
        Unreadable YAML, unknown tier, a missing data root or structure file (named), size
        groups outside tiny/small/medium/large, or seeds for an unknown model.
    """
    path = Path(config)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read benchmark config ({exc.strerror})", path=path) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {str(exc).splitlines()[0]}", path=path) from None
    if not isinstance(raw, dict):
        raise InputError("benchmark config must be a YAML mapping", path=path)
    tiers = _need(raw, "tiers", path)
    if tier not in tiers:
        raise InputError(f"unknown tier {tier!r} (known: {', '.join(tiers)})", path=path,
                         field="tiers")
    t = dict(tiers[tier])
    unknown = set(t) - TIER_KEYS
    if unknown:
        raise InputError(f"unknown tier keys {sorted(unknown)}", path=path, field=f"tiers.{tier}")
    for k in ("n_tomograms", "shape_zyx", "n_particles", "train_tomograms", "test_tomograms",
              "epochs", "batch_size", "seeds"):
        _need(t, k, path, f"tiers.{tier}.")
    split_ids = (list(t["train_tomograms"]) + list(t["test_tomograms"])
                 + list(t.get("val_tomograms") or []))
    if sorted(set(split_ids)) != sorted(split_ids) or not all(
            0 <= int(i) < int(t["n_tomograms"]) for i in split_ids):
        raise InputError("train/val/test tomograms must be distinct indices below n_tomograms",
                         path=path, field=f"tiers.{tier}")
    for m in (t["seeds"] or {}):
        if m not in MODELS:
            raise InputError(f"seeds for unknown model {m!r} (known: {', '.join(MODELS)})",
                             path=path, field=f"tiers.{tier}.seeds")
    root = Path(data_root).expanduser().resolve() if data_root else default_data_root(raw)
    if not root.is_dir():
        raise InputError("data root not found: it must hold structures/pdb (the shared data "
                         "folder); pass --data-root", path=root, field="data_root")
    bench = Benchmark(raw=raw, tier_name=tier, tier=t, data_root=root, config_path=path)
    for i, c in enumerate(_need(raw, "classes", path)):
        name = str(_need(c, "name", path, f"classes[{i}]."))
        group = str(_need(c, "size_group", path, f"classes[{i}]."))
        if group not in GROUPS:
            raise InputError(f"size group {group!r} is not one of {GROUPS}", path=path,
                             field=f"classes[{i}].size_group")
        struct = root / str(_need(c, "structure", path, f"classes[{i}]."))
        if not struct.is_file():
            raise InputError(f"structure file of class {name} not found under the data root "
                             f"{root}", path=struct, field=f"classes[{i}].structure")
        bench.names.append(name)
        bench.size_groups.append(group)
        bench.structures.append(struct)
        bench.paper_names.append(str(c.get("paper_name", name)))
    bench.box = int(t.get("box", (raw.get("extraction") or {}).get("box", 32)))
    bench.dose = float(_need(_need(raw, "noise", path), "dose_e_per_angstrom2", path, "noise."))
    return bench


def simulation_config(bench: Benchmark, dose: float, seed: int = 0):
    """The :class:`~tomoclass.simulate.SimulationConfig` of the tier at a dose."""
    from tomoclass.simulate import ClassSpec, SimulationConfig

    t, raw = bench.tier, bench.raw
    tpl = raw.get("templates") or {}
    tomo = dict(raw.get("tomogram") or {})
    tomo.update(shape_zyx=tuple(t["shape_zyx"]), n_particles=int(t["n_particles"]),
                n_tomograms=int(t["n_tomograms"]), dose_e_per_angstrom2=float(dose),
                write_density=True)
    return SimulationConfig.from_dict({
        "seed": seed,
        "voxel_size_angstrom": float(tpl.get("voxel_size_angstrom", 10.0)),
        "resolution_angstrom": float(tpl.get("resolution_angstrom", 20.0)),
        "assembly": bool(tpl.get("assembly", True)),
        "classes": [ClassSpec(source=str(s), name=n).model_dump()
                    for s, n in zip(bench.structures, bench.names, strict=True)],
        "microscope": dict(raw.get("microscope") or {}),
        "tomogram": tomo,
    }, path=bench.config_path)


# -- environment record ------------------------------------------------------------------------
def machine_record() -> dict[str, Any]:
    """Host, CPU count, load, accelerator and library versions."""
    import torch

    rec = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if rec["cuda"]:
        rec["gpu"] = torch.cuda.get_device_name(0)
        rec["gpu_count"] = torch.cuda.device_count()
    rec["note"] = "wall times depend on what else ran: see loadavg and loadavg_end"
    return rec


# -- stages ------------------------------------------------------------------------------------
def _simulate_one(templates, cfg, index: int, out_dir: str, name: str) -> dict[str, str]:
    from tomoclass.simulate import simulate_tomogram, write_tomogram

    result = simulate_tomogram(templates, cfg, index=index)
    return {k: str(v) for k, v in write_tomogram(out_dir, result, name, cfg).items()}


def simulate(out_dir: Path, templates, cfg, processes: int = 1,
             done: Sequence[dict[str, str]] = ()) -> list[dict[str, str]]:
    """Simulate ``cfg.tomogram.n_tomograms`` tomograms (``tomo_000`` ...) into ``out_dir``.

    With ``processes > 1`` tomograms are simulated in forked worker processes; the output is
    the same as in one process (tomogram ``i`` uses the random stream ``[seed, i]``).
    ``done``: the entries of tomograms ``0 .. len(done) - 1`` already written with the same
    settings; only the others are simulated.
    """
    n = cfg.tomogram.n_tomograms
    names = [f"tomo_{i:03d}" for i in range(n)]
    todo = list(range(len(done), n))
    if not todo:
        return list(done)[:n]
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.to_yaml(out_dir / "simulation.yaml")
    if processes <= 1 or len(todo) == 1:
        return list(done) + [_simulate_one(templates, cfg, i, str(out_dir), names[i])
                             for i in todo]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(processes, n),
                             mp_context=mp.get_context("fork")) as pool:
        futures = [pool.submit(_simulate_one, templates, cfg, i, str(out_dir), names[i])
                   for i in todo]
        return list(done) + [f.result() for f in futures]


def select_particles(table, shape_zyx: tuple[int, int, int], box: int, *, border: str = "skip",
                     cap: int | None = None, seed: int = 0):
    """Rows to extract: boxes inside the tomogram (``border="skip"``), at most ``cap`` per class
    and tomogram.

    Parameters
    ----------
    table
        Ground-truth rows (schema columns; ``x, y, z`` in voxels of the tomogram).
    shape_zyx
        Tomogram shape (z, y, x) in voxels.
    box
        Box edge in voxels; with ``border="skip"`` a row is kept when its whole box, plus one
        voxel of margin, lies inside the tomogram (``extract_dataset`` checks again).
    cap
        Keep at most this many rows per (tomogram, class), drawn without replacement by
        ``numpy.random.default_rng([seed, 7])``; None keeps all.

    Returns
    -------
    pandas.DataFrame
        The kept rows, in their original order, index reset.
    """
    from tomoclass.io import schema as S

    keep = np.ones(len(table), dtype=bool)
    if border == "skip":
        half = box / 2.0 + 1.0
        for col, n in zip((S.Z, S.Y, S.X), shape_zyx, strict=True):
            c = table[col].to_numpy(dtype=np.float64)
            keep &= (c - half >= 0) & (c + half <= n)
    sub = table[keep]
    if cap is not None:
        rng = np.random.default_rng([seed, 7])
        rows = []
        for _, grp in sub.groupby([S.TOMOGRAM, S.CLASS_NAME], sort=True):
            idx = grp.index.to_numpy()
            rows.append(np.sort(rng.choice(idx, size=min(int(cap), len(idx)), replace=False)))
        sub = table.loc[np.sort(np.concatenate(rows))] if rows else sub
    return sub.reset_index(drop=True)


def extract(ds_dir: Path, written: list[dict[str, str]], bench: Benchmark, sim_cfg):
    """Subtomograms at the ground-truth positions, split by tomogram (test = tier's test)."""
    import pandas as pd

    from tomoclass.data import ClassMap, extract_dataset
    from tomoclass.io import read_particles
    from tomoclass.io import schema as S

    names = [Path(w["tomogram"]).stem for w in written]
    table = pd.concat([read_particles(w["ground_truth"]) for w in written], ignore_index=True)
    split = {names[i]: "train" for i in bench.tier["train_tomograms"]}
    split.update({names[i]: "test" for i in bench.tier["test_tomograms"]})
    table = table[table[S.TOMOGRAM].astype(str).isin(split)].reset_index(drop=True)
    table["split"] = table[S.TOMOGRAM].astype(str).map(split)
    use = [w for w, n in zip(written, names, strict=True) if n in split]
    ext = bench.raw.get("extraction") or {}
    border = str(bench.tier.get("border", ext.get("border", "skip")))
    table = select_particles(table, tuple(sim_cfg.tomogram.shape_zyx), bench.box, border=border,
                             cap=bench.tier.get("max_per_class_per_tomogram"),
                             seed=sim_cfg.seed)
    return extract_dataset(
        ds_dir, [w["tomogram"] for w in use], table, box=bench.box,
        class_map=ClassMap(bench.names, bench.size_groups),
        clean_tomograms=[w["density"] for w in use],
        normalize=str(ext.get("normalize", "zscore")), border=border,
        split_method="tomogram",
        provenance={"made_by": "benchmarks/reproduce_table2.py", "benchmark": "shrec12",
                    "tier": bench.tier_name, "simulation": sim_cfg.to_dict()},
    )


def train_config(bench: Benchmark, model: str, seed: int, epochs: int | None = None,
                 device: str = "auto"):
    """The paper protocol (train ``default`` preset) at the tier's size for one run.

    The tier's test tomogram is the validation split: it is only monitored (the per-epoch F1
    gives Fig. 4B); Table 2 evaluates the final checkpoint, so nothing is chosen on it.
    """
    from tomoclass.train import preset

    tr = bench.raw.get("train") or {}
    return preset(
        str(tr.get("preset", "default")), model=model, seed=seed,
        epochs=int(epochs or bench.tier["epochs"]), batch_size=int(bench.tier["batch_size"]),
        checkpoint_every=int(bench.tier.get("checkpoint_every", 5)),
        augment=bool(tr.get("augment", False)), val_split="test",
        num_workers=int(bench.tier.get("num_workers", 0)), device=device,
        model_kwargs=bench.model_kwargs(model),
        lr_step_epochs=bench.tier.get("lr_step_epochs"),
    )


def train_runs(jobs: Sequence[tuple[Any, ...]], ds_dir: Path, parallel: int = 1,
               progress: bool = False, log_dir: Path | None = None) -> None:
    """Train each ``(TrainConfig, run_dir[, dataset])`` (default dataset ``ds_dir``);
    ``parallel > 1`` runs that many at once.

    Parallel runs are separate ``python -m tomoclass train --config`` processes (safe with
    CUDA, unlike forking), each logging to ``log_dir/<run>.log`` (default: beside the run);
    sequential runs call :func:`tomoclass.train.fit` in-process.
    """
    from tomoclass.train import fit

    jobs = [(j[0], j[1], j[2] if len(j) > 2 else ds_dir) for j in jobs]
    if parallel <= 1:
        for cfg, run_dir, data in jobs:
            fit(cfg, data, run_dir, progress=progress)
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    pending = list(jobs)
    running: list[tuple[subprocess.Popen, Path, Any, Path]] = []
    failed = []
    while pending or running:
        while pending and len(running) < parallel:
            cfg, run_dir, data = pending.pop(0)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            cfg_path = run_dir.parent / f"{run_dir.name}.train.yaml"
            cfg_path.write_text(cfg.to_yaml())
            log_path = Path(log_dir or run_dir.parent) / f"{run_dir.name}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            logf = open(log_path, "w")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "-m", "tomoclass", "train", "--config", str(cfg_path),
                 "--data", str(data), "--out", str(run_dir), "--no-progress"],
                stdout=logf, stderr=subprocess.STDOUT, env=env)
            running.append((proc, run_dir, logf, log_path))
            log.info("training %s (process %d, log %s)", run_dir.name, proc.pid, log_path)
        time.sleep(2)
        for item in list(running):
            proc, run_dir, logf, log_path = item
            if proc.poll() is not None:
                logf.close()
                running.remove(item)
                if proc.returncode != 0:
                    tail = [ln for ln in log_path.read_text().splitlines() if ln.strip()][-1:]
                    failed.append(f"{run_dir.name} (exit {proc.returncode}: "
                                  f"{tail[0] if tail else 'no output'}; log {log_path})")
                else:
                    log.info("trained %s", run_dir.name)
    if failed:
        raise TomoclassError("training failed: " + "; ".join(failed))


def evaluate(run_dir: Path, ds_dir: Path, bench: Benchmark, device: str = "auto"):
    """Final-checkpoint evaluation on the test split (report in ``run_dir/evaluation_test``)."""
    from tomoclass.evaluate.run import evaluate_run

    which = str((bench.raw.get("train") or {}).get("evaluate_checkpoint", "last"))
    return evaluate_run(run_dir, ds_dir, split="test", which=which,
                        batch_size=int(bench.tier.get("eval_batch_size", 32)), device=device)


def run_record(report, run_dir: Path, bench: Benchmark) -> dict[str, Any]:
    """Per-class F1, group means, macro F1, CAM score and the test F1 curve of one run."""
    from tomoclass.evaluate.compare import epoch_curve, read_metrics_log

    m = report.metrics
    f1 = {n: (None if not np.isfinite(v) else float(v))
          for n, v in zip(m.class_names, m.f1, strict=True)}
    groups = {g: float(v) for g, v in m.group_f1().items() if np.isfinite(v)}
    every = max(1, int(bench.tier.get("checkpoint_every", 5)))
    curves = {}
    records = read_metrics_log(run_dir / "metrics.jsonl")
    for g in ("tiny", "macro"):
        c = epoch_curve(records, m.class_names, m.size_groups, group=g)
        keep = [i for i, e in enumerate(c.epochs) if e % every == 0]
        curves[g] = {"epochs": [int(c.epochs[i]) for i in keep],
                     "f1": [None if not np.isfinite(c.f1[i]) else float(c.f1[i]) for i in keep]}
    seconds = sum(float(r.get("epoch_seconds", 0.0)) for r in records)
    sps = [float(r["samples_per_s"]) for r in records if r.get("samples_per_s")]
    return {
        "run_dir": str(run_dir),
        "checkpoint": report.checkpoint,
        "f1": f1,
        "macro_f1": float(report.macro_f1),
        "group_f1": groups,
        "n_test": int(m.n),
        "cam": report.cam,
        "curve_test_f1": curves,
        "train_seconds": round(seconds, 1),
        "train_samples_per_s": round(float(np.median(sps)), 2) if sps else None,
    }


# -- summaries ---------------------------------------------------------------------------------
def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else None,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def summarize(runs: dict[str, dict[int, dict[str, Any]]], bench: Benchmark) -> dict[str, Any]:
    """Means over seeds per model, and the dilated-minus-plain difference paired by seed."""
    out: dict[str, Any] = {"per_model": {}, "dilated_minus_plain": None}
    for model, by_seed in runs.items():
        recs = list(by_seed.values())
        out["per_model"][model] = {
            "seeds": sorted(by_seed),
            "f1": {n: _stats([r["f1"].get(n) for r in recs]) for n in bench.names},
            "group_f1": {g: _stats([r["group_f1"].get(g) for r in recs]) for g in GROUPS},
            "macro_f1": _stats([r["macro_f1"] for r in recs]),
            "cam_mean": _stats([(r["cam"] or {}).get("mean") for r in recs]),
        }
    a, b = runs.get("dilated_densenet3d", {}), runs.get("densenet3d", {})
    paired = sorted(set(a) & set(b))
    if paired:
        diff = {"seeds": paired,
                "macro_f1": _stats([a[s]["macro_f1"] - b[s]["macro_f1"] for s in paired]),
                "group_f1": {}, "f1": {}}
        for g in GROUPS:
            vals = [a[s]["group_f1"][g] - b[s]["group_f1"][g] for s in paired
                    if g in a[s]["group_f1"] and g in b[s]["group_f1"]]
            diff["group_f1"][g] = _stats(vals)
        for n in bench.names:
            vals = [a[s]["f1"][n] - b[s]["f1"][n] for s in paired
                    if a[s]["f1"].get(n) is not None and b[s]["f1"].get(n) is not None]
            diff["f1"][n] = _stats(vals)
        out["dilated_minus_plain"] = diff
    return out


def _f(x: float | None, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _ms(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "–"
    return _f(s["mean"]) + (f" ± {s['sd']:.3f}" if s.get("sd") is not None else "")


def table2_markdown(result: dict[str, Any], bench: Benchmark) -> str:
    """Table 2 (ours beside the paper's), Fig. 4A numbers, the difference and the CAM scores."""
    paper = bench.paper_f1()
    summ = result["summary"]
    names = bench.names
    head = ["model", "source"] + [
        n if p == n else f"{n} (paper: {p})" for n, p in zip(names, bench.paper_names,
                                                                strict=True)] + ["mean"]
    t = bench.tier
    lines = [
        f"# Table 2 on shrec12 — tier `{bench.tier_name}`",
        "",
        f"{t['n_tomograms']} simulated tomograms of {'x'.join(map(str, t['shape_zyx']))} voxels "
        f"(z, y, x) at 10 Å, {t['n_particles']} particles each, train on tomograms "
        f"{t['train_tomograms']}, test on {t['test_tomograms']}"
        + (f" (locate: pick threshold chosen on {t['val_tomograms']})"
           if t.get("val_tomograms") else "") + f"; {bench.box}³ boxes; "
        f"{t['epochs']} epoch(s) at batch {t['batch_size']}; dose {result['dose']:g} e/Å² "
        f"(calibration status: {result['calibration'].get('status', 'unknown')}). "
        f"Reduced relative to the paper: {' '.join(str(t.get('reduces', '')).split())}",
        "",
        "Ours: F1 on the test tomogram, mean ± s.d. over seeds (final checkpoint). Paper: "
        "Gao et al. 2020 Table 2 on SHREC'19; 3j9i and 7p6z stand in for 4b4t and 4d8q.",
        "",
        "| tiny: 1s3x 3qm1 3gl1 · small: 3d2f 1u6g 2cg9 3h84 · medium: 1qvr 1bxn 3cf3 · "
        "large: 3j9i 7p6z |",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for m in MODELS:
        if m in summ["per_model"]:
            pm = summ["per_model"][m]
            n_seeds = len(pm["seeds"])
            lines.append(f"| {m} | ours ({n_seeds} seed{'s' if n_seeds != 1 else ''}) | "
                         + " | ".join(_ms(pm["f1"][n]) for n in names)
                         + f" | {_ms(pm['macro_f1'])} |")
        pv = [paper[m][n] for n in names]
        lines.append(f"| {m} | paper | " + " | ".join(_f(v) for v in pv)
                     + f" | {_f(float(np.mean(pv)))} |")
    lines += ["", "## Mean F1 per size group (Fig. 4A)", "", "![Fig. 4A](fig4a.png)", "",
              "| model | source | " + " | ".join(GROUPS) + " |", "|---|---|" + "---|" * 4]
    for m in MODELS:
        if m in summ["per_model"]:
            pm = summ["per_model"][m]
            lines.append(f"| {m} | ours | " + " | ".join(_ms(pm["group_f1"][g]) for g in GROUPS)
                         + " |")
        pg = [np.mean([paper[m][n] for n, gg in zip(names, bench.size_groups, strict=True)
                       if gg == g]) for g in GROUPS]
        lines.append(f"| {m} | paper | " + " | ".join(_f(float(v)) for v in pg) + " |")
    d = summ.get("dilated_minus_plain")
    if d:
        pm_paper = {g: float(np.mean([paper["dilated_densenet3d"][n] - paper["densenet3d"][n]
                                      for n, gg in zip(names, bench.size_groups, strict=True)
                                      if gg == g])) for g in GROUPS}
        pm_all = float(np.mean([paper["dilated_densenet3d"][n] - paper["densenet3d"][n]
                                for n in names]))
        lines += ["", "## Dilated minus plain DenseNet (paired by seed)", "",
                  f"Seeds {d['seeds']}. Mean ± s.d. [min, max] over seeds.", "",
                  "| quantity | ours | paper |", "|---|---|---|",
                  f"| macro F1 | {_ms(d['macro_f1'])} [{_f(d['macro_f1']['min'])}, "
                  f"{_f(d['macro_f1']['max'])}] | {_f(pm_all)} |"]
        for g in GROUPS:
            s = d["group_f1"][g]
            lines.append(f"| {g} F1 | {_ms(s)} [{_f(s['min'])}, {_f(s['max'])}] | "
                         f"{_f(pm_paper[g])} |")
        mean = d["macro_f1"]["mean"]
        verdict = ("the dilated net scores higher on average" if mean is not None and mean > 0
                   else "the dilated net does NOT score higher on average")
        if mean is not None and d["macro_f1"].get("sd") is not None:
            verdict += (" (the spread over seeds is larger than the mean difference)"
                        if abs(mean) < d["macro_f1"]["sd"] else
                        " (the mean difference exceeds the spread over seeds)")
        lines += ["", f"Here {verdict}."]
    lines += ["", "## F1 against epoch (Fig. 4B)", "", "![Fig. 4B](fig4b.png)", "",
              f"Mean F1 of the tiny classes on the test tomogram every "
              f"{t.get('checkpoint_every', 5)} epoch(s), mean over seeds (from each run's "
              "per-epoch log: the test tomogram is the monitored split; nothing is selected "
              "on it)."]
    cam_rows = [(m, summ["per_model"][m]["cam_mean"]) for m in MODELS if m in summ["per_model"]]
    if any(s["mean"] is not None for _, s in cam_rows):
        chance = [(r["cam"] or {}).get("mean_mask_fraction") for m in MODELS
                  for r in result["runs"].get(m, {}).values() if r.get("cam")]
        lines += ["", "## CAM (Fig. 5) and CAM score", "", "![Fig. 5](fig5_cam.png)", "",
                  "CAM score: share of the true class's positive activation energy inside the "
                  "particle mask (docs/cam.md); DenseNets by the paper's Eq. 1, shrec_cnn by "
                  f"Grad-CAM. A uniform map would score {_f(chance[0] if chance else None)}.", "",
                  "| model | mean CAM score over classes |", "|---|---|"]
        lines += [f"| {m} | {_ms(s)} |" for m, s in cam_rows]
    lines += ["", "## Time per stage (s)", ""]
    lines += [f"- {k}: {v}" for k, v in result["seconds"].items()]
    mach = result["machine"]
    lines += ["", f"Machine: {mach.get('gpu', 'CPU only')}, {mach['nproc']} CPUs, load average "
              f"{', '.join(f'{x:.1f}' for x in mach['loadavg'])} at the start "
              f"({mach['note']}); commit {result['git_commit']}; {result['date_utc']}.", ""]
    return "\n".join(lines)


def plot_fig4a(result: dict[str, Any], bench: Benchmark, path: Path) -> Path:
    """Bars of mean F1 per size group: ours (mean ± s.d. over seeds) and the paper's (hatched)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tomoclass.io.atomic import atomic_path

    paper = bench.paper_f1()
    summ = result["summary"]["per_model"]
    models = [m for m in MODELS if m in summ]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / (2 * len(models))
    x = np.arange(len(GROUPS))
    for i, m in enumerate(models):
        ours = [summ[m]["group_f1"][g]["mean"] for g in GROUPS]
        err = [summ[m]["group_f1"][g]["sd"] or 0.0 for g in GROUPS]
        pg = [np.mean([paper[m][n] for n, gg in zip(bench.names, bench.size_groups,
                                                     strict=True) if gg == g]) for g in GROUPS]
        pos = x - 0.4 + width * (2 * i + 0.5)
        bar = ax.bar(pos, [np.nan if v is None else v for v in ours], width, yerr=err,
                     label=f"{m} (ours)", capsize=2)
        ax.bar(pos + width, pg, width, color=bar.patches[0].get_facecolor(), alpha=0.4,
               hatch="//", label=f"{m} (paper)")
    ax.set_xticks(x, GROUPS)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean F1 of the group's classes")
    ax.set_title(f"Fig. 4A on shrec12 ({bench.tier_name} tier; paper: SHREC'19)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def plot_fig4b(result: dict[str, Any], bench: Benchmark, path: Path) -> Path:
    """Tiny-group test F1 against epoch, mean ± s.d. over seeds, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tomoclass.io.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in MODELS:
        runs = result["runs"].get(m)
        if not runs:
            continue
        curves = [r["curve_test_f1"]["tiny"] for r in runs.values()]
        epochs = curves[0]["epochs"]
        vals = np.array([[np.nan if v is None else v for v in c["f1"]] for c in curves
                         if c["epochs"] == epochs], dtype=np.float64)
        if not epochs or vals.size == 0:
            continue
        mean = np.nanmean(vals, axis=0)
        sd = np.nanstd(vals, axis=0)
        ax.errorbar(epochs, mean, yerr=sd if len(vals) > 1 else None, marker="o", capsize=3,
                    label=f"{m} ({len(vals)} seed{'s' if len(vals) != 1 else ''})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean F1, tiny classes (test tomogram)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Fig. 4B on shrec12 ({bench.tier_name} tier)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


# -- orchestration -----------------------------------------------------------------------------
def prepare_work(work: Path) -> Path:
    """Empty scratch folder; an existing one is replaced only if this script made it."""
    if work.exists() and any(work.iterdir()):
        if not (work / WORK_MARKER).exists():
            raise InputError("scratch folder exists and was not made by this script; choose "
                             "another --work", path=work, field="work")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_MARKER).write_text("made by benchmarks/reproduce_table2.py; safe to delete\n")
    return work


class Clock:
    """Wall seconds per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._t, 1)
        self._t = now
        log.info("%s: %.1f s", stage, self.seconds[stage])


def _build_data(bench: Benchmark, templates, dose: float, work: Path, clock: Clock, tag: str):
    sim_cfg = simulation_config(bench, dose)
    written = simulate(work / f"tomograms{tag}", templates, sim_cfg,
                       processes=int(bench.tier.get("sim_processes", 1)))
    clock.lap(f"simulate{tag}")
    ds_dir = work / f"dataset{tag}"
    rep = extract(ds_dir, written, bench, sim_cfg)
    clock.lap(f"extract{tag}")
    return ds_dir, rep, written, sim_cfg


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from tomoclass.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")


def run_table2(bench: Benchmark, out: Path, work: Path, *, device: str = "auto",
               progress: bool = False, locate: bool = False) -> dict[str, Any]:
    """The whole experiment; returns the JSON written to ``out/results.json``.

    With ``locate`` also the whole-tomogram task (:mod:`shrec12_locate`): a background-class
    run trained beside the Table 2 runs, located over the test tomograms and scored."""
    from tomoclass.cam.run import cam_for_runs
    from tomoclass.evaluate.compare import compare_runs, write_comparison
    from tomoclass.simulate import load_class_templates

    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load_start = list(os.getloadavg())
    clock = Clock()
    templates = load_class_templates(simulation_config(bench, bench.dose))
    clock.lap("templates")
    ds_dir, ext, written, sim_cfg = _build_data(bench, templates, bench.dose, work, clock, "")
    loc_cfg = loc_radii = loc_data = None
    if locate:
        import shrec12_locate as sl

        loc_cfg, loc_radii = sl.settings(bench.raw), sl.template_radii(templates)
        _, loc_data = sl.build_dataset(work / "dataset_locate", written, bench, sim_cfg,
                                       loc_radii, loc_cfg)
        clock.lap("extract_locate")
    machine = machine_record()  # after the forked simulation: CUDA is first touched here
    machine["loadavg"] = load_start

    jobs, keys = [], []
    for model in MODELS:
        for seed in bench.seeds(model):
            jobs.append((train_config(bench, model, seed, device=device),
                         work / "runs" / f"{model}_seed{seed}"))
            keys.append((model, seed))
    loc_run = work / "runs" / "locate_background"
    extra = ([(train_config(bench, loc_cfg["model"], loc_cfg["seed"], device=device), loc_run,
               work / "dataset_locate")] if locate else [])
    train_runs(jobs + extra, ds_dir, parallel=int(bench.tier.get("parallel_runs", 1)),
               progress=progress, log_dir=out / "logs")
    clock.lap("train")

    runs: dict[str, dict[int, dict[str, Any]]] = {}
    reports = {}
    for (model, seed), (_, run_dir) in zip(keys, jobs, strict=True):
        rep = evaluate(run_dir, ds_dir, bench, device=device)
        reports[(model, seed)] = rep
        runs.setdefault(model, {})[seed] = run_record(rep, run_dir, bench)
    clock.lap("evaluate")

    out.mkdir(parents=True, exist_ok=True)
    first = {m: min(s) for m, s in runs.items()}
    seed0 = [(m, first[m]) for m in MODELS if m in first]
    write_comparison(compare_runs([work / "runs" / f"{m}_seed{s}" for m, s in seed0],
                                  reports=[reports[k] for k in seed0]), out / "compare_seed0")
    cam_models = [m for m in ("densenet3d", "dilated_densenet3d") if m in first] or list(first)
    cam_for_runs([work / "runs" / f"{m}_seed{first[m]}" for m in cam_models], ds_dir,
                 out / "fig5_cam.png", n=int(bench.tier.get("cam_particles", 8)), split="test",
                 which=str((bench.raw.get("train") or {}).get("evaluate_checkpoint", "last")),
                 seed=0, device=device)
    clock.lap("cam + compare")
    loc_rec = None
    if locate:
        import shrec12_locate as sl

        (out / "locate").mkdir(parents=True, exist_ok=True)
        loc_rec = {"settings": loc_cfg, "dataset": loc_data, "run_dir": str(loc_run),
                   "result": sl.locate_and_score(loc_run, written, bench, loc_radii, loc_cfg,
                                                 out / "locate", device=device)}
        clock.lap("locate")

    result: dict[str, Any] = {
        "benchmark": "shrec12 Table 2 reproduction",
        "tier": bench.tier_name,
        "tier_settings": bench.tier,
        "box": bench.box,
        "dose": bench.dose,
        "classes": [{"name": n, "size_group": g, "paper_name": p, "structure": str(s)}
                    for n, g, p, s in zip(bench.names, bench.size_groups, bench.paper_names,
                                          bench.structures, strict=True)],
        "calibration": bench.calibration,
        "paper_table2": bench.paper_f1(),
        "dataset": {"n_written": ext.n_written, "n_padded": ext.n_padded,
                    "per_tomogram": ext.per_tomogram},
        "train_protocol": json.loads(json.dumps(jobs[0][0].model_dump(mode="json"))) if jobs
        else None,
        "runs": {m: {str(s): r for s, r in by.items()} for m, by in runs.items()},
        "machine": machine,
        "git_commit": git_commit(),
        "date_utc": date,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "work_dir": str(work),
    }
    result["locate"] = loc_rec
    result["summary"] = summarize(runs, bench)
    plot_fig4a(result, bench, out / "fig4a.png")
    plot_fig4b(result, bench, out / "fig4b.png")
    clock.lap("report")
    result["seconds"] = dict(clock.seconds)
    result["seconds"]["total"] = round(sum(clock.seconds.values()), 1)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["files"] = {k: str(out / v) for k, v in (
        ("json", "results.json"), ("table2", "table2.md"), ("fig4a", "fig4a.png"),
        ("fig4b", "fig4b.png"), ("fig5", "fig5_cam.png"), ("compare_seed0", "compare_seed0"))}
    _write_json(out / "results.json", result)
    from tomoclass.io.atomic import atomic_path

    text = table2_markdown(result, bench)
    if loc_rec is not None:
        import shrec12_locate as sl

        text += sl.markdown(loc_rec, bench)
    with atomic_path(out / "table2.md") as tmp:
        tmp.write_text(text)
    return result


def choose_dose(sweep: Sequence[dict[str, Any]], target: float) -> dict[str, Any]:
    """The sweep entry whose ``macro_f1`` is nearest ``target`` (ties: the first listed)."""
    if not sweep:
        raise InputError("empty calibration sweep", field="calibration")
    return min(sweep, key=lambda r: abs(float(r["macro_f1"]) - target))


def run_calibration(bench: Benchmark, out: Path, work: Path, *, device: str = "auto",
                    progress: bool = False, doses_override: Sequence[float] | None = None
                    ) -> dict[str, Any]:
    """Dose sweep with shrec_cnn; writes ``out/calibration.json`` and returns it.

    ``doses_override`` replaces the YAML's sweep (to split a sweep over several runs; the
    records of the parts are then merged by hand, choosing over all doses)."""
    from tomoclass.simulate import load_class_templates

    cal = bench.calibration
    target = float(cal.get("target_mean_f1", 0.566))
    model = str(cal.get("target_model", "shrec_cnn"))
    doses = [float(d) for d in bench.tier.get("calibration_sweep_dose_e_per_angstrom2")
             or cal.get("sweep_dose_e_per_angstrom2") or []]
    if not doses:
        raise InputError("no doses to sweep", path=bench.config_path,
                         field="calibration.sweep_dose_e_per_angstrom2")
    if doses_override:
        doses = [float(d) for d in doses_override]
    epochs = int(bench.tier.get("calibration_epochs", bench.tier["epochs"]))
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load_start = list(os.getloadavg())
    clock = Clock()
    templates = load_class_templates(simulation_config(bench, doses[0]))
    clock.lap("templates")
    sweep = []
    for dose in doses:
        t0 = time.perf_counter()
        tag = f"_dose{dose:g}"
        ds_dir, _, _, _ = _build_data(bench, templates, dose, work, clock, tag)
        run_dir = work / "runs" / f"{model}{tag}"
        train_runs([(train_config(bench, model, 0, epochs=epochs, device=device), run_dir)],
                   ds_dir, parallel=1, progress=progress)
        rep = evaluate(run_dir, ds_dir, bench, device=device)
        clock.lap(f"train + evaluate{tag}")
        sweep.append({"dose_e_per_angstrom2": dose, "macro_f1": float(rep.macro_f1),
                      "group_f1": {g: float(v) for g, v in rep.metrics.group_f1().items()},
                      "seconds": round(time.perf_counter() - t0, 1)})
        shutil.rmtree(work / f"tomograms{tag}", ignore_errors=True)
    best = choose_dose(sweep, target)
    record = {
        "target_model": model,
        "target_mean_f1": target,
        "frozen_dose_e_per_angstrom2": best["dose_e_per_angstrom2"],
        "status": "calibrated" if bench.tier_name != "smoke" else "smoke (plumbing only)",
        "record": {
            "chosen_by": (f"dose whose test macro F1 of {model} ({epochs} epoch(s), seed 0, "
                          f"tier {bench.tier_name}) is nearest {target}"),
            "date_utc": date,
            "git_commit": git_commit(),
            "tier": bench.tier_name,
            "epochs": epochs,
            "sweep": sweep,
        },
        "machine": {**machine_record(), "loadavg": load_start,
                    "loadavg_end": list(os.getloadavg())},
        "seconds": clock.seconds,
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "calibration.json", record)
    snippet = {k: record[k] for k in ("target_model", "target_mean_f1",
                                      "frozen_dose_e_per_angstrom2", "status", "record")}
    snippet["sweep_dose_e_per_angstrom2"] = doses
    from tomoclass.io.atomic import atomic_path

    with atomic_path(out / "calibration_snippet.yaml") as tmp:
        tmp.write_text("# paste over the `calibration:` section of the benchmark YAML and set "
                       "noise.dose_e_per_angstrom2 to the frozen dose\n"
                       + yaml.safe_dump({"calibration": snippet}, sort_keys=False))
    return record


def _doses(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}"
                                         ) from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"doses must be positive numbers, got {text!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reproduce_table2.py",
        description="Reproduce Gao et al. 2020 Table 2 / Fig. 4 / Fig. 5 on the shrec12 "
                    "benchmark (docs/reproduce.md).")
    p.add_argument("--tier", required=True, choices=("cpu", "gpu", "gpu_probe", "smoke"))
    p.add_argument("--out", required=True, type=Path,
                   help="results folder (small files only: JSON, Markdown, PNG)")
    p.add_argument("--data-root", type=Path,
                   help="folder holding structures/pdb (default: $TOMOCLASS_SHARED_DATA, else "
                        "../shared/data beside the repository)")
    p.add_argument("--work", type=Path,
                   help="scratch folder for tomograms, datasets and runs (replaced; default "
                        "<tmp>/tomoclass_table2_<tier>)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="benchmark YAML")
    p.add_argument("--calibrate", action="store_true",
                   help="run the noise calibration sweep instead of the experiment")
    p.add_argument("--doses", type=_doses, metavar="D1,D2,...",
                   help="with --calibrate: sweep these doses (e/A^2) instead of the YAML's")
    p.add_argument("--locate", action="store_true",
                   help="also the whole-tomogram task: train a background-class run beside the "
                        "Table 2 runs, locate particles in the test tomograms and score them")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    p.add_argument("--progress", action="store_true", help="progress bars while training")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    try:
        if args.doses and not args.calibrate:
            raise InputError("--doses only applies with --calibrate", field="--doses")
        bench = load_benchmark(args.config, args.tier, args.data_root)
        work = prepare_work(args.work or Path(tempfile.gettempdir())
                            / f"tomoclass_table2_{args.tier}")
        if args.out.resolve() == work.resolve() or work.resolve() in args.out.resolve().parents:
            raise InputError("--out must not lie inside the scratch folder", path=args.out)
        if args.calibrate:
            rec = run_calibration(bench, args.out, work, device=args.device,
                                  progress=args.progress, doses_override=args.doses)
            for r in rec["record"]["sweep"]:
                print(f"dose {r['dose_e_per_angstrom2']:g} e/A^2: {rec['target_model']} "
                      f"macro F1 {r['macro_f1']:.3f}")
            print(f"freeze in {args.config}: noise.dose_e_per_angstrom2 and "
                  f"calibration.frozen_dose_e_per_angstrom2 = "
                  f"{rec['frozen_dose_e_per_angstrom2']:g} (record: "
                  f"{args.out / 'calibration.json'})")
            return 0
        if args.locate and args.calibrate:
            raise InputError("--locate does not apply with --calibrate", field="--locate")
        res = run_table2(bench, args.out, work, device=args.device, progress=args.progress,
                         locate=args.locate)
    except TomoclassError as exc:
        print(f"reproduce_table2.py: error: {exc}", file=sys.stderr)
        return 2
    for m, pm in res["summary"]["per_model"].items():
        print(f"{m}: macro F1 {_ms(pm['macro_f1'])} over seeds {pm['seeds']}")
    d = res["summary"]["dilated_minus_plain"]
    if d:
        print(f"dilated - plain macro F1: {_ms(d['macro_f1'])} (seeds {d['seeds']})")
    for t in (res.get("locate") or {}).get("result", {}).get("tomograms", []):
        print(f"locate {t['tomogram']}: localization F1 {t['score']['f1']}, "
              f"{t['seconds_locate']:.1f} s")
    print(f"wrote {args.out / 'table2.md'} and {args.out / 'results.json'} "
          f"({res['seconds']['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
