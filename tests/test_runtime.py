"""tomoclass.runtime: glibc keeps freed memory, so a re-allocated large buffer does not
fault its pages in again; the opt-out and the user's own malloc settings are respected."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# allocate, touch and free a 96 MB buffer (over glibc's largest mmap threshold, 32 MB) a few
# times; count the minor page faults of the repeats after the first
PROBE = r"""
import ctypes, json, resource, sys
from tomoclass.runtime import retain_freed_memory
applied = retain_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
n = 96 * 2**20
def cycle():
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
cycle()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0
print(json.dumps({"applied": applied, "faults": faults, "again": retain_freed_memory()}))
"""


def probe(**env):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("MALLOC_") and k not in ("TOMOCLASS_MALLOC", "LD_PRELOAD",
                                                      "GLIBC_TUNABLES")}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=e, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_freed_large_buffers_are_reused_without_page_faults():
    kept, system = probe(), probe(TOMOCLASS_MALLOC="system")
    assert kept["applied"] and kept["again"] and not system["applied"]
    pages = 5 * 96 * 2**20 // 4096
    assert system["faults"] > 0.5 * pages  # glibc unmaps and faults every page back in
    assert kept["faults"] < 0.05 * pages


def test_users_own_malloc_settings_are_left_alone():
    assert not probe(MALLOC_TRIM_THRESHOLD_="1000000")["applied"]
