"""A small registry of model constructors, so the CLI and the tests read one list.

Every registered constructor takes ``num_classes`` as a keyword plus its own options and
returns an :class:`torch.nn.Module` with the common interface (``forward_features``,
``forward_head``, ``get_classifier``, ``reset_classifier``, ``model_name``,
``model_config``, ``has_gap_head``, ``min_input_size``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from tomoclass.errors import InputError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str | None = None) -> Callable[[F], F]:
    """Register a model constructor under ``name`` (default: the function's name).

    Parameters
    ----------
    name
        Registry key; lower-case with underscores by convention.

    Raises
    ------
    ValueError
        If the name is already taken (a second registration would silently shadow the first).
    """

    def decorator(fn: F) -> F:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"a model named '{key}' is already registered")
        _REGISTRY[key] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str, *, num_classes: int, **cfg: Any) -> nn.Module:
    """Build the registered model ``name``.

    Parameters
    ----------
    name
        One of :func:`list_models`.
    num_classes
        Number of output logits.
    **cfg
        Options of that model's constructor (unknown options raise ``TypeError``).

    Returns
    -------
    torch.nn.Module
        The model; ``get_model(m.model_name, **m.model_config)`` rebuilds its architecture.

    Raises
    ------
    tomoclass.errors.InputError
        If ``name`` is not registered or ``num_classes`` < 1.
    """
    if name not in _REGISTRY:
        raise InputError(
            f"unknown model '{name}'; available: {', '.join(list_models())}", field="model"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"num_classes must be a positive integer, got {num_classes!r}",
                         field="num_classes")
    return _REGISTRY[name](num_classes=num_classes, **cfg)
