"""``tomoclass simulate``: labelled subtomograms and tilt-series tomograms.

Subcommands ``subtomograms``, ``tomograms``, ``config`` (print the effective config as YAML)
and ``phantoms`` (list the built-in library). Options other than ``--config``, ``--out``,
``--seed``, ``--classes`` and ``--processes`` are generated from the fields of
:class:`tomoclass.simulate.config.SimulationConfig` (defaults live there only).
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path

from tqdm import tqdm

from tomoclass.simulate.config import (
    MicroscopeConfig,
    SimulationConfig,
    SubtomogramConfig,
    TomogramConfig,
)

_TOP_FIELDS = ("voxel_size_angstrom", "resolution_angstrom", "assembly")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` subcommand and its own subcommands."""
    p = sub.add_parser("simulate", help="simulate labelled subtomograms or tomograms",
                       description=__doc__.splitlines()[0])
    ss = p.add_subparsers(dest="simulate_command", metavar="MODE")
    ss.required = True

    ps = ss.add_parser("subtomograms", help="write a subtomogram dataset (store format)")
    _common(ps)
    ps.add_argument("--processes", type=int, default=1,
                    help="worker processes (output identical for any value)")
    _generated(ps, "subtomograms", SubtomogramConfig)
    _generated(ps, "microscope", MicroscopeConfig)
    ps.set_defaults(func=run_subtomograms)

    pt = ss.add_parser("tomograms", help="write tomograms with SHREC'21 ground truth")
    _common(pt)
    pt.add_argument("--prefix", default="tomo", help="tomogram file name prefix")
    bg = pt.add_argument_group("background boxes for a detector (docs/locate.md), written as "
                               "<name>_background.star beside each ground truth")
    bg.add_argument("--background", type=int, default=0, metavar="N",
                    help="N random positions per tomogram inside no particle")
    bg.add_argument("--background-offcentre", type=int, default=0, metavar="N",
                    help="N positions per tomogram off a particle's centre by more than its "
                    "radius")
    bg.add_argument("--background-max-offset", type=float, default=None, metavar="VOXELS",
                    help="largest off-centre shift (default twice the largest radius; use half "
                    "the box you will extract)")
    _generated(pt, "tomogram", TomogramConfig)
    _generated(pt, "microscope", MicroscopeConfig)
    pt.set_defaults(func=run_tomograms)

    pc = ss.add_parser("config", help="print the effective configuration as YAML")
    pc.add_argument("--config", type=Path, help="YAML config to start from")
    pc.set_defaults(func=run_config)

    pp = ss.add_parser("phantoms", help="list the built-in phantom library")
    pp.add_argument("--voxel-size-angstrom", type=float, default=None)
    pp.set_defaults(func=run_phantoms)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config (see 'tomoclass simulate config')")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
    p.add_argument("--classes", nargs="+", metavar="SOURCE", default=None,
                   help="class sources: phantom names or PDB/mmCIF/MRC files (replaces the list)")
    g = p.add_argument_group("density maps (one value for every map, or one per map in order)")
    g.add_argument("--map-voxel-size", type=float, nargs="+", metavar="A", default=None,
                   help="voxel size of the map(s) in Å, overriding the header (not the target "
                   "size: that is --voxel-size-angstrom)")
    g.add_argument("--map-mask-radius", type=float, nargs="+", metavar="A", default=None,
                   help="keep a soft sphere of this radius (Å) about each map's box centre")
    g.add_argument("--map-mask", nargs="+", metavar="MRC", default=None,
                   help="mask file(s) on the map's grid (0-1) to multiply each map with")
    top = {name: SimulationConfig.model_fields[name] for name in _TOP_FIELDS}
    for name, f in top.items():
        _add_field(p, "", name, f)


def _generated(p: argparse.ArgumentParser, section: str, model) -> None:
    g = p.add_argument_group(f"{section} (overrides of the config's '{section}' section)")
    for name, f in model.model_fields.items():
        _add_field(g, section, name, f)


def _add_field(p, section: str, name: str, f) -> None:
    flag = "--" + name.replace("_", "-")
    dest = f"cfg__{section}__{name}"
    ann = f.annotation
    help_ = f"{f.description or name} (default {f.default!r})"
    origin = typing.get_origin(ann)
    if ann is bool:
        p.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None,
                       help=help_)
    elif origin is tuple:
        args = typing.get_args(ann)
        p.add_argument(flag, dest=dest, nargs=len(args), type=args[0], default=None,
                       metavar=tuple(a.__name__.upper() for a in args), help=help_)
    elif origin is typing.Literal:
        choices = typing.get_args(ann)
        p.add_argument(flag, dest=dest, type=type(choices[0]), choices=choices, default=None,
                       help=help_)
    elif ann in (int, float, str):
        p.add_argument(flag, dest=dest, type=ann, default=None, help=help_,
                       metavar=ann.__name__.upper())
    elif origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(ann) if a is not type(None)]
        p.add_argument(flag, dest=dest, type=inner[0], default=None, help=help_,
                       metavar=inner[0].__name__.upper())


