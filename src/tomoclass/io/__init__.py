"""Reading and writing tomograms (MRC) and particle tables.

Volumes are ``(z, y, x)`` arrays with the voxel size in Ångström; particle tables are pandas
DataFrames in the schema of :mod:`tomoclass.io.schema`.
"""

from tomoclass.io.volume import Volume, check_voxel_size, read_volume, write_volume

__all__ = ["Volume", "check_voxel_size", "read_volume", "write_volume"]
