"""copick options shared by ``extract``/``inspect`` (input) and ``locate``/``predict`` (output).

Argument glue only: the work is done by :mod:`tomoclass.io.copick_io`.
"""

from __future__ import annotations

import argparse

import pandas as pd

from tomoclass.errors import InputError


def add_input_args(p: argparse.ArgumentParser) -> None:
    """``--copick-config`` and what to read from the project."""
    g = p.add_argument_group("copick project (instead of, or besides, MRC files and tables)")
    g.add_argument("--copick-config", metavar="JSON", help="copick configuration file")
    g.add_argument("--copick-run", nargs="+", metavar="RUN",
                   help="runs to read (default: all); a run is a tomogram")
    g.add_argument("--voxel-spacing", type=float, metavar="A",
                   help="voxel spacing (Å) of the tomograms to read (required with "
                   "--copick-config)")
    g.add_argument("--tomo-type", default="wbp", help="tomogram type (default wbp)")
    g.add_argument("--object", nargs="+", metavar="NAME",
                   help="pickable objects whose picks become classes (default: all particles)")
    g.add_argument("--copick-user", help="read only picks by this user/tool id")
    g.add_argument("--copick-session", help="read only picks of this session id")


def read_inputs(args: argparse.Namespace) -> tuple[list, pd.DataFrame | None]:
    """``(tomogram paths, picks table)`` of the copick options; ``([], None)`` without them."""
    if not getattr(args, "copick_config", None):
        for opt in ("copick_run", "voxel_spacing", "object", "copick_user", "copick_session"):
            if getattr(args, opt, None) is not None:
                flag = "--" + opt.replace("_", "-")
                raise InputError(f"{flag} selects from a copick project: give --copick-config",
                                 field=flag)
        return [], None
    from tomoclass.io import copick_io

    if args.voxel_spacing is None:
        raise InputError("--copick-config needs --voxel-spacing (Å)", field="--voxel-spacing")
    root = copick_io.open_project(args.copick_config)
    runs = copick_io.select_runs(root, args.copick_run)
    paths = copick_io.tomogram_paths(root, runs, args.voxel_spacing, args.tomo_type)
    table = copick_io.read_picks(root, runs, args.voxel_spacing, args.object,
                                 user_id=args.copick_user, session_id=args.copick_session)
    return paths, table


def add_output_args(p: argparse.ArgumentParser) -> None:
    """``--copick-out`` and the names picks are written under."""
    g = p.add_argument_group("copick output (besides --out)")
    g.add_argument("--copick-out", metavar="JSON",
                   help="also write the picks into this copick project (one picks set per run "
                   "and class; classes must be pickable objects, runs must exist)")
    g.add_argument("--copick-out-run", metavar="RUN",
                   help="run of a single tomogram (default: the tomogram's name)")
    g.add_argument("--copick-out-user", default="tomoclass",
                   help="user/tool id of the written picks (default tomoclass)")
    g.add_argument("--copick-out-session", default="0",
                   help="session id of the written picks (default 0; must not exist yet)")


def write_output(args: argparse.Namespace, tables: list[pd.DataFrame],
                 tomograms: list, voxel_size_angstrom: float | None = None) -> None:
    """Write the tables into ``--copick-out`` if given and print what was written.

    ``tables`` in voxels of ``tomograms`` (one each; their voxel size is the override
    ``voxel_size_angstrom`` or read from each tomogram's header).
    """
    if not getattr(args, "copick_out", None):
        return
    from tomoclass.io import copick_io
    from tomoclass.io.naming import tomogram_name
    from tomoclass.io.volume import read_volume

    sizes = {}
    for frame, tomo in zip(tables, tomograms, strict=True):
        size = voxel_size_angstrom or read_volume(tomo, check="none").voxel_size_angstrom
        names = set(frame["tomogram"].astype(str)) if len(frame) else {tomogram_name(tomo)}
        sizes.update({n: size for n in names})
    table = pd.concat(tables, ignore_index=True)

    names = set(table["tomogram"].astype(str)) if len(table) else set()
    run_names = None
    if args.copick_out_run:
        if len(names) > 1:
            raise InputError("--copick-out-run names one tomogram's run; these picks come from "
                             f"{len(names)} tomograms", field="--copick-out-run")
        run_names = {n: args.copick_out_run for n in names}
    root = copick_io.open_project(args.copick_out)
    written = copick_io.write_picks(root, table, sizes,
                                    user_id=args.copick_out_user,
                                    session_id=args.copick_out_session, run_names=run_names)
    for run, objects in written.items():
        counts = ", ".join(f"{o} {n}" for o, n in objects.items())
        print(f"copick {args.copick_out}: run {run}: {counts} (user {args.copick_out_user}, "
              f"session {args.copick_out_session})")
