"""How much class identity simulated boxes hold: the signal-known-exactly ideal observer.

    # a tomoclass-simulated dataset (noise-free boxes and poses recorded), e.g. a tier's:
    python benchmarks/ideal_observer.py ~/tomoclass_small12/dataset \\
        ~/tomoclass_small12_dose80/dataset --rotations 5000 --out R/observer_small12.json

Issue 18: the tiny classes end at the no-training floor on every small12 run, their size found
and their identity not (``benchmarks/group_confusion.py``). Is the identity in the boxes at
this dose, 10 Å voxels and 20 Å template resolution? :func:`tomoclass.evaluate.observer.
observe_dataset` classifies the test boxes as an observer told the pose, the position, every
class's density and the imaging would (optimal for Gaussian noise), and, with ``--rotations``,
as one told everything but the pose, which tries that many Haar-uniform poses per class. Both
use the exact templates the simulator placed: what they score is an upper reference for a
classifier that must learn the shapes from the training boxes, not a rival method.

The templates are rebuilt from the simulation configuration the dataset records
(``provenance.simulation``); ``--structures DIR`` finds the structure files there by name
when the recorded paths are gone. Writes ``--out`` (never replaced) and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tomoclass.data import open_dataset
from tomoclass.errors import InputError, TomoclassError
from tomoclass.evaluate.observer import describe, observe_dataset
from tomoclass.provenance import git_commit, machine_info, new_result_file, write_result
from tomoclass.simulate import load_class_templates
from tomoclass.simulate.config import SimulationConfig


def _decisions(d: dict[str, Any]) -> dict[str, Any]:
    """An observer's decisions as JSON: the metrics' own record, and its accuracy within each
    true group."""
    return {**d["metrics"].to_dict(), "within_group": d["within_group"]}


def observe(dataset: Path, rotations: int, seed: int, structures: Path | None) -> dict[str, Any]:
    """The observer's record of one dataset."""
    store = open_dataset(dataset)
    sim = (store.meta.get("provenance") or {}).get("simulation")
    if not sim:
        raise InputError("records no simulation configuration (not a tomoclass-simulated "
                         "dataset)", path=dataset, field="provenance.simulation")
    if structures is not None:
        for c in sim.get("classes", []):
            src = Path(str(c.get("source", "")))
            if src.suffix and not src.exists():
                c["source"] = str(structures / src.name)
    t0 = time.perf_counter()
    templates = load_class_templates(SimulationConfig.from_dict(sim, path=dataset))
    res = observe_dataset(store, templates, rotations=rotations, seed=seed)
    rec = {"dataset": str(dataset), "dose": (sim.get("tomogram") or {}).get(
               "dose_e_per_angstrom2"),
           "n_test": res["n_boxes"], "render_check": res["render_check"],
           "pose_known": _decisions(res)}
    if "pose_unknown" in res:
        rec["pose_unknown"] = {**_decisions(res["pose_unknown"]), "rotations": rotations,
                               "seed": seed}
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown: macro F1, and per group F1 and accuracy within the group, per observer."""
    lines = ["| dataset | dose | observer | macro F1 | group: F1 / own class within it "
             "(chance) |", "|---|---|---|---|---|"]
    for r in records:
        for key, label in (("pose_known", "pose known"), ("pose_unknown", "pose unknown")):
            if key not in r:
                continue
            d = r[key]
            if key == "pose_unknown":
                label += f" ({d['rotations']} poses)"
            s = d["summary"]
            groups = "; ".join(f"{g} {s['group_f1'][g]:.3f} / {w['accuracy']:.3f} "
                               f"({w['chance']:.2f})" for g, w in d["within_group"].items())
            name = "/".join(Path(r["dataset"]).parts[-2:])
            lines.append(f"| {name} | {r['dose']} | {label} | "
                         f"{s['macro_f1']:.3f} | {groups} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    p = argparse.ArgumentParser(prog="ideal_observer.py", description=__doc__.split("\n\n")[0])
    p.add_argument("datasets", nargs="+", type=Path, help="tomoclass-simulated datasets")
    p.add_argument("--rotations", type=int, default=0,
                   help="poses tried by the observer not told the pose (0: skip it; 5000 "
                        "takes ~2 min per 180 boxes of 9 classes on one core)")
    p.add_argument("--seed", type=int, default=0, help="of the poses tried")
    p.add_argument("--structures", type=Path, help="folder of the structure files")
    p.add_argument("--out", type=new_result_file, help="JSON result (never replaced)")
    args = p.parse_args(argv)
    try:
        records = [observe(d, args.rotations, args.seed, args.structures)
                   for d in args.datasets]
    except TomoclassError as exc:
        print(f"ideal_observer.py: error: {exc}", file=sys.stderr)
        return 2
    text = table(records)
    print(text)
    if args.out:
        res = {"benchmark": "ideal_observer", **describe(), "records": records,
               "markdown": text, "git_commit": git_commit(), "machine": machine_info(),
               "command": " ".join(["ideal_observer.py", *map(str, argv or sys.argv[1:])])}
        print(f"wrote {write_result('ideal_observer', res, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
