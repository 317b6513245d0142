"""The end-to-end demo: simulate -> extract -> evaluate shipped models -> train -> CAM.

Everything runs on built-in phantoms (no files needed) and is sized for a laptop CPU (about
10 minutes on 2 cores): tomograms simulated physically (tilt series, CTF, dose noise, weighted
back-projection, as SHREC's data was made), 32³ subtomograms extracted at the ground-truth
positions with a train/val/test split by tomogram, then two things side by side:

- the **shipped models** (``demo-phantoms-<model>-s<seed>``: the 3D-Dilated-DenseNet and the
  plain 3D-DenseNet, several training seeds each, trained on other tomograms by
  ``benchmarks/demo_models.py``) evaluated on these fresh
  tomograms, reported as mean ± s.d. over seeds with the dilated - plain difference paired
  by seed: what the models can do, and how much of a difference is seed noise;
- a **short training run** on the fresh tomograms (2 epochs; the shipped ones trained 6,
  ~25 minutes each here), which shows the loop works and is not a ranking;

and the class activation maps (Fig. 5 layout) of the shipped models.

The demo is a composition of the public functions of each stage; read :func:`run_demo` as a
worked example of the Python API.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tomoclass.data import ClassMap, extract_dataset
from tomoclass.errors import InputError
from tomoclass.evaluate.baseline import baseline_record
from tomoclass.evaluate.seeds import plot_group_f1
from tomoclass.evaluate.tier import report_record
from tomoclass.io import read_particles
from tomoclass.io.atomic import atomic_path
from tomoclass.io.outputs import prepare_dir
from tomoclass.models.pretrained import get_pretrained, list_pretrained
from tomoclass.simulate import ClassSpec, SimulationConfig, load_class_templates, simulate_tomograms
from tomoclass.train import TrainConfig, fit, preset
from tomoclass.workflows.cam import cam_for_runs
from tomoclass.workflows.demo_report import (
    shipped_markdown,
    summarize_demo_runs,
)
from tomoclass.workflows.evaluate import evaluate_baseline, evaluate_run

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
           "run_demo", "short_run_config", "shipped_markdown", "simulate_demo_data",
           "summarize_demo_runs"]


#: What the demo writes in its folder (the sub-folders are outputs with their own marker).
DEMO_PATTERNS = ("report.md", "demo.json", "simulation.yaml", "cam*", "shipped_f1.png",
                 "tomograms/*", "dataset/*", "runs/*", "shipped/*", "baseline/*")


@dataclass
class DemoConfig:
    """Size of the demo. Defaults fit in about 10 minutes on 2 CPU cores.

    The classes, tomogram shape, particle count, voxel size, dose and box are those the
    shipped demo models were trained with (on data seed 1000; the demo's seed is 0): change
    them and the shipped models are evaluated off their training distribution.

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
        Subtomogram edge (voxels), the paper's 32.
    border
        ``"skip"`` boxes that cross the tomogram border (padding them would mark particles
        near the surface, and so leak position into the label), or ``"pad"``.
    epochs, batch_size
        Length and batch of the short training run.
    models
        Registered model names of the short training run (empty: none).
    seed
        Seed of simulation, splits and training.
    shipped_prefix
        Evaluate every registered pretrained model named ``<prefix>-<model>-s<seed>``
        (None: none).
    cam_particles
        Rows of the CAM figure.
    """

    classes: Sequence[str] = DEMO_CLASSES
    shape_zyx: tuple[int, int, int] = (96, 192, 192)
    n_particles: int = 200
    n_train: int = 2
    n_val: int = 1
    n_test: int = 2
    voxel_size_angstrom: float = 10.0
    dose_e_per_angstrom2: float = 110.0
    box: int = 32
    border: str = "skip"
    epochs: int = 2
    batch_size: int = 16
    models: Sequence[str] = ("dilated_densenet3d",)
    seed: int = 0
    shipped_prefix: str | None = SHIPPED_PREFIX
    cam_particles: int = 8


@dataclass
class DemoResult:
    """What :func:`run_demo` produced (all paths under ``out_dir``).

    ``macro_f1``: the short runs' test macro F1 by model; ``shipped``: the shipped models'
    :func:`~tomoclass.workflows.demo_report.summarize_demo_runs` summary (empty without any);
    ``baseline``: the nearest-class-mean floor on the same test boxes
    (:func:`~tomoclass.evaluate.baseline.baseline_record`).
    """

    out_dir: Path
    report: Path
    macro_f1: dict[str, float] = field(default_factory=dict)
    shipped: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def shipped_models(prefix: str | None) -> dict[tuple[str, int], str]:
    """Registered pretrained names ``<prefix>-<model>-s<seed>``, keyed by (model, seed)."""
    if not prefix:
        return {}
    found = {}
    for entry in list_pretrained():
        m = re.fullmatch(rf"{re.escape(prefix)}-(.+)-s(\d+)", entry.name)
        if m and m.group(1) == entry.model:
            found[(entry.model, int(m.group(2)))] = entry.name
    return dict(sorted(found.items()))


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


def short_run_config(cfg: DemoConfig, model: str) -> TrainConfig:
    """The demo's short training run: the ``default`` preset at the peak rate throughout.

    A short run stepped down early stalls (issue 18: on the small12 tier a step after 4 of 10
    epochs held the dilated net at macro F1 0.50, where a constant rate reached 0.62 by epoch
    7; docs/reproduce.md), so the rate never steps inside the run.
    """
    return preset("default", model=model, epochs=cfg.epochs, batch_size=cfg.batch_size,
                  seed=cfg.seed, lr_step_epochs=cfg.epochs, checkpoint_every=1,
                  warmup_epochs=min(1.0, cfg.epochs / 4))


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
        Output folder: ``tomograms/``, ``dataset/``, ``shipped/<name>/`` (evaluation of each
        shipped model), ``runs/<model>/`` (the short run and its evaluation),
        ``shipped_f1.png``, ``cam.png``, ``report.md`` and ``demo.json``. An existing demo
        there is replaced stage by stage.
    config
        Size of the demo (default :class:`DemoConfig`).
    progress
        Show progress bars.

    Returns
    -------
    DemoResult
        The shipped models' seed summary, the short runs' macro F1, stage timings and the
        report's path.
    """
    cfg = config or DemoConfig()
    shipped = shipped_models(cfg.shipped_prefix)
    if not cfg.models and not shipped:
        raise InputError("the demo needs a model to train or a shipped model to evaluate",
                         field="models")
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
    ds_dir = data.dataset

    # the floor every model must beat: the nearest class mean, no training (seconds)
    base = evaluate_baseline(ds_dir, out / "baseline", split="test")
    result.baseline = baseline_record(base.metrics)
    lap("baseline")

    # 3. the shipped models (several seeds each) on these fresh tomograms
    records = {}
    for (model, seed), name in shipped.items():
        rep = evaluate_run(name, ds_dir, split="test", out_dir=out / "shipped" / name,
                           cam=False)
        records[(model, seed)] = report_record(rep)
    if records:
        result.shipped = summarize_demo_runs(records)
        result.files["shipped_figure"] = str(plot_group_f1(
            result.shipped, {}, out / "shipped_f1.png",
            "Shipped demo models on fresh tomograms (mean ± s.d. over seeds)"))
        lap("evaluate shipped")

    # 4. a short training run (the loop works; not converged, not a ranking)
    run_dirs = []
    for name in cfg.models:
        tcfg = short_run_config(cfg, name)
        run_dir = out / "runs" / name
        fit(tcfg, ds_dir, run_dir, progress=progress)
        result.macro_f1[name] = float(evaluate_run(run_dir, ds_dir, split="test").macro_f1)
        run_dirs.append(run_dir)
        lap(f"train + evaluate {name}")

    # 5. CAM figure: one column per shipped model of the first seed, else the short runs
    first = min((s for _, s in shipped), default=None)
    cam_runs = [n for (_, s), n in shipped.items() if s == first] or run_dirs
    cam = cam_for_runs(cam_runs, ds_dir, out / "cam.png", n=cfg.cam_particles,
                       split="test", orthogonal=False, seed=cfg.seed)
    lap("cam")

    result.files.update({
        "tomograms": str(data.tomograms),
        "dataset": str(data.extract.path),
        "cam_figure": str(cam.figure),
        **{f"shipped_{n}": str(out / "shipped" / n) for n in shipped.values()},
        **{f"run_{n}": str(r) for n, r in zip(cfg.models, run_dirs, strict=True)},
    })
    _write_report(result, cfg, data.extract, shipped)
    return result


def _write_report(result: DemoResult, cfg: DemoConfig, extract: Any,
                  shipped: dict[tuple[str, int], str]) -> None:

    total = sum(result.seconds.values())
    chance = 1.0 / len(cfg.classes)
    lines = [
        "# tomoclass demo report",
        "",
        f"{len(cfg.classes)} built-in phantom classes ({', '.join(cfg.classes)}); "
        f"{cfg.n_train + cfg.n_val + cfg.n_test} simulated tomograms of "
        f"{'x'.join(map(str, cfg.shape_zyx))} voxels (z, y, x) at {cfg.voxel_size_angstrom:g} Å, "
        f"{cfg.n_particles} particles each, dose {cfg.dose_e_per_angstrom2:g} e/Å², seed "
        f"{cfg.seed}; split by tomogram ({cfg.n_train} train / {cfg.n_val} val / "
        f"{cfg.n_test} test); {cfg.box}³ boxes. Subtomograms extracted: {extract.n_written} "
        f"({extract.n_border_skipped} crossing the border skipped). Chance level (uniform "
        f"guess) is {chance:.3f} macro F1.",
        "",
    ]
    lines += _shipped_section(result.shipped, shipped)
    if result.baseline:
        b = result.baseline
        groups = ", ".join(f"{g} {v:.3f}" for g, v in b["group_f1"].items() if v is not None)
        lines += [
            "## The floor: nearest class mean, no training", "",
            f"Each test box takes the class whose mean training box it correlates with most "
            f"(`tomoclass baseline`): macro F1 **{b['macro_f1']:.3f}** ({groups}). It sees "
            "little beyond each class's size and mass; a model near it has learned little "
            "more.", "",
        ]
    if result.macro_f1:
        lines += [
            f"## A short training run ({cfg.epochs} epochs, seed {cfg.seed})", "",
            "Trained here, on the fresh training tomograms, with the `default` preset:",
            "", "| model | test macro F1 |", "|---|---|",
            *[f"| {m} | {f:.3f} |" for m, f in result.macro_f1.items()], "",
            "This run shows that simulate -> extract -> train -> evaluate works on your "
            "machine. It is far from converged (the shipped models trained 6 epochs, ~25 "
            "CPU-minutes each), so its F1 says nothing about the models; one run of any "
            "length is not a ranking.", "",
        ]
    lines += [
        "## Where things are", "",
        *[f"- {k}: `{v}`" for k, v in result.files.items()], "",
        "## Time per stage (s)", "",
        *[f"- {k}: {v}" for k, v in result.seconds.items()],
        f"- total: {total:.1f}", "",
    ]
    with atomic_path(result.report) as tmp:
        tmp.write_text("\n".join(lines))
    with atomic_path(result.out_dir / "demo.json") as tmp:
        tmp.write_text(json.dumps({
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "shipped_models": {f"{m}_seed{s}": n for (m, s), n in shipped.items()},
            "shipped_summary": result.shipped, "macro_f1": result.macro_f1,
            "baseline": result.baseline,
            "seconds": result.seconds, "files": result.files,
        }, indent=2, default=str))


def _shipped_section(summary: dict[str, Any], shipped: dict[tuple[str, int], str]) -> list[str]:
    """The report's account of the shipped models (or why there are none)."""
    if not summary:
        return ["## Shipped models", "",
                "No shipped demo models were found (registered pretrained names "
                "`demo-phantoms-<model>-s<seed>`; `tomoclass models --pretrained`), so this "
                "report has only the short run.", ""]
    recorded = _recorded_spread(shipped)
    return [
        "## Shipped models on these fresh tomograms", "",
        "Each model was trained on other simulated tomograms (same classes, size and dose, "
        "another seed; `benchmarks/demo_models.py`), once per training seed, for as long as "
        "this CPU allowed (its record below says whether the validation loss had levelled "
        "off). Test macro F1 and the mean F1 per size group, mean ± s.d. over the training "
        "seeds:", "",
        shipped_markdown(summary), "",
        *recorded,
        "What these numbers can show: how well each trained model classifies these "
        "phantoms, and how much the result moves with nothing but the training seed. A "
        "dilated − plain difference smaller than its seed s.d., or with a large p-value, "
        "is not a difference. What they cannot show: the paper's claim on real "
        "macromolecules. The phantoms are built-in shapes, the seeds are few, and the "
        "test tomograms are a few hundred boxes. The paper's classes are measured in "
        "`benchmarks/results/` (small-particle tier `small12`; docs/reproduce.md).", "",
        "![shipped](shipped_f1.png)", "",
    ]


def _recorded_spread(shipped: dict[tuple[str, int], str]) -> list[str]:
    """Each shipped model's record from its training: test F1 and convergence.

    The test macro F1 is on its own simulation's test tomograms; "flat" is whether its
    validation loss had levelled off.
    """
    rows = []
    for (model, seed), name in shipped.items():
        entry = get_pretrained(name)
        recorded = (entry.metrics if entry else {}).get("recorded") or {}
        rec = recorded.get("test_on_training_simulation") or {}
        conv = recorded.get("convergence") or {}
        if rec.get("macro_f1") is None:
            continue
        flat = "–" if "converged" not in conv else (
            f"{'yes' if conv['converged'] else 'no'} ({conv.get('relative_range') or 0:.1%})")
        rows.append(f"| {model} | {seed} | {rec['macro_f1']:.3f} | {flat} |")
    if not rows:
        return []
    return ["Recorded when they were trained: test macro F1 on the training simulation's own "
            "test tomograms, and whether the validation loss was flat (range within 5 % of "
            "its mean over the last 3 epochs; the range in brackets). A model whose loss was "
            "still creeping down is near, not at, its end point.",
            "", "| model | seed | test macro F1 | flat |", "|---|---|---|---|", *rows, ""]
