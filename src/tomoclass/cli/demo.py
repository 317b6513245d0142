"""``tomoclass demo``: the pipeline on built-in phantoms (:mod:`tomoclass.workflows.demo`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tomoclass.workflows.demo import DemoConfig, run_demo


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="simulate -> train -> evaluate -> compare -> CAM on built-in phantoms",
        description="Run the whole pipeline on built-in phantoms (no files needed; about 10 "
                    "minutes on 2 CPU cores) and print where the report is.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    defaults = DemoConfig()
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs per model")
    p.add_argument("--n-particles", type=int, default=defaults.n_particles,
                   help="particles per tomogram")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--quick", action="store_true",
                   help="a much smaller run (one epoch, tiny tomograms) to check the set-up")
    p.set_defaults(func=run)


def quick_config(seed: int = 0) -> DemoConfig:
    """A seconds-scale demo for smoke tests: it checks the plumbing, not the accuracy."""
    return DemoConfig(shape_zyx=(40, 96, 96), n_particles=24, n_train=2, n_val=1, n_test=1,
                      box=24, border="pad", epochs=1, batch_size=16,
                      classes=("globule", "rod", "ring6"),
                      seed=seed, cam_particles=3)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the summary."""
    if args.quick:
        cfg = quick_config(args.seed)
    else:
        cfg = dataclasses.replace(DemoConfig(), epochs=args.epochs, n_particles=args.n_particles,
                                  seed=args.seed)
    result = run_demo(args.out, cfg, progress=not args.quiet)
    for model, f1 in result.macro_f1.items():
        print(f"{model}: test macro F1 = {f1:.3f}")
    print(f"chance level: {1.0 / len(cfg.classes):.3f}")
    print(f"total time: {sum(result.seconds.values()):.0f} s")
    print(f"report: {result.report}")
    return 0
