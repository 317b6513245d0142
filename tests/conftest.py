"""Shared test settings.

Under CI (``CI`` set) hypothesis runs derandomized: the same examples every run, so a
submission never fails on a fuzz case that a different seed happened to find. Developers
keep random exploration locally, which is where new cases should be found and fixed.
"""

import logging
import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """Undo what a test did to the root logger's handlers and level.

    The CLI's ``logging.basicConfig`` and the benchmark drivers' ``basicConfig(force=True)``
    add a stream handler bound to the ``sys.stderr`` of the moment, which under pytest is a
    capture buffer closed after that test; a later in-process command then logs into a
    closed file. pytest's own capture handlers are left to pytest.
    """
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before and type(handler).__module__.split(".")[0] != "_pytest":
            root.removeHandler(handler)
    root.setLevel(level)
