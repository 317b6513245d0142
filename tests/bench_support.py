"""Loading a benchmark script (``benchmarks/NAME.py``) as a module in the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
# the scripts import their helper modules (shrec12, tier_data) from their folder, which is on
# sys.path when they run as scripts; loaded from here, it is put there
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def load_script(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` as module ``name`` (registered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
