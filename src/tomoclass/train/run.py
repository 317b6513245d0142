"""Where a run's checkpoint is: :func:`checkpoint_path`.

A run directory, a ``.pt`` file or a pretrained name.
Training needs it for ``--init``; rebuilding a trained model for inference
(:func:`tomoclass.infer.load_run`) is the inference layer's.
"""

from __future__ import annotations

from pathlib import Path

from tomoclass.errors import InputError
from tomoclass.models.pretrained import is_pretrained_name, resolve_pretrained


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """Path of checkpoint ``which`` (``best``, ``last``, ``epoch_005`` or a 5) in a run.

    ``run_dir`` may also be a ``.pt`` file, or the name of a pretrained model
    (:mod:`tomoclass.models.pretrained`: its file, once its sha256 is checked; ``which`` is
    then ignored).

    Raises
    ------
    InputError
        Not a run directory, or no such checkpoint (the message lists those present); an
        unknown or unverifiable pretrained name.
    """
    run = Path(run_dir)
    if run.is_file() and run.suffix == ".pt":
        return run
    if is_pretrained_name(run_dir):  # a pretrained name: checked file
        return resolve_pretrained(str(run_dir))
    ckdir = run / "checkpoints"
    if not ckdir.is_dir():
        raise InputError("not a tomoclass run directory (no checkpoints/)", path=run)
    name = f"epoch_{int(which):03d}" if str(which).isdigit() else str(which)
    path = ckdir / f"{name.removesuffix('.pt')}.pt"
    if not path.is_file():
        have = sorted(p.stem for p in ckdir.glob("*.pt"))
        raise InputError(f"no checkpoint '{name}' (have: {', '.join(have) or 'none'})",
                         path=ckdir)
    return path

