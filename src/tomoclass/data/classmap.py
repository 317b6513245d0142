"""The class map: ordered class names (index = label) with their size groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tomoclass.errors import InputError

SIZE_GROUPS = ("tiny", "small", "medium", "large", "")

#: Size groups of the 12 SHREC'19 classes as in Gao et al. 2020, Tab. 1 (keys lower case).
PAPER_SIZE_GROUPS = {
    "1s3x": "tiny", "3qm1": "tiny", "3gl1": "tiny",
    "3d2f": "small", "1u6g": "small", "2cg9": "small", "3h84": "small",
    "1qvr": "medium", "1bxn": "medium", "3cf3": "medium",
    "4b4t": "large", "4d8q": "large",
}


@dataclass(frozen=True)
class ClassMap:
    """Class names in label order, each with a size group.

    Parameters
    ----------
    names
        Class names; the label of ``names[i]`` is ``i``. Unique (case-sensitive), non-empty.
    size_groups
        One of ``tiny``, ``small``, ``medium``, ``large`` or ``""`` per class (default all ``""``).
    """

    names: tuple[str, ...]
    size_groups: tuple[str, ...] = field(default=())

    def __init__(self, names: Iterable[str], size_groups: Iterable[str] | None = None) -> None:
        names_t = tuple(str(n) for n in names)
        groups = tuple("" for _ in names_t) if size_groups is None else tuple(
            "" if g is None else str(g) for g in size_groups)
        if len(groups) != len(names_t):
            raise InputError(f"{len(names_t)} class names but {len(groups)} size groups",
                             field="size_groups")
        seen: set[str] = set()
        for n in names_t:
            if not n or n.strip() != n:
                raise InputError(f"class name {n!r} is empty or has surrounding spaces",
                                 field="names")
            if n in seen:
                raise InputError(f"class {n!r} appears twice in the class map", field="names")
            seen.add(n)
        for g in groups:
            if g not in SIZE_GROUPS:
                raise InputError(f"size group {g!r} is not one of {SIZE_GROUPS}",
                                 field="size_group")
        object.__setattr__(self, "names", names_t)
        object.__setattr__(self, "size_groups", groups)
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names_t)})

    @classmethod
    def from_names(cls, names: Iterable[str], size_groups: Mapping[str, str] | None = None
                   ) -> ClassMap:
        """Build from names, looking size groups up (case-insensitive) in ``size_groups``.

        The default lookup is :data:`PAPER_SIZE_GROUPS` (SHREC'19); unknown names get ``""``.
        """
        lookup = {k.lower(): v for k, v in (size_groups or PAPER_SIZE_GROUPS).items()}
        names = list(names)
        return cls(names, [lookup.get(n.lower(), "") for n in names])

    def index(self, name: str) -> int:
        """Label of class ``name``; InputError if it is not in the map."""
        try:
            return self._index[name]  # type: ignore[attr-defined]
        except KeyError:
            raise InputError(f"class {name!r} is not in the class map "
                             f"({', '.join(self.names[:8])}{', ...' if len(self) > 8 else ''})",
                             field="class_name") from None

    def __contains__(self, name: object) -> bool:
        return name in self._index  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        """``{"classes": [{"name": ..., "size_group": ...}, ...]}``.

        ``classes.yaml`` of a dataset holds the list under ``"classes"``; :meth:`from_dict`
        reads either form.
        """
        return {"classes": [{"name": n, "size_group": g}
                            for n, g in zip(self.names, self.size_groups, strict=True)]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | Sequence[Any]) -> ClassMap:
        """Inverse of :meth:`to_dict`; also accepts the bare list of entries."""
        entries = d.get("classes") if isinstance(d, Mapping) else d
        if not isinstance(entries, Sequence) or isinstance(entries, (str, bytes)):
            raise InputError("a class map is a list of {name, size_group}", field="classes")
        names, groups = [], []
        for i, e in enumerate(entries):
            if isinstance(e, str):
                names.append(e)
                groups.append("")
            elif isinstance(e, Mapping) and "name" in e:
                names.append(str(e["name"]))
                groups.append(str(e.get("size_group") or ""))
            else:
                raise InputError(f"class entry {i} has no name", field="classes")
        return cls(names, groups)


def per_class_values(class_names: Sequence[str], values: Mapping[str, float], *,
                     what: str = "radius", option: str = "radius",
                     strict: bool = False) -> dict[str, float]:
    """``values`` looked up for every particle class: by name (case-insensitive), else ``"*"``.

    The ``background`` class is left out. Raises :class:`InputError` naming ``option`` when a
    class has no value, or (``strict``) when ``values`` names a class that ``class_names``
    lacks; otherwise extra names are ignored (a sizes table may list more classes than a
    model has).
    """
    table = {str(k).casefold(): float(v) for k, v in values.items()}
    names = [n for n in class_names if n.casefold() != "background"]
    out = {}
    for n in names:
        v = table.get(n.casefold(), table.get("*"))
        if v is None:
            raise InputError(f"no {what} for class '{n}'; give NAME=R for it or a bare R for "
                             "all", field=option)
        out[n] = v
    unknown = sorted(set(table) - {n.casefold() for n in names} - {"*"})
    if strict and unknown:
        raise InputError(f"{what} for a class the run does not have: {', '.join(unknown)}",
                         field=option)
    return out
