"""``tomoclass models --pretrained`` / ``--add-pretrained``: argument glue and printing."""

from __future__ import annotations

import argparse
import json

from tomoclass.errors import InputError, TomoclassError


def _status(entry) -> str:
    from tomoclass.models.pretrained import resolve_pretrained

    try:
        resolve_pretrained(entry.name)
    except TomoclassError as exc:
        return "missing" if "missing" in str(exc) else "checksum mismatch"
    return "ok"


def list_pretrained(args: argparse.Namespace) -> int:
    """Print the registered pretrained models (``--json``: every field)."""
    from tomoclass.models.pretrained import list_pretrained as entries
    from tomoclass.models.pretrained import search_dirs

    models = entries()
    if args.json:
        print(json.dumps([{**m.to_dict(), "status": _status(m)} for m in models], indent=2))
        return 0
    if not models:
        print("no pretrained models registered (looked in "
              + ", ".join(str(d) for d in search_dirs()) + ")")
        return 0
    for m in models:
        kind = "detector (has background)" if m.detector else "classifier"
        if m.threshold is not None:
            kind += f", locate threshold {m.threshold:g}"
        if m.radii_angstrom:
            kind += ", radii " + ", ".join(f"{c} {r:g} Å" for c, r in m.radii_angstrom.items())
        print(f"{m.name}: {m.model}, {len(m.classes)} classes, {kind}, "
              f"{m.voxel_size_angstrom or '?'} Å, box {m.box or '?'}; file {_status(m)}")
        print(f"  classes: {', '.join(m.classes)}")
        if m.description:
            print(f"  {m.description}")
        print(f"  trained by: {m.training_command or '?'} (commit {m.commit or '?'})")
        val = m.metrics.get("validation", {})
        if "val_macro_f1" in val:
            print(f"  validation macro F1 {val['val_macro_f1']:.4f} (epoch {val.get('epoch')})")
        for key, value in m.metrics.items():
            if key != "validation":
                print(f"  {key}: {json.dumps(value)[:200]}")
        print(f"  sha256 {m.sha256}, {m.directory}/{m.file}")
    return 0


def add_pretrained(args: argparse.Namespace) -> int:
    """Register ``--from-run`` as ``--add-pretrained NAME`` and print the entry."""
    from tomoclass.locate.calibration import run_threshold
    from tomoclass.locate.radii import parse_radii
    from tomoclass.train.pretrained import register_run

    if not args.from_run:
        raise InputError("--add-pretrained needs --from-run RUN", field="--from-run")
    threshold, source = run_threshold(args.from_run, args.which)
    entry = register_run(args.from_run, args.add_pretrained, which=args.which,
                         directory=args.pretrained_dir, training_command=args.training_command,
                         metrics_file=args.metrics, description=args.description,
                         threshold=threshold if source.startswith("calibrated") else None,
                         radii_voxels=parse_radii(args.radius))
    print(f"registered {entry.name}: {entry.directory}/{entry.file} (sha256 {entry.sha256}); "
          f"use it as --run {entry.name}")
    return 0
