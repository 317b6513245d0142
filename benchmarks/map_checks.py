"""Map-input checks on real maps: radius of gyration at the header's voxel size, a wrong
header (1 Å for 10 Å) warned about, and each map's inverted copy called inverted.

    PYTHONPATH=src python benchmarks/map_checks.py [MAP_DIR] \\
        > benchmarks/results/map_checks_20261203.txt

MAP_DIR defaults to the shared shrec12 maps (``shared/data/structures/maps_10A``).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import mrcfile
import numpy as np

from tomoclass.errors import InputError
from tomoclass.simulate.structures import template_from_map


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1


def _copy(src: np.ndarray, path: Path, voxel: float) -> Path:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(src.astype(np.float32))
        m.voxel_size = voxel
    return path


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else \
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "structures" / "maps_10A"
    count = _Count()
    logging.getLogger("tomoclass.simulate.maps").addHandler(count)
    tmp = Path(tempfile.mkdtemp())
    print("map        header_A  rg_A   warned  1A-header_warned  inverted_copy")
    for f in sorted(root.glob("*.mrc")):
        with mrcfile.open(f, permissive=True) as m:
            data, vs = np.array(m.data, np.float32), float(m.voxel_size.x)
        count.n = 0
        t = template_from_map(f)
        ok_warned = count.n > 0
        count.n = 0
        template_from_map(_copy(data, tmp / "one.mrc", 1.0), voxel_size_angstrom=1.0,
                          resolution_angstrom=2.0)
        wrong_warned = count.n > 0
        try:
            template_from_map(_copy(-data, tmp / "inv.mrc", vs))
            inverted = "not detected"
        except InputError as exc:
            inverted = "detected" if "looks inverted" in str(exc) else f"other: {exc}"
        print(f"{f.stem:10s} {vs:8.2f} {t.radius_of_gyration_angstrom:6.1f}  {ok_warned!s:6s}  "
              f"{wrong_warned!s:16s}  {inverted}")


if __name__ == "__main__":
    main()
