"""Reading and writing tomograms (MRC) and particle tables.

Volumes are ``(z, y, x)`` arrays with the voxel size in Ångström; particle tables are pandas
DataFrames in the schema of :mod:`tomoclass.io.schema`.
"""

from tomoclass.io.naming import tomogram_name
from tomoclass.io.particles import (
    READ_FORMATS,
    SHREC19_CLASSES,
    WRITE_FORMATS,
    read_particles,
    table_format,
    write_particles,
)
from tomoclass.io.sizes import read_class_sizes
from tomoclass.io.volume import Volume, check_voxel_size, read_volume, write_volume

__all__ = [
    "READ_FORMATS",
    "SHREC19_CLASSES",
    "WRITE_FORMATS",
    "Volume",
    "check_voxel_size",
    "read_class_sizes",
    "read_particles",
    "read_volume",
    "table_format",
    "tomogram_name",
    "write_particles",
    "write_volume",
]
