"""Joint dose calibration of a tier: which dose of a sweep puts all three models nearest the paper.

    # one small_tier.py results folder per dose (same tier, preset and epochs; see its --dose):
    python benchmarks/calibrate_tier.py benchmarks/results/small12_dose80 \\
        benchmarks/results/small12 benchmarks/results/small12_dose150 --out benchmarks/results

Issue 18, item 5. Each folder's ``summary.json`` gives every model's per-class F1 (mean over
its seeds) and its ``protocol.json`` the dose; the paper's Table 2 comes from the benchmark
YAML. :func:`tomoclass.evaluate.dose_fit.joint_dose_fit` picks the dose with the least mean
squared difference over all (shrec_cnn, densenet3d, dilated_densenet3d) × class cells and
reports the mean absolute difference of every dose. Folders of different tiers, presets,
epochs or classes are refused (only the dose may differ). Writes
``OUT/calibration_<tier>.json`` and ``.md``; freezing the chosen dose in the YAML is left to a
person (it changes every tier's data).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shrec12 import DEFAULT_CONFIG, load_benchmark, write_json

from tomoclass.errors import InputError, TomoclassError
from tomoclass.evaluate.dose_fit import dose_fit_markdown, joint_dose_fit
from tomoclass.evaluate.seeds import seed_means
from tomoclass.io.atomic import atomic_path
from tomoclass.provenance import git_commit

SAME = ("tier", "preset", "epochs", "classes")


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError("missing (run benchmarks/small_tier.py into this folder first)",
                         path=path) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable ({exc})", path=path) from exc


def load_point(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(point for joint_dose_fit, protocol)`` of one small_tier.py results folder."""
    proto = _read(folder / "protocol.json")
    summary = _read(folder / "summary.json")
    try:
        dose = float(proto["data"]["dose"])
        per_model = summary["summary"]["per_model"]
        f1 = seed_means(per_model)
        seeds = {m: list(pm["seeds"]) for m, pm in per_model.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"lacks {exc}", path=folder / "summary.json",
                         field="summary.per_model") from exc
    return {"dose": dose, "f1": f1, "seeds": seeds, "source": str(folder)}, proto


def calibrate(folders: Sequence[Path], config: Path = DEFAULT_CONFIG,
              data_root: Path | None = None) -> dict[str, Any]:
    """The joint fit over the folders' doses, with the tier's paper values."""
    points, protos = zip(*(load_point(f) for f in folders), strict=True)
    ref = protos[0]
    for f, p in zip(folders[1:], protos[1:], strict=True):
        diff = [k for k in SAME if p.get(k) != ref.get(k)]
        if diff:
            raise InputError(f"another protocol than {folders[0]} (differs in "
                             f"{', '.join(diff)}); only the dose may differ",
                             path=f / "protocol.json", field=diff[0])
    bench = load_benchmark(config, ref["tier"], data_root)
    fit = joint_dose_fit(points, bench.paper_f1(), list(ref["classes"]))
    return {**fit, "tier": ref["tier"], "preset": ref["preset"], "epochs": ref["epochs"],
            "folders": [str(f) for f in folders], "git_commit": git_commit(),
            "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    p = argparse.ArgumentParser(prog="calibrate_tier.py", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="small_tier.py results, one per dose")
    p.add_argument("--out", required=True, type=Path, help="folder of the JSON and Markdown")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--data-root", type=Path)
    args = p.parse_args(argv)
    try:
        rec = calibrate(args.folders, args.config, args.data_root)
    except TomoclassError as exc:
        print(f"calibrate_tier.py: error: {exc}", file=sys.stderr)
        return 2
    base = args.out / f"calibration_{rec['tier']}"
    write_json(base.with_suffix(".json"), rec)
    with atomic_path(base.with_suffix(".md")) as tmp:
        tmp.write_text(dose_fit_markdown(rec, f"Joint dose calibration, tier `{rec['tier']}`"))
    c = rec["chosen"]
    print(f"chosen dose {c['dose']:g} e/A^2: mean |ours - paper| {c['mean_abs']:.3f} over "
          f"{rec['cells']} cells{' (at the edge of the sweep)' if rec['at_edge'] else ''}")
    print(f"wrote {base.with_suffix('.json')} and {base.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
