"""One training configuration from the options a user gives (what ``tomoclass train`` does).

:func:`config_from_options` merges, in this order: a preset (or a config YAML), the
architecture of ``init`` (fine-tuning), the plan of the run being resumed, and the options
given. A library caller gets exactly what the CLI gets for the same options.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import yaml

from tomoclass.errors import InputError
from tomoclass.train.checkpoint import resume_plan
from tomoclass.train.config import TrainConfig, preset
from tomoclass.train.resume import resume_checkpoint

log = logging.getLogger(__name__)


def parse_assignment(text: str, *, field: str) -> tuple[str, Any]:
    """One ``KEY=VALUE`` option: the key, and the value read as YAML.

    ``batch_size=4`` gives ``("batch_size", 4)``, ``model_kwargs={head_init: zeros}`` a dict.

    Raises
    ------
    InputError
        No ``=``, an empty key, or a value that is not YAML (named with ``field``).
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"expected KEY=VALUE, got {text!r}", field=field)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise InputError(f"value of {key.strip()} is not valid YAML: {value!r}",
                         field=field) from None


def config_from_options(
    *,
    preset_name: str = "default",
    config: str | os.PathLike[str] | None = None,
    resume: bool | str | os.PathLike[str] = False,
    run_dir: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> TrainConfig:
    """Build the :class:`TrainConfig` of a run from a preset or config file plus options.

    Parameters
    ----------
    preset_name
        Named preset (:data:`tomoclass.train.config.PRESETS`) used when ``config`` is None.
    config
        A training config YAML (or a run's ``config.yaml``) to start from instead.
    resume
        False, True (``run_dir/checkpoints/last.pt``) or a checkpoint path: the run's model
        and epochs fill the options not given, so that resuming continues the run's own
        plan (:mod:`tomoclass.train.resume`).
    run_dir
        The run directory (needed when ``resume`` is True).
    **overrides
        :class:`TrainConfig` fields; ``None`` means "not given". With ``init`` and no
        ``model`` (and no resume) the model and its constructor arguments are the init
        source's; given ``model_kwargs`` are applied on top.

    Returns
    -------
    TrainConfig

    Raises
    ------
    InputError
        Unknown preset, unreadable config or checkpoint, invalid field value.
    """
    overrides = dict(overrides)
    init = overrides.get("init")
    if init and overrides.get("model") is None and not resume:  # the source's architecture
        from tomoclass.train.pretrained import init_model

        overrides["model"], kwargs = init_model(init)
        overrides["model_kwargs"] = {**kwargs, **(overrides.get("model_kwargs") or {})}
    if resume:
        if resume is True and run_dir is None:
            raise TypeError("config_from_options(resume=True) needs run_dir")
        plan = resume_plan(resume_checkpoint(run_dir or ".", resume))
        saved = plan["train_config"]
        ignored = [f"{k} {v!r} (the run's {saved[k]!r})" for k, v in overrides.items()
                   if v is not None and k not in ("model", "epochs") and k in saved
                   and saved[k] != v]
        if ignored:  # resumed_config: the run's own plan, epochs raised at most
            log.warning("--resume continues the run's own training plan; ignored: %s",
                        ", ".join(ignored))
        for key in ("model", "epochs"):
            if overrides.get(key) is None:
                overrides[key] = plan[key]
    if config is not None:
        base = TrainConfig.load(config).model_dump()
        base.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig.from_dict(base, path=config)
    return preset(preset_name, **overrides)
