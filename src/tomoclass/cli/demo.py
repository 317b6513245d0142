"""``tomoclass demo``: the pipeline on built-in phantoms (:mod:`tomoclass.workflows.demo`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tomoclass.evaluate.seeds import format_mean_sd
from tomoclass.workflows.demo import DemoConfig, run_demo


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="simulate -> train -> evaluate -> compare -> CAM on built-in phantoms",
        description="Run the whole pipeline on built-in phantoms (no files needed; about 10 "
                    "minutes on 2 CPU cores): evaluate the shipped demo models (several "
                    "training seeds each) on freshly simulated tomograms, train one model "
                    "briefly to show the loop works, draw class activation maps, and print "
                    "where the report is.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    defaults = DemoConfig()
    p.add_argument("--epochs", type=int, default=defaults.epochs,
                   help="epochs of the short training run")
    p.add_argument("--n-particles", type=int, default=defaults.n_particles,
                   help="particles per tomogram")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--quick", action="store_true",
                   help="a much smaller run (one epoch, tiny tomograms, no shipped models) to "
                        "check the set-up")
    p.add_argument("--no-shipped", action="store_true",
                   help="do not evaluate the shipped demo models")
    p.set_defaults(func=run)


def quick_config(seed: int = 0) -> DemoConfig:
    """A seconds-scale demo for smoke tests: it checks the plumbing, not the accuracy."""
    return DemoConfig(shape_zyx=(40, 96, 96), n_particles=24, n_train=2, n_val=1, n_test=1,
                      box=24, border="pad", epochs=1, batch_size=16,
                      classes=("globule", "rod", "ring6"),
                      models=("dilated_densenet3d", "densenet3d"), shipped_prefix=None,
                      seed=seed, cam_particles=3)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the summary."""
    if args.quick:
        cfg = quick_config(args.seed)
    else:
        cfg = dataclasses.replace(DemoConfig(), epochs=args.epochs, n_particles=args.n_particles,
                                  seed=args.seed)
    if args.no_shipped:
        cfg = dataclasses.replace(cfg, shipped_prefix=None)
    result = run_demo(args.out, cfg, progress=not args.quiet)
    shipped = result.shipped.get("per_model", {})
    for model, pm in shipped.items():
        print(f"{model} (shipped, {len(pm['seeds'])} training seeds): test macro F1 = "
              f"{format_mean_sd(pm['macro_f1'])}")
    test = (result.shipped.get("paired_tests") or {}).get("macro")
    if test and test["n"]:
        sd = "" if test["sd"] is None else f" ± {test['sd']:.3f}"
        p = "" if test["p_t"] is None else f", paired t-test p = {test['p_t']:.2g}"
        print(f"dilated - plain, paired by seed: {test['mean']:+.3f}{sd}{p}")
    for model, f1 in result.macro_f1.items():
        print(f"{model} (trained here for {cfg.epochs} epochs, not converged): test macro F1 = "
              f"{f1:.3f}")
    if result.baseline:
        print(f"nearest class mean (no training, the floor): test macro F1 = "
              f"{result.baseline['macro_f1']:.3f}")
    print(f"chance level: {1.0 / len(cfg.classes):.3f}")
    print(f"total time: {sum(result.seconds.values()):.0f} s")
    print(f"report: {result.report}")
    return 0
