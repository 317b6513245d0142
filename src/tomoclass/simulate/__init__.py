"""Cryo-ET simulator: structures -> density -> subtomograms / tilt series -> tomograms.

Pure functions with units in their argument names plus one configuration object
(:class:`SimulationConfig`); volumes are ``(z, y, x)``, Euler angles RELION ZYZ
(``rot, tilt, psi`` in degrees, see :mod:`tomoclass.simulate.rotation`). See ``docs/simulate.md``.
"""

from tomoclass.simulate.config import (
    ClassSpec,
    MicroscopeConfig,
    SimulationConfig,
    SubtomogramConfig,
    TomogramConfig,
)
from tomoclass.simulate.fourier import (
    ctf,
    ctf_zeros_inv_angstrom,
    electron_wavelength_angstrom,
    missing_wedge_mask,
)
from tomoclass.simulate.output import simulate_tomograms, write_tomogram
from tomoclass.simulate.phantoms import blob_volumes, list_phantoms, phantom, phantom_library
from tomoclass.simulate.rotation import matrix_to_euler, particle_matrix, random_euler
from tomoclass.simulate.structures import (
    load_class_templates,
    load_template,
    template_from_map,
    template_from_model,
)
from tomoclass.simulate.subtomograms import (
    Subtomogram,
    SubtomogramParams,
    apply_imaging,
    iter_subtomograms,
)
from tomoclass.simulate.template import Template
from tomoclass.simulate.tomogram import (
    PlacedParticle,
    TomogramResult,
    backproject,
    project,
    simulate_tomogram,
)

__all__ = [
    "ClassSpec",
    "MicroscopeConfig",
    "PlacedParticle",
    "SimulationConfig",
    "Subtomogram",
    "SubtomogramConfig",
    "blob_volumes",
    "SubtomogramParams",
    "Template",
    "TomogramConfig",
    "TomogramResult",
    "apply_imaging",
    "backproject",
    "ctf",
    "ctf_zeros_inv_angstrom",
    "electron_wavelength_angstrom",
    "iter_subtomograms",
    "list_phantoms",
    "load_class_templates",
    "load_template",
    "matrix_to_euler",
    "missing_wedge_mask",
    "particle_matrix",
    "phantom",
    "phantom_library",
    "project",
    "random_euler",
    "simulate_tomogram",
    "simulate_tomograms",
    "template_from_map",
    "template_from_model",
    "write_tomogram",
]
