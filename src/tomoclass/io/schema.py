"""The one particle-table schema every reader returns and every writer takes.

A particle table is a :class:`pandas.DataFrame` with these columns (extra columns are kept):

``tomogram`` (str)
    Name of the source tomogram (file stem or the table's own tomogram id).
``x``, ``y``, ``z`` (float)
    Particle centre in **voxels** of that tomogram, 0-based, x fastest (MRC column index),
    so the voxel is ``volume[round(z), round(y), round(x)]`` for a (z, y, x) array.
``class_name`` (str)
    Class label as the source names it (PDB id, phantom name, ...); "" when unknown.
``rot``, ``tilt``, ``psi`` (float, degrees)
    Orientation as RELION's ZYZ Euler angles, with RELION's meaning: RELION's matrix of them
    (:func:`tomoclass.io.euler.relion_matrix`, ``Euler_angles2matrix``) rotates the reference
    into the particle. NaN when the source has none.
``score`` (float)
    Confidence or probability; NaN when the source has none.
``is_protein`` (bool)
    False for rows that are not macromolecules (SHREC'21 vesicles and fiducials).
"""

from __future__ import annotations

TOMOGRAM = "tomogram"
X, Y, Z = "x", "y", "z"
CLASS_NAME = "class_name"
ROT, TILT, PSI = "rot", "tilt", "psi"
SCORE = "score"
IS_PROTEIN = "is_protein"

COORDS = (X, Y, Z)
ANGLES = (ROT, TILT, PSI)
PARTICLE_COLUMNS = (TOMOGRAM, X, Y, Z, CLASS_NAME, ROT, TILT, PSI, SCORE, IS_PROTEIN)

#: Class name of non-particle boxes (``tomoclass.locate.background_boxes``), which a classifier
#: must have to locate particles; such rows are not proteins, but extraction keeps them.
BACKGROUND = "background"
