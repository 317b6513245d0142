"""The data of a shrec12 tier kept in a scratch folder between sessions (a helper module).

Used by ``small_tier.py`` and ``time_to_accuracy.py``: the tier's tomograms are simulated and
its boxes extracted once into ``WORK/dataset``; a fingerprint of every setting they depend on
(``WORK/data.json``) decides whether a later session reuses them. Only a folder carrying the
marker file is ever written into or cleaned.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from shrec12 import Benchmark, Clock, build_data, simulation_config

from tomoclass.errors import InputError
from tomoclass.io.atomic import atomic_path
from tomoclass.io.outputs import open_dir

__all__ = ["WORK_MARKER", "data_fingerprint", "open_work", "parse_seeds", "prepare_data"]

log = logging.getLogger("small_tier")

#: Marker of a scratch folder made before tomoclass.io.outputs markers (still recognised;
#: this script only ever removes things inside its own scratch folder).
WORK_MARKER = ".tomoclass_small_tier_work"


def parse_seeds(text: str) -> list[int]:
    """``"0-4,7"`` -> ``[0, 1, 2, 3, 4, 7]``."""
    out: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, _, hi = part.partition("-")
            out += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like 0-4,7; got {text!r}") from None
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be non-negative; got {text!r}")
    return sorted(set(out))


def read_protocol(path: Path) -> tuple[dict[str, Any], float | None]:
    """A small_tier.py results folder's ``protocol.json`` and the dose its runs were made at
    (``data.dose``; None where the record keeps none, as those made before doses were kept).

    A missing file, one that is not a JSON object (cut short, damaged) and a dose that is not
    a number are refused in one line naming the file (and ``data.dose``): a damaged record
    must not read as "no dose recorded".
    """
    try:
        protocol = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("missing (run benchmarks/small_tier.py into this folder first)",
                         path=path) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read it as JSON ({exc})", path=path) from None
    if not isinstance(protocol, dict):
        raise InputError(f"not a JSON object but {type(protocol).__name__}", path=path)
    data = protocol.get("data")
    if not isinstance(data, dict) or "dose" not in data:
        return protocol, None
    try:
        return protocol, float(data["dose"])
    except (TypeError, ValueError):
        raise InputError(f"not a number: {data['dose']!r}", path=path,
                         field="data.dose") from None


def open_work(work: Path) -> Path:
    """The scratch folder (kind ``small_tier.py scratch``), made (with a marker) or reused; a
    non-empty folder this script did not make is refused (``WORK_MARKER``: made before the
    package's markers)."""
    return open_dir(work, "small_tier.py scratch", patterns=("*",),
                    legacy=lambda folder: (folder / WORK_MARKER).is_file(), option="--work")


def data_fingerprint(bench: Benchmark) -> dict[str, Any]:
    """What the tomograms and boxes depend on (a change rebuilds them and drops the runs)."""
    keep = {k: v for k, v in bench.tier.items()
            if k not in ("reduces", "epochs", "lr_step_epochs", "seeds", "preset",
                         "parallel_runs", "num_workers", "eval_batch_size", "cam_particles",
                         "checkpoint_every", "model_kwargs", "batch_size", "sim_processes",
                         "train_overrides")}
    return {"tier": bench.tier_name, "settings": keep, "dose": bench.dose, "box": bench.box,
            "classes": bench.names, "simulation": {k: bench.raw.get(k) for k in
                                                   ("templates", "microscope", "tomogram",
                                                    "extraction")}}


def existing_dataset(bench: Benchmark, work: Path) -> Path | None:
    """``work/dataset`` when it is this tier's (its fingerprint matches), else None."""
    stamp = work / "data.json"
    want = json.loads(json.dumps(data_fingerprint(bench), default=str))
    have = json.loads(stamp.read_text()) if stamp.exists() else {}
    if {k: have.get(k) for k in want} == want and (work / "dataset").is_dir():
        return work / "dataset"
    return None


def prepare_data(bench: Benchmark, work: Path) -> Path:
    """The tier's dataset in ``work/dataset``: reused when its fingerprint matches, else made."""
    if (ds := existing_dataset(bench, work)) is not None:
        log.info("reusing the dataset in %s", ds)
        return ds
    stamp = work / "data.json"
    want = json.loads(json.dumps(data_fingerprint(bench), default=str))
    for sub in ("tomograms", "dataset", "runs"):  # inside the marked scratch folder only
        shutil.rmtree(work / sub, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    from tomoclass.simulate import load_class_templates

    clock = Clock()
    templates = load_class_templates(simulation_config(bench, bench.dose))
    clock.lap("templates")
    ds_dir, rep, _, _ = build_data(bench, templates, bench.dose, work, clock, "")
    shutil.rmtree(work / "tomograms", ignore_errors=True)  # the boxes are all that is needed
    with atomic_path(stamp) as tmp:
        tmp.write_text(json.dumps({**want, "seconds": clock.seconds,
                                   "n_written": rep.n_written}, default=str))
    return ds_dir


def resumable(run_dir: Path, cfg: Any) -> bool:
    """Whether ``run_dir`` holds a checkpoint to resume, refusing one of another plan.

    Raises
    ------
    InputError
        ``last.pt`` was written under another training plan (a changed tier schedule, preset
        or seed): resuming it would train on with the old plan under the new protocol's name.
    """
    from tomoclass.train import load_checkpoint
    from tomoclass.train.resume import plan_differences, saved_config

    last = run_dir / "checkpoints" / "last.pt"
    if not last.exists():
        return False
    diff = plan_differences(saved_config(load_checkpoint(last), last), cfg)
    if diff:
        raise InputError(f"written under another training plan (differs in {', '.join(diff)}); "
                         "give this protocol its own --work", path=last, field=diff[0])
    return True


def start_run(run_dir: Path, cfg: Any, needs: Path | None = None) -> bool:
    """Resume ``run_dir`` (True) or clear it for a fresh start (False).

    :func:`resumable` decides (a checkpoint of another plan is refused); a run that also
    needs ``needs`` (a file the script keeps beside the checkpoints) without it starts over.
    Only our own scratch run folders are cleared.
    """
    resume = resumable(run_dir, cfg) and (needs is None or needs.exists())
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)
    return resume