def build_config(args: argparse.Namespace) -> SimulationConfig:
    """The config from ``--config`` (or defaults) with the command-line overrides applied."""
    base = SimulationConfig.from_yaml(args.config) if getattr(args, "config", None) \
        else SimulationConfig()
    data = base.to_dict()
    for key, value in vars(args).items():
        if not key.startswith("cfg__") or value is None:
            continue
        _, section, name = key.split("__", 2)
        target = data[section] if section else data
        target[name] = list(value) if isinstance(value, list | tuple) else value
    if getattr(args, "seed", None) is not None:
        data["seed"] = args.seed
    if getattr(args, "classes", None):
        data["classes"] = [{"source": s} for s in args.classes]
    _map_options(args, data["classes"])
    return SimulationConfig.from_dict(data, path=getattr(args, "config", None))


_MAP_OPTIONS = (("map_voxel_size", "map_voxel_size_angstrom"),
                ("map_mask_radius", "map_mask_radius_angstrom"), ("map_mask", "map_mask"))


def _map_options(args: argparse.Namespace, classes: list[dict]) -> None:
    """Apply ``--map-voxel-size`` / ``--map-mask-radius`` / ``--map-mask`` to the map classes."""
    from tomoclass.errors import InputError
    from tomoclass.simulate.structures import MAP_SUFFIXES

    maps = [c for c in classes if str(c.get("source", "")).lower().endswith(MAP_SUFFIXES)]
    for option, key in _MAP_OPTIONS:
        values = getattr(args, option, None)
        if not values:
            continue
        flag = "--" + option.replace("_", "-")
        if not maps:
            raise InputError(f"{flag} applies to density maps (.mrc, .map) but no class is one",
                             field=flag)
        if len(values) not in (1, len(maps)):
            raise InputError(f"{flag} takes one value for every map or one per map "
                             f"({len(maps)} maps), got {len(values)}", field=flag)
        for c, v in zip(maps, values * len(maps) if len(values) == 1 else values, strict=True):
            c[key] = str(v) if key == "map_mask" else v


def run_subtomograms(args: argparse.Namespace) -> int:
    """Simulate a subtomogram dataset into ``--out``."""
    from tomoclass.data.simulated import write_subtomogram_dataset
    from tomoclass.simulate.structures import load_class_templates

    cfg = build_config(args)
    templates = load_class_templates(cfg)
    _report_maps(templates)
    n = cfg.subtomograms.n_per_class * len(templates)
    with tqdm(total=n, unit="subtomo", desc="simulate", disable=args.quiet or None) as bar:
        out = write_subtomogram_dataset(args.out, templates, cfg, processes=args.processes,
                                        progress=bar.update)
    print(f"wrote {n} subtomograms ({len(templates)} classes, box {cfg.subtomograms.box_size}) "
          f"to {out}")
    return 0


def run_tomograms(args: argparse.Namespace) -> int:
    """Simulate tomograms into ``--out``."""
    from tomoclass.simulate.output import simulate_tomograms
    from tomoclass.simulate.structures import load_class_templates

    cfg = build_config(args)
    templates = load_class_templates(cfg)
    _report_maps(templates)
    stages = 5 * cfg.tomogram.n_tomograms
    with tqdm(total=stages, unit="stage", desc="tomograms", disable=args.quiet or None) as bar:
        def tick(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        written = simulate_tomograms(args.out, templates, cfg, prefix=args.prefix, progress=tick)
    for w in written:
        print(f"wrote {w['tomogram']} (+ labels, SHREC'21 ground truth, tilts, meta)")
    if args.background or args.background_offcentre:
        from tomoclass.data.background import write_background_tables

        for path in write_background_tables(
                written, {t.name: t.radius_voxels for t in templates},
                n_random=args.background, n_offcentre=args.background_offcentre,
                seed=cfg.seed, max_offset=args.background_max_offset):
            print(f"wrote {path} (background boxes: extract it with the ground truth)")
    return 0


def _report_maps(templates) -> None:
    """Print the voxel size each map was read at (also recorded in the output's metadata)."""
    from tomoclass.simulate.output import map_voxel_sizes

    for name, vs in map_voxel_sizes(templates).items():
        t = next(t for t in templates if t.name == name)
        print(f"class {name}: map {t.source} read at {vs:g} Å/voxel, radius of gyration "
              f"{t.radius_of_gyration_angstrom:.0f} Å")


def run_config(args: argparse.Namespace) -> int:
    """Print the effective configuration."""
    cfg = SimulationConfig.from_yaml(args.config) if args.config else SimulationConfig()
    sys.stdout.write(cfg.to_yaml())
    return 0


def run_phantoms(args: argparse.Namespace) -> int:
    """List the phantom library with sizes."""
    from tomoclass.simulate.phantoms import PHANTOMS, phantom

    vs = args.voxel_size_angstrom or SimulationConfig.model_fields["voxel_size_angstrom"].default
    for name, spec in PHANTOMS.items():
        t = phantom(name, voxel_size_angstrom=vs)
        print(f"{name:15s} {spec.size_group:7s} {spec.symmetry:4s} "
              f"diameter {2 * t.radius_angstrom / 10:5.1f} nm  mass {t.mass_kda:7.0f} kDa  "
              f"{spec.description}")
    return 0
