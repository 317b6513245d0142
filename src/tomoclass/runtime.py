"""Process-wide settings that make CPU work faster: keep freed memory in the process.

A 3D network on a CPU allocates and frees the same large buffers at every step (a dense
block's features for a batch of 32³ boxes are 100+ MB). glibc's ``malloc`` serves a request
over 32 MB with a fresh ``mmap`` and returns it to the kernel on ``free``, so every step
page-faults its activations back in and the kernel zeroes them again. Measured on the 2-core
development machine (``benchmarks/malloc_bench.py``, batch 16 of 32³, while two other
training processes ran; ``benchmarks/results/malloc_20261203T*.json``): 40-48% of the CPU time
went to the kernel, and training steps ran 1.7-1.9x faster with the buffers kept (dilated
net, 1 thread: 1.10 -> 2.07 samples/s; 2 threads: 1.65 -> 2.77; plain DenseNet, 1 thread:
1.17 -> 1.96).

:func:`retain_freed_memory` tells glibc to serve large requests from the heap and not to trim
it (``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 2 GiB - 1)``): freed buffers are
reused by the next step. The price is memory: the process keeps its peak (plus some
fragmentation: peak resident memory 3.1-4.0 GiB instead of 2.7 in those runs) until it
exits.
``tomoclass`` calls it at start-up and :func:`tomoclass.train.fit` on a CPU; set
``TOMOCLASS_MALLOC=system`` to leave malloc as it is. It also does nothing off glibc, when
another allocator is preloaded (``LD_PRELOAD``), or when the user set glibc's own
``MALLOC_*`` variables.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["ENV", "retain_freed_memory"]

log = logging.getLogger(__name__)

#: ``system`` (or ``0``/``off``): leave the C allocator as it is.
ENV = "TOMOCLASS_MALLOC"
#: glibc's ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: Largest value ``mallopt`` takes (a C int): the heap is trimmed only above 2 GiB free.
TRIM_THRESHOLD = 2**31 - 1
#: glibc variables that mean the user tuned malloc already.
GLIBC_VARS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
              "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring); idempotent.

    Returns
    -------
    bool
        Whether the setting is in force (False: opted out, not glibc, another allocator or
        the user's own malloc settings).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV, "").strip().lower() in ("system", "0", "off", "no", "false"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    if "malloc" in os.environ.get("LD_PRELOAD", "") or any(v in os.environ for v in GLIBC_VARS):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        if not hasattr(libc, "gnu_get_libc_version"):  # glibc only (musl: no M_MMAP_MAX)
            return False
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0) == 1
                    and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    log.debug("glibc malloc keeps freed memory: %s", _applied)
    return _applied
