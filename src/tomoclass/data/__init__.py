"""Subtomogram extraction, the on-disk dataset store and the torch Dataset.

Boxes are ``(z, y, x)`` float32 arrays; voxel sizes in Ångström (``voxel_size_angstrom``).
The torch parts (:class:`SubtomogramDataset`, augmentation) are imported lazily so that
reading a dataset does not import torch.
"""

from typing import Any

from tomoclass.data.build import ExtractReport, extract_dataset, match_tomograms
from tomoclass.data.classmap import PAPER_SIZE_GROUPS, SIZE_GROUPS, ClassMap
from tomoclass.data.extract import (
    Extraction,
    extract_subtomograms,
    plan_extraction,
    resample_volume,
)
from tomoclass.data.inspect import format_report, inspect_table, inspect_tomogram
from tomoclass.data.polarity import Polarity, measure_polarity
from tomoclass.data.selection import select_particles
from tomoclass.data.store import (
    DatasetWriter,
    SubtomogramStore,
    assign_splits,
    export_subtomograms,
    import_subtomograms,
    open_dataset,
    set_splits,
    write_dataset,
)

__all__ = [
    "PAPER_SIZE_GROUPS",
    "SIZE_GROUPS",
    "Polarity",
    "ClassMap",
    "DatasetWriter",
    "ExtractReport",
    "Extraction",
    "SubtomogramDataset",
    "SubtomogramStore",
    "WedgePreservingAugment",
    "assign_splits",
    "export_subtomograms",
    "extract_dataset",
    "extract_subtomograms",
    "format_report",
    "import_subtomograms",
    "inspect_table",
    "inspect_tomogram",
    "match_tomograms",
    "measure_polarity",
    "open_dataset",
    "plan_extraction",
    "resample_volume",
    "select_particles",
    "set_splits",
    "write_dataset",
    "write_subtomogram_dataset",
]


def __getattr__(name: str) -> Any:
    if name in ("SubtomogramDataset", "WedgePreservingAugment"):
        from tomoclass.data import torch_dataset

        return getattr(torch_dataset, name)
    if name == "write_subtomogram_dataset":  # imports the simulator: only when asked for
        from tomoclass.data.simulated import write_subtomogram_dataset

        return write_subtomogram_dataset
    raise AttributeError(f"module 'tomoclass.data' has no attribute {name!r}")
