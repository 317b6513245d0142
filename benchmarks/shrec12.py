"""The shrec12 benchmark: its definition and the stages its two drivers share.

``benchmarks/configs/shrec12.yaml`` defines SHREC-like tomograms built from the 12 real
structures of ``shared/data/structures/pdb``, with tiers (smoke, cpu, gpu, ...) of size and
protocol. This module reads it (:func:`load_benchmark`) and runs the stages with the public
tomoclass API: simulate the tier's tomograms, extract the ground-truth boxes
(:func:`tomoclass.data.select_particles`), train (:func:`train_runs`), evaluate the final
checkpoint (:func:`tomoclass.workflows.evaluate.evaluate_run`). The drivers are
``reproduce_table2.py`` (Table 2 / Fig. 4 / Fig. 5) and ``shrec12_locate.py`` (the
whole-tomogram task, whose own stage is :mod:`shrec12_locate_steps`); run them as scripts
(``python benchmarks/<name>.py``), which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import tomoclass
from tomoclass.data import select_particles
from tomoclass.errors import InputError, TomoclassError
from tomoclass.evaluate.seeds import MODELS
from tomoclass.io.outputs import check_open_dir, open_dir
from tomoclass.metrics import SIZE_GROUPS as GROUPS
from tomoclass.workflows.evaluate import evaluate_run

__all__ = [
    "DEFAULT_CONFIG", "EXTRA_MODELS", "GROUPS", "MODELS", "ROOT", "SCRATCH_KIND", "Benchmark",
    "Clock", "build_data", "check_scratch",
    "default_data_root", "evaluate", "extract", "load_benchmark", "machine_record",
    "parse_settings", "prepare_work", "probe_overrides", "run_record", "simulate",
    "simulation_config", "train_config", "train_runs", "write_json",
]

log = logging.getLogger("reproduce_table2")

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_CONFIG = ROOT / "benchmarks" / "configs" / "shrec12.yaml"

#: Marker file that lets the script replace a scratch folder it made itself.
#: Marker of a scratch folder made before tomoclass.io.outputs markers (still recognised).
WORK_MARKER = ".tomoclass_table2_work"
#: Kind of the scratch folder (tomograms, datasets, runs) reproduce_table2.py and
#: shrec12_locate.py make and replace.
SCRATCH_KIND = "shrec12 benchmark scratch"

TIER_KEYS = {"reduces", "n_tomograms", "shape_zyx", "n_particles", "train_tomograms",
             "test_tomograms", "epochs", "batch_size", "checkpoint_every", "seeds",
             "sim_processes", "parallel_runs", "num_workers", "eval_batch_size",
             "calibration_epochs", "cam_particles", "model_kwargs", "box",
             "calibration_sweep_dose_e_per_angstrom2", "border",
             "max_per_class_per_tomogram", "lr_step_epochs", "locate_stride",
             "val_tomograms", "classes", "preset", "train_overrides", "monitor",
             "evaluate_checkpoint"}

#: Models a tier may train beside the paper's three (no paper values; issue 18's generic row).
EXTRA_MODELS = ("monai_densenet121",)


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

    @property
    def monitor(self) -> str:
        """The split training monitors every epoch: ``test`` (the tier's test tomograms, only
        watched: Fig. 4B) or ``val`` (its ``val_tomograms``, extracted as the dataset's val
        split, so that early stopping and ``best.pt`` never see the test tomograms)."""
        return str(self.tier.get("monitor", "test"))

    def seeds(self, model: str) -> list[int]:
        return [int(s) for s in (self.tier.get("seeds") or {}).get(model, [])]

    def model_kwargs(self, model: str) -> dict[str, Any]:
        return dict((self.tier.get("model_kwargs") or {}).get(model, {}) or {})

    def train_overrides(self, model: str) -> dict[str, Any]:
        """The tier's changes to one model's training config (``train_overrides``: a stated
        deviation from the tier's protocol, e.g. SHREC-CNN's learning rate)."""
        return dict((self.tier.get("train_overrides") or {}).get(model, {}) or {})

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
    if t.get("monitor", "test") not in ("test", "val"):
        raise InputError(f"must be test or val, got {t['monitor']!r}", path=path,
                         field=f"tiers.{tier}.monitor")
    if t.get("monitor") == "val" and not t.get("val_tomograms"):
        raise InputError("monitor: val needs val_tomograms", path=path,
                         field=f"tiers.{tier}.val_tomograms")
    if t.get("evaluate_checkpoint", "last") not in ("last", "best"):
        raise InputError(f"must be last or best, got {t['evaluate_checkpoint']!r}", path=path,
                         field=f"tiers.{tier}.evaluate_checkpoint")
    if t.get("evaluate_checkpoint") == "best" and t.get("monitor") != "val":
        raise InputError("evaluate_checkpoint: best would choose the checkpoint on the test "
                         "tomograms; it needs monitor: val", path=path,
                         field=f"tiers.{tier}.evaluate_checkpoint")
    known = (*MODELS, *EXTRA_MODELS)
    for key in ("seeds", "train_overrides"):
        for m in (t.get(key) or {}):
            if m not in known:
                raise InputError(f"{key} for unknown model {m!r} (known: {', '.join(known)})",
                                 path=path, field=f"tiers.{tier}.{key}")
    root = Path(data_root).expanduser().resolve() if data_root else default_data_root(raw)
    if not root.is_dir():
        raise InputError("data root not found: it must hold structures/pdb (the shared data "
                         "folder); pass --data-root", path=root, field="data_root")
    bench = Benchmark(raw=raw, tier_name=tier, tier=t, data_root=root, config_path=path)
    all_classes = _need(raw, "classes", path)
    subset = [str(n) for n in t.get("classes") or []]
    unknown_cls = set(subset) - {str(c.get("name")) for c in all_classes if isinstance(c, dict)}
    if unknown_cls:
        raise InputError(f"tier classes not among the benchmark's classes: "
                         f"{sorted(unknown_cls)}", path=path, field=f"tiers.{tier}.classes")
    for i, c in enumerate(all_classes):
        name = str(_need(c, "name", path, f"classes[{i}]."))
        if subset and name not in subset:
            continue
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


def extract(ds_dir: Path, written: list[dict[str, str]], bench: Benchmark, sim_cfg):
    """Subtomograms at the ground-truth positions, split by tomogram (test = tier's test; val =
    its val_tomograms when the tier monitors them, ``monitor: val``)."""
    import pandas as pd

    from tomoclass.data import ClassMap, extract_dataset
    from tomoclass.io import read_particles
    from tomoclass.io import schema as S

    names = [Path(w["tomogram"]).stem for w in written]
    table = pd.concat([read_particles(w["ground_truth"]) for w in written], ignore_index=True)
    split = {names[i]: "train" for i in bench.tier["train_tomograms"]}
    split.update({names[i]: "test" for i in bench.tier["test_tomograms"]})
    if bench.monitor == "val":  # else val tomograms serve locate's threshold only
        split.update({names[i]: "val" for i in bench.tier["val_tomograms"]})
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
                 device: str = "auto", preset_name: str | None = None,
                 overrides: dict[str, Any] | None = None):
    """The paper protocol (train ``default`` preset) at the tier's size for one run.

    The tier's test tomogram is the validation split: it is only monitored (the per-epoch F1
    gives Fig. 4B); Table 2 evaluates the final checkpoint, so nothing is chosen on it. A tier
    with ``monitor: val`` monitors its val tomograms instead (early stopping and ``best.pt``
    may then be used: ``evaluate_checkpoint: best``).
    ``preset_name`` (else the tier's ``preset``, else the YAML's ``train.preset``) chooses
    the train preset (``plain``: the floor of issue 18). The tier's ``train_overrides`` for
    the model, then ``overrides`` (a caller's probe), replace fields of the result.
    """
    from tomoclass.train import preset

    tr = bench.raw.get("train") or {}
    name = preset_name or bench.tier.get("preset") or tr.get("preset", "default")
    fields: dict[str, Any] = dict(
        model=model, seed=seed,
        epochs=int(epochs or bench.tier["epochs"]), batch_size=int(bench.tier["batch_size"]),
        checkpoint_every=int(bench.tier.get("checkpoint_every", 5)),
        augment=bool(tr.get("augment", False)), val_split=bench.monitor,
        num_workers=int(bench.tier.get("num_workers", 0)), device=device,
        model_kwargs=bench.model_kwargs(model),
        lr_step_epochs=bench.tier.get("lr_step_epochs"),
    )
    fields.update(bench.train_overrides(model))
    fields.update(overrides or {})
    return preset(str(name), **fields)


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """``["batch_size=4", "max_grad_norm=1.0"]`` -> ``{"batch_size": 4, "max_grad_norm": 1.0}``
    (:func:`tomoclass.train.options.parse_assignment`); a field TrainConfig does not know is
    refused when the config is built."""
    from tomoclass.train.options import parse_assignment

    return dict(parse_assignment(item, field="--set") for item in items)


def probe_overrides(bench: Benchmark, lr: float | None, settings: Sequence[str]
                    ) -> dict[str, Any] | None:
    """A probe's training-config changes from ``--lr`` and ``--set KEY=VALUE`` (None: none).

    ``lr`` is the rate per batch of the tier's batch size (so ``lr_reference_batch`` is set
    with it); ``--set`` items are read by :func:`parse_settings` and win over ``--lr``.

    Raises
    ------
    InputError
        ``lr`` not above zero, or a ``--set`` item that is not ``KEY=VALUE`` YAML.
    """
    overrides: dict[str, Any] = {}
    if lr is not None:
        if not lr > 0:
            raise InputError(f"must be > 0, got {lr}", field="--lr")
        overrides.update(base_lr=lr, lr_reference_batch=int(bench.tier["batch_size"]))
    overrides.update(parse_settings(settings))
    return overrides or None


def fit_or_stop(cfg, data, run_dir: Path, **kwargs: Any):
    """:func:`tomoclass.train.fit`, then stop the script if a signal interrupted training.

    ``fit`` returns normally when SIGINT/SIGTERM stops it (the run is resumable); a benchmark
    that went on would evaluate, locate or record the half-trained run as if it were done.
    Exits with 130 (SIGINT) or 143 (SIGTERM), as ``tomoclass train`` does.
    """
    from tomoclass.train import fit

    result = fit(cfg, data, run_dir, **kwargs)
    if result.interrupted:
        log.warning("%s: training of %s stopped; rerun the same command to resume it",
                    result.interrupted, run_dir)
        raise SystemExit(130 if result.interrupted == "SIGINT" else 143)
    return result


def train_runs(jobs: Sequence[tuple[Any, ...]], ds_dir: Path, parallel: int = 1,
               progress: bool = False, log_dir: Path | None = None) -> None:
    """Train each ``(TrainConfig, run_dir[, dataset])`` (default dataset ``ds_dir``);
    ``parallel > 1`` runs that many at once.

    Parallel runs are separate ``python -m tomoclass train --config`` processes (safe with
    CUDA, unlike forking), each logging to ``log_dir/<run>.log`` (default: beside the run);
    sequential runs call :func:`tomoclass.train.fit` in-process.
    """
    jobs = [(j[0], j[1], j[2] if len(j) > 2 else ds_dir) for j in jobs]
    if parallel <= 1:
        for cfg, run_dir, data in jobs:
            fit_or_stop(cfg, data, run_dir, progress=progress)
        return
    # the workers import the tomoclass this process runs (installed, or on $PYTHONPATH)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(tomoclass.__file__).resolve().parents[1])]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
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
    """Evaluation on the test split (report in ``run_dir/evaluation_test``) of the tier's
    ``evaluate_checkpoint``, else the YAML's ``train.evaluate_checkpoint`` (``last``)."""
    which = str(bench.tier.get("evaluate_checkpoint")
                or (bench.raw.get("train") or {}).get("evaluate_checkpoint", "last"))
    return evaluate_run(run_dir, ds_dir, split="test", which=which,
                        batch_size=int(bench.tier.get("eval_batch_size", 32)), device=device)


