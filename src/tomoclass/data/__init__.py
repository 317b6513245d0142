"""Subtomogram extraction, the on-disk dataset store and the torch Dataset.

Boxes are ``(z, y, x)`` float32 arrays; voxel sizes in Ångström (``voxel_size_angstrom``).
"""

from tomoclass.data.extract import Extraction, extract_subtomograms, plan_extraction

__all__ = ["Extraction", "extract_subtomograms", "plan_extraction"]
