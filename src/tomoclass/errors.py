"""Error types shared by every stage.

User errors (bad files, bad options) raise :class:`TomoclassError` or a subclass. The CLI
prints them as one line and exits non-zero without a traceback (``--debug`` shows it);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class TomoclassError(Exception):
    """A problem with the user's input or environment, reported as one line."""


class InputError(TomoclassError, ValueError):
    """A bad input file or value, naming where it is.

    Parameters
    ----------
    message
        What is wrong, in the field's words.
    path
        The offending file, if any.
    field
        The column, header field or option at fault, if known.
    line
        1-based line number in a text file, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.field = field
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class ResourceError(TomoclassError):
    """Not enough disk or memory for the requested job (checked before starting it)."""
