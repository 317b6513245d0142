"""``tomoclass score-picks``: placeholder until its issue lands (owned by one developer)."""

from __future__ import annotations

import argparse

from tomoclass.errors import TomoclassError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``score-picks`` subcommand."""
    p = sub.add_parser("score-picks", help="(not yet available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Refuse: this command is not built yet."""
    raise TomoclassError("'score-picks' is not available yet")
