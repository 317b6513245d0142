"""Joint dose calibration of a tier: which dose of a sweep puts all three models nearest the paper.

    # one small_tier.py results folder per dose (same tier, preset and epochs; see its --dose):
    python benchmarks/calibrate_tier.py benchmarks/results/small12_dose80 \\
        benchmarks/results/small12 benchmarks/results/small12_dose150 --out benchmarks/results
    # only some models (e.g. one that stays at chance on this tier left out) and seeds:
    python benchmarks/calibrate_tier.py R/small12_dose80 R/small12 R/small12_dose150 \\
        --models densenet3d,dilated_densenet3d --seeds 0 --out R/calibration_densenets
    # fit the dose only where it acts (the tiny group's gap is reported, not fitted), and
    # choose where those cells are on average as hard as in the paper:
    python benchmarks/calibrate_tier.py R/small12_dose80 R/small12 --fit-groups small,medium \\
        --criterion bias --models densenet3d,dilated_densenet3d --seeds 0-2 \\
        --out R/calibration_small_medium_bias

Issue 18, item 5. Each folder's run records (``runs/<model>_seed<s>.json``) give every run's
per-class F1 and its ``protocol.json`` the dose; the paper's Table 2 comes from the benchmark
YAML. :func:`tomoclass.evaluate.dose_fit.joint_dose_fit` picks the dose with the least mean
squared difference over all (model, class) cells of the models compared (default the paper's
three: shrec_cnn, densenet3d, dilated_densenet3d) and reports the mean absolute difference of
every dose. The cells are means over the same seeds at every dose (default: the seeds every
model has at every dose), because more seeds at one dose would favour it; where a dose has more
seeds, the spread of single-seed objectives says how much of the margin is seed noise. Folders of
different tiers, presets, epochs or classes are refused (only the dose may differ). Writes
``OUT/calibration_<tier>.json`` and ``.md``, refusing to replace either; freezing the chosen dose
in the YAML is left to a person (it changes every tier's data).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shrec12 import DEFAULT_CONFIG, load_benchmark, write_json
from tier_data import parse_seeds, read_protocol

from tomoclass.errors import InputError, TomoclassError
from tomoclass.evaluate.dose_fit import (
    common_seeds,
    dose_fit_markdown,
    fit_class_names,
    joint_dose_fit,
    one_seed_readings,
    seed_mean_f1,
)
from tomoclass.evaluate.seeds import MODELS
from tomoclass.evaluate.tier import group_runs, load_run_records
from tomoclass.io.atomic import atomic_path
from tomoclass.provenance import REFUSE_EXISTING, git_commit

SAME = ("tier", "preset", "epochs", "classes")


def load_folder(folder: Path) -> tuple[dict[str, Any], float, dict[str, dict[int, Any]]]:
    """``(protocol, dose, {model: {seed: run record}})`` of one small_tier.py results folder."""
    proto, dose = read_protocol(folder / "protocol.json")
    if dose is None:
        raise InputError("lacks the dose", path=folder / "protocol.json", field="data.dose")
    if not (folder / "runs").is_dir():
        raise InputError("no runs/ folder (run benchmarks/small_tier.py into this folder "
                         "first)", path=folder / "runs")
    return proto, dose, group_runs(load_run_records(folder / "runs"))


def calibrate(folders: Sequence[Path], config: Path = DEFAULT_CONFIG,
              data_root: Path | None = None, models: Sequence[str] = MODELS,
              seeds: Sequence[int] | None = None,
              fit_groups: Sequence[str] | None = None,
              criterion: str = "least_squares") -> dict[str, Any]:
    """The joint fit over the folders' doses, with the tier's paper values.

    ``seeds``: the seeds averaged at every dose (default: those every model has at every dose).
    ``fit_groups``: only these size groups' cells count in the objective; ``criterion``:
    ``least_squares`` or ``bias`` (:func:`tomoclass.evaluate.dose_fit.joint_dose_fit`).
    """
    protos, doses, runs = zip(*(load_folder(f) for f in folders), strict=True)
    ref = protos[0]
    for f, p in zip(folders[1:], protos[1:], strict=True):
        diff = [k for k in SAME if p.get(k) != ref.get(k)]
        if diff:
            raise InputError(f"another protocol than {folders[0]} (differs in "
                             f"{', '.join(diff)}); only the dose may differ",
                             path=f / "protocol.json", field=diff[0])
    names = list(ref["classes"])
    chosen = list(seeds) if seeds else common_seeds(runs, models)
    if not chosen:
        raise InputError(f"no seed has runs of every model ({', '.join(models)}) in every "
                         "folder; give --seeds or run the missing ones", path=folders[0],
                         field="seeds")
    bench = load_benchmark(config, ref["tier"], data_root)
    paper = bench.paper_f1()
    groups = [bench.size_groups[bench.names.index(n)] for n in names]
    fit_names = fit_class_names(names, groups, fit_groups)
    points = [{"dose": dose, "source": str(f),
               "f1": seed_mean_f1(r, chosen, models, names, source=str(f / "runs")),
               "seeds": {m: chosen for m in models},
               **one_seed_readings(r, paper, fit_names, models)}
              for f, dose, r in zip(folders, doses, runs, strict=True)]
    fit = joint_dose_fit(points, paper, names, models, size_groups=groups,
                         fit_groups=fit_groups, criterion=criterion)
    return {**fit, "tier": ref["tier"], "preset": ref["preset"], "epochs": ref["epochs"],
            "seeds_compared": chosen, "folders": [str(f) for f in folders],
            "git_commit": git_commit(),
            "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    p = argparse.ArgumentParser(prog="calibrate_tier.py", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="small_tier.py results, one per dose")
    p.add_argument("--out", required=True, type=Path, help="folder of the JSON and Markdown")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--data-root", type=Path)
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated models whose cells count (default: the paper's three)")
    p.add_argument("--seeds", type=parse_seeds,
                   help="seeds averaged at every dose, e.g. 0-1 (default: those every model "
                        "has at every dose)")
    p.add_argument("--fit-groups",
                   help="comma-separated size groups whose cells alone count in the objective, "
                        "e.g. small,medium (default: all); every group is still reported")
    p.add_argument("--criterion", choices=("least-squares", "bias"), default="least-squares",
                   help="least-squares: least mean squared difference from the paper over the "
                        "fitted cells (default); bias: their mean ours - paper nearest zero, "
                        "the dose at which they are on average as hard as in the paper")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    fit_groups = [g.strip() for g in (args.fit_groups or "").split(",") if g.strip()] or None
    try:
        rec = calibrate(args.folders, args.config, args.data_root, models, args.seeds,
                        fit_groups, args.criterion.replace("-", "_"))
        base = args.out / f"calibration_{rec['tier']}"
        for path in (base.with_suffix(".json"), base.with_suffix(".md")):
            if path.exists():
                raise InputError(REFUSE_EXISTING, path=path)
    except TomoclassError as exc:
        print(f"calibrate_tier.py: error: {exc}", file=sys.stderr)
        return 2
    write_json(base.with_suffix(".json"), rec)
    with atomic_path(base.with_suffix(".md")) as tmp:
        tmp.write_text(dose_fit_markdown(rec, f"Joint dose calibration, tier `{rec['tier']}`"))
    c = rec["chosen"]
    how = (f"mean ours - paper {c['mean_signed']:+.3f}" if rec["criterion_name"] == "bias"
           else f"mean |ours - paper| {c['mean_abs']:.3f}")
    print(f"chosen dose {c['dose']:g} e/A^2 ({args.criterion}): {how} over {rec['cells']} "
          f"cells{' (at the edge of the sweep)' if rec['at_edge'] else ''}")
    print(f"wrote {base.with_suffix('.json')} and {base.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
