"""What every benchmark result records about where it ran: commit, machine, load, time.

Imported by the benchmark scripts (run as ``python benchmarks/<name>.py``, so this folder is
on ``sys.path``) so that results stay comparable and the recording code exists once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def git_commit(short: bool = False, dirty: bool = True) -> str:
    """The repository's HEAD commit (+"-dirty" with uncommitted changes to tracked files when
    ``dirty``), or "unknown" outside a git checkout.

    ``$TOMOCLASS_GIT_COMMIT``, when set, is returned as it is: a copy of the working tree
    without ``.git`` (the GPU machine gets one) records the commit it was copied from.
    """
    env = os.environ.get("TOMOCLASS_GIT_COMMIT")
    if env:
        return env

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", *(["--short"] if short else []), "HEAD")
        changed = dirty and bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if changed else "")


def machine_info() -> dict:
    """CPU model, cores, memory (GiB), load average, Python and (if importable) torch."""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory, 1),
            "load_average": list(os.getloadavg()), "platform": platform.platform(),
            "python": platform.python_version()}
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except ImportError:
        pass
    return info


def write_result(prefix: str, result: dict, out: Path | None = None) -> Path:
    """Write ``result`` as JSON to ``out`` or ``benchmarks/results/<prefix>_<UTC time>.json``."""
    if out is None:
        out = RESULTS / f"{prefix}_{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return out
