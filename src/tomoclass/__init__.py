"""tomoclass: macromolecule classification in cryo-electron tomograms.

The package is laid out as the pipeline data flows through; each stage imports only the
ones before it (``docs/architecture.md``)::

    io -> simulate -> data -> models -> train -> locate / evaluate / cam -> workflows -> cli
"""

__version__ = "0.1.0"

from tomoclass.errors import InputError, TomoclassError  # noqa: E402,F401

__all__ = ["__version__", "TomoclassError", "InputError"]
