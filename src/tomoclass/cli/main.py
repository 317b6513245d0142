"""The ``tomoclass`` console script: one parser, one subcommand per pipeline stage.

Each subcommand lives in its own module of :mod:`tomoclass.cli` with a ``register(sub)``
function that adds its parser and sets ``func`` to a handler ``(args) -> int``. Handlers
parse nothing themselves and hold no logic: they call the documented library functions.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from tomoclass import __version__
from tomoclass.errors import TomoclassError
from tomoclass.io.outputs import check_output_dir, collect_inputs, output_policy
from tomoclass.runtime import retain_freed_memory

#: Options naming what a command writes (never counted among its inputs).
OUTPUT_DESTS = ("out", "score_maps", "json_out", "mrc_dir")

#: Folder outputs checked before a command starts (command path -> option, kind of output),
#: so a refusal costs nothing; the writer checks again before it replaces anything.
FOLDER_OUTPUTS = {
    ("extract",): ("out", "dataset"),
    ("simulate", "subtomograms"): ("out", "dataset"),
    ("simulate", "tomograms"): ("out", "tomograms"),
    ("dataset", "import"): ("out", "dataset"),
    ("dataset", "export"): ("out", "subtomogram-export"),
    ("evaluate",): ("out", "evaluation"),
    ("baseline",): ("out", "evaluation"),
    ("compare",): ("out", "comparison"),
    ("locate",): ("score_maps", "score-maps"),
    ("cam",): ("mrc_dir", "cam-volumes"),
    ("demo",): ("out", "demo"),
}

#: Subcommand modules, in the order of the pipeline.
COMMAND_MODULES = (
    "simulate",
    "inspect",
    "extract",
    "dataset",
    "models",
    "train",
    "evaluate",
    "baseline",
    "compare",
    "predict",
    "locate",
    "score_picks",
    "cam",
    "view",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (all subcommands registered)."""
    parser = argparse.ArgumentParser(
        prog="tomoclass",
        description="Classify macromolecules in cryo-electron tomograms.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"tomoclass {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks for user errors"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"tomoclass.cli.{name}")
        module.register(sub)
    _add_overwrite(sub)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Refuse option prefixes in ``parser`` and every subparser below it.

    argparse expands an unambiguous prefix (``--voxel-size`` -> ``--voxel-size-angstrom``) by
    default, so a mistyped or half-remembered option silently becomes another one. Subparsers
    made by ``add_parser`` do not inherit ``allow_abbrev``, hence the walk.
    """
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _no_abbreviations(child)


def _add_overwrite(sub: argparse._SubParsersAction) -> None:
    """Give every (sub)command that writes ``--out``/``--score-maps`` an ``--overwrite`` flag."""
    for p in sub.choices.values():
        flags = {s for a in p._actions for s in a.option_strings}
        if {"--out", "--score-maps"} & flags and "--overwrite" not in flags:
            p.add_argument("--overwrite", action="store_true",
                           help="replace a previous tomoclass output of the same kind at "
                           "--out (never a folder holding other files or this command's "
                           "inputs)")
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                _add_overwrite(a)


def _command_path(args: argparse.Namespace) -> tuple[str, ...]:
    path = [args.command]
    for key in ("simulate_command", "action"):
        value = getattr(args, key, None)
        if isinstance(value, str):
            path.append(value)
    return tuple(path)


def _run(args: argparse.Namespace) -> int:
    """Run the handler under the output policy (``--overwrite``, the command's inputs)."""
    inputs = collect_inputs(v for k, v in vars(args).items() if k not in OUTPUT_DESTS)
    with output_policy(overwrite=getattr(args, "overwrite", False), inputs=inputs):
        dest, kind = FOLDER_OUTPUTS.get(_command_path(args), (None, None))
        target = getattr(args, dest, None) if dest else None
        if target is not None:
            check_output_dir(target, kind)
        return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    User errors (:class:`tomoclass.errors.TomoclassError`) print one line to stderr and
    return 2; ``--debug`` adds the traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
    )
    retain_freed_memory()  # faster CPU work; TOMOCLASS_MALLOC=system opts out
    try:
        return _run(args)
    except TomoclassError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"tomoclass {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tomoclass {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