def run_record(report, run_dir: Path, bench: Benchmark) -> dict[str, Any]:
    """Per-class F1, group means, macro F1, CAM score and the test F1 curve of one run."""
    from tomoclass.evaluate.compare import epoch_curve, read_metrics_log
    from tomoclass.evaluate.tier import report_record

    m = report.metrics
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
        **report_record(report),
        "cam": report.cam,
        "curve_test_f1": curves,  # of the monitored split: test unless the tier says val
        "monitored_split": bench.monitor,
        "train_seconds": round(seconds, 1),
        "train_samples_per_s": round(float(np.median(sps)), 2) if sps else None,
    }


def _old_scratch(folder: Path) -> bool:
    """A scratch folder made before the package's markers (its own marker file)."""
    return (folder / WORK_MARKER).is_file()


def prepare_work(work: Path) -> Path:
    """Empty scratch folder (:data:`SCRATCH_KIND`): a new one is made; an existing one is
    emptied as a whole only if this script made it (its marker, or the older
    ``WORK_MARKER`` file): everything in it is scratch."""
    if check_open_dir(work, SCRATCH_KIND, option="--work", legacy=_old_scratch):
        shutil.rmtree(work)
    return open_dir(work, SCRATCH_KIND, patterns=("*",), option="--work")


def check_scratch(work: Path) -> Path:
    """A scratch folder of :func:`prepare_work` to reuse as it is (``--reuse``)."""
    if not check_open_dir(work, SCRATCH_KIND, option="--work", legacy=_old_scratch):
        raise InputError("--reuse: no scratch folder of this script to reuse", path=work,
                         field="--work")
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


def build_data(bench: Benchmark, templates, dose: float, work: Path, clock: Clock, tag: str):
    sim_cfg = simulation_config(bench, dose)
    written = simulate(work / f"tomograms{tag}", templates, sim_cfg,
                       processes=int(bench.tier.get("sim_processes", 1)))
    clock.lap(f"simulate{tag}")
    ds_dir = work / f"dataset{tag}"
    rep = extract(ds_dir, written, bench, sim_cfg)
    clock.lap(f"extract{tag}")
    return ds_dir, rep, written, sim_cfg


def write_json(path: Path, data: dict[str, Any]) -> None:
    from tomoclass.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")
