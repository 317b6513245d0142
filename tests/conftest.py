"""Shared test settings.

Under CI (``CI`` set) hypothesis runs derandomized: the same examples every run, so a
submission never fails on a fuzz case that a different seed happened to find. Developers
keep random exploration locally, which is where new cases should be found and fixed.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
