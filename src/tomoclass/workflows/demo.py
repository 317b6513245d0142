"""The end-to-end demo: simulate -> extract -> train -> evaluate -> compare -> CAM.

Everything runs on built-in phantoms (no files needed) and is sized for a laptop CPU:
a few small tomograms simulated physically (tilt series, CTF, dose noise, weighted
back-projection, as SHREC's data was made), subtomograms extracted at the ground-truth
positions with a train/val/test split by tomogram, the 3D-Dilated-DenseNet and the plain
3D-DenseNet trained briefly, both evaluated, compared (Table 2 / Fig. 4 layout) and shown
with class activation maps (Fig. 5 layout).

The demo is a composition of the public functions of each stage; read :func:`run_demo` as a
worked example of the Python API.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tomoclass.data import ClassMap, extract_dataset
from tomoclass.errors import InputError
from tomoclass.evaluate.compare import compare_runs, write_comparison
from tomoclass.io import read_particles
from tomoclass.io.atomic import atomic_path
from tomoclass.io.outputs import prepare_dir
from tomoclass.simulate import ClassSpec, SimulationConfig, load_class_templates, simulate_tomograms
from tomoclass.train import fit, preset
from tomoclass.workflows.cam import cam_for_runs
from tomoclass.workflows.demo_report import (
    demo_record,
    shipped_markdown,
    summarize_demo_runs,
)
from tomoclass.workflows.evaluate import evaluate_run

log = logging.getLogger(__name__)

#: Built-in phantoms the demo classifies: two per size group, pairs of similar size and
#: different shape, so that size alone does not solve it.
DEMO_CLASSES = (
    "globule", "dimer",             # tiny
    "trimer", "rod",                # small
    "ring6",                        # medium
    "barrel28",                     # large
)


#: Registered pretrained models named ``<prefix>-<model>-s<seed>`` are the demo's shipped models
#: (trained by ``benchmarks/demo_models.py`` on another seed's tomograms).
SHIPPED_PREFIX = "demo-phantoms"

__all__ = ["DEMO_CLASSES", "SHIPPED_PREFIX", "DemoConfig", "DemoData", "DemoResult",
           "demo_record", "run_demo", "shipped_markdown", "simulate_demo_data",
           "summarize_demo_runs"]


#: What the demo writes in its folder (the sub-folders are outputs with their own marker).
DEMO_PATTERNS = ("report.md", "demo.json", "simulation.yaml", "cam*", "tomograms/*", "dataset/*",
                 "runs/*", "compare/*")


@dataclass
class DemoConfig:
    """Size of the demo. Defaults fit in about 10 minutes on 2 CPU cores.

    Attributes
    ----------
    classes
        Built-in phantom names (``tomoclass.simulate.list_phantoms()``).
    shape_zyx
        Tomogram shape (voxels of ``voxel_size_angstrom``).
    n_particles
        Particles placed per tomogram.
    n_train, n_val, n_test
        Tomograms per split (the split is by tomogram, as SHREC's).
    dose_e_per_angstrom2
        Total dose of each tilt series (sets the noise level).
    box
        Subtomogram edge (voxels). 24 rather than the paper's 32 keeps training inside the
        time budget on a CPU (a 24³ sample costs 42% of a 32³ one).
    border
        ``"skip"`` boxes that cross the tomogram border (padding them would mark particles
        near the surface, and so leak position into the label), or ``"pad"``.
    epochs, batch_size
        Training length and batch of each model.
    models
        Registered model names to train and compare.
    seed
        Seed of simulation, splits and training.
    cam_particles
        Rows of the CAM figure.
    """

    classes: Sequence[str] = DEMO_CLASSES
    shape_zyx: tuple[int, int, int] = (96, 192, 192)
    n_particles: int = 200
    n_train: int = 3
    n_val: int = 1
    n_test: int = 2
    voxel_size_angstrom: float = 10.0
    dose_e_per_angstrom2: float = 110.0
    box: int = 32
    border: str = "skip"
    epochs: int = 3
    batch_size: int = 16
    models: Sequence[str] = ("dilated_densenet3d", "densenet3d")
    seed: int = 0
    cam_particles: int = 8


@dataclass
class DemoResult:
    """What :func:`run_demo` produced (all paths under ``out_dir``)."""

    out_dir: Path
    report: Path
    macro_f1: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def _simulation_config(cfg: DemoConfig):

    n_tomo = cfg.n_train + cfg.n_val + cfg.n_test
    return SimulationConfig(
        seed=cfg.seed,
        voxel_size_angstrom=cfg.voxel_size_angstrom,
        classes=[ClassSpec(source=name) for name in cfg.classes],
        tomogram={
            "shape_zyx": tuple(cfg.shape_zyx),
            "n_particles": cfg.n_particles,
            "n_tomograms": n_tomo,
            "dose_e_per_angstrom2": cfg.dose_e_per_angstrom2,
            "write_density": True,
        },
    )


@dataclass
class DemoData:
    """What :func:`simulate_demo_data` wrote."""

    tomograms: Path
    dataset: Path
    extract: Any
    seconds: dict[str, float] = field(default_factory=dict)


def simulate_demo_data(out: str | Path, cfg: DemoConfig) -> DemoData:
    """Simulate the demo's tomograms and extract their subtomograms, split by tomogram.

    Writes ``out/tomograms/`` (tilt series reconstructed by weighted back-projection, with the
    noise-free density beside each for CAM scoring), ``out/simulation.yaml`` and
    ``out/dataset/`` (boxes at the ground-truth positions; the first ``n_train`` tomograms
    train, the next ``n_val`` validate, the rest test). The simulation is deterministic in
    ``cfg.seed``: the shipped demo models were trained on another seed's tomograms
    (``benchmarks/demo_models.py``).

    Parameters
    ----------
    out
        Folder to write into (created by the caller, e.g. with
        :func:`tomoclass.io.outputs.prepare_dir`).
    cfg
        Sizes, classes, dose and seed.
    """
    out = Path(out)
    t0 = time.perf_counter()
    sim = _simulation_config(cfg)
    templates = load_class_templates(sim)
    sim_dir = out / "tomograms"
    written = simulate_tomograms(sim_dir, templates, sim, prefix="tomo")
    # beside, not inside, tomograms/: that folder's own marker lists only what the simulator wrote
    sim.to_yaml(out / "simulation.yaml")
    t1 = time.perf_counter()
    # each ground-truth file names its tomogram (tomo_000_gt.txt -> tomo_000)
    table = pd.concat([read_particles(w["ground_truth"]) for w in written], ignore_index=True)
    names = [Path(w["tomogram"]).stem for w in written]
    val_names = names[cfg.n_train:cfg.n_train + cfg.n_val]
    test_names = names[cfg.n_train + cfg.n_val:]
    extract = extract_dataset(
        out / "dataset", [w["tomogram"] for w in written], table,
        box=cfg.box,
        border=cfg.border,
        class_map=ClassMap([t.name for t in templates], [t.size_group for t in templates]),
        clean_tomograms=[w["density"] for w in written],
        split_method="tomogram",
        split_options={"test_tomograms": test_names, "val_tomograms": val_names},
        provenance={"made_by": "tomoclass demo", "simulation": sim.to_dict()},
    )
    t2 = time.perf_counter()
    return DemoData(tomograms=sim_dir, dataset=out / "dataset", extract=extract,
                    seconds={"simulate": round(t1 - t0, 1), "extract": round(t2 - t1, 1)})


def run_demo(out_dir: str | Path, config: DemoConfig | None = None, *,
             progress: bool = True) -> DemoResult:
    """Run the whole pipeline on built-in phantoms and write a report.

    Parameters
    ----------
    out_dir
        Output folder: ``tomograms/``, ``dataset/``, ``runs/<model>/``, ``compare/``,
        ``cam.png`` and ``report.md``. An existing demo there is replaced stage by stage.
    config
        Size of the demo (default :class:`DemoConfig`).
    progress
        Show progress bars.

    Returns
    -------
    DemoResult
        Macro F1 per model on the test tomogram, stage timings and the report's path.
    """
    cfg = config or DemoConfig()
    if not cfg.models:
        raise InputError("the demo needs at least one model", field="models")
    out = prepare_dir(out_dir, "demo", patterns=DEMO_PATTERNS)
    result = DemoResult(out_dir=out, report=out / "report.md")
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        result.seconds[stage] = round(now - clock, 1)
        clock = now
        log.info("demo: %s done in %.1f s", stage, result.seconds[stage])

    # 1. simulate tomograms, 2. extract subtomograms at the ground-truth positions
    data = simulate_demo_data(out, cfg)
    result.seconds.update(data.seconds)
    clock = time.perf_counter()
    sim_dir, ds_dir, extract = data.tomograms, data.dataset, data.extract

    # 3. train every model with the same protocol (default preset, shortened)
    run_dirs = []
    for name in cfg.models:
        tcfg = preset("default", model=name, epochs=cfg.epochs, batch_size=cfg.batch_size,
                      seed=cfg.seed, lr_step_epochs=max(1, cfg.epochs - 1),
                      checkpoint_every=1, warmup_epochs=min(1.0, cfg.epochs / 4))
        run_dir = out / "runs" / name
        fit(tcfg, ds_dir, run_dir, progress=progress)
        run_dirs.append(run_dir)
        lap(f"train {name}")

    # 4. evaluate on the test tomogram, 5. compare, 6. CAM figure
    reports = []
    for name, run_dir in zip(cfg.models, run_dirs, strict=True):
        rep = evaluate_run(run_dir, ds_dir, split="test")
        reports.append(rep)
        result.macro_f1[name] = float(rep.metrics.macro_f1)
    lap("evaluate")
    comparison = write_comparison(compare_runs(run_dirs, reports=reports), out / "compare")
    cam = cam_for_runs(run_dirs, ds_dir, out / "cam.png", n=cfg.cam_particles,
                       split="test", orthogonal=False, seed=cfg.seed)
    lap("compare + cam")

    result.files = {
        "tomograms": str(sim_dir),
        "dataset": str(extract.path),
        "compare": str(out / "compare"),
        "cam_figure": str(cam.figure),
        **{f"evaluation_{n}": str(r.out_dir) for n, r in zip(cfg.models, reports, strict=True)},
        **{f"compare_{k}": str(v) for k, v in comparison.files.items()},
    }
    _write_report(result, cfg, extract, comparison)
    return result


def _write_report(result: DemoResult, cfg: DemoConfig, extract, comparison) -> None:

    total = sum(result.seconds.values())
    chance = 1.0 / len(cfg.classes)
    lines = [
        "# tomoclass demo report",
        "",
        f"{len(cfg.classes)} built-in phantom classes ({', '.join(cfg.classes)}); "
        f"{cfg.n_train + cfg.n_val + cfg.n_test} simulated tomograms of "
        f"{'x'.join(map(str, cfg.shape_zyx))} voxels (z, y, x) at {cfg.voxel_size_angstrom:g} Å, "
        f"{cfg.n_particles} particles each; split by tomogram "
        f"({cfg.n_train} train / {cfg.n_val} val / {cfg.n_test} test); {cfg.box}³ boxes; "
        f"{cfg.epochs} epochs per model, batch {cfg.batch_size}, seed {cfg.seed}.",
        "",
        f"Subtomograms extracted: {extract.n_written} ({extract.n_padded} padded, "
        f"{extract.n_border_skipped} crossing the border skipped).",
        "",
        "| model | test macro F1 |",
        "|---|---|",
        *[f"| {m} | {f:.3f} |" for m, f in result.macro_f1.items()],
        "",
        f"Chance level (uniform guess) is {chance:.3f}.",
        "",
        "## Where things are",
        "",
        *[f"- {k}: `{v}`" for k, v in result.files.items()],
        "",
        "## Time per stage (s)",
        "",
        *[f"- {k}: {v}" for k, v in result.seconds.items()],
        f"- total: {total:.1f}",
        "",
    ]
    table = comparison.files.get("markdown")
    if table and Path(table).exists():
        lines += ["## Comparison (Table 2 layout)", "", Path(table).read_text(), ""]
    with atomic_path(result.report) as tmp:
        tmp.write_text("\n".join(lines))
    with atomic_path(result.out_dir / "demo.json") as tmp:
        tmp.write_text(json.dumps({
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "macro_f1": result.macro_f1, "seconds": result.seconds, "files": result.files,
        }, indent=2, default=str))
