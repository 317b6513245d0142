"""Real structures -> :class:`~tomoclass.simulate.template.Template`.

* Atomic models (PDB, mmCIF, gzipped or not) are read with gemmi; by default the first
  biological assembly (REMARK 350 BIOMT / ``_pdbx_struct_assembly``) is built. Waters and
  hydrogens are dropped. Each atom deposits its mass (per element) on the grid by trilinear
  splatting; the map is then low-passed with a Gaussian (sigma = 0.225 x resolution, as
  Chimera's molmap), which dominates the per-element form factors at >= 10 Å resolution.
  Values are scaled to protein mass density (1.0 = 1.35 g/cm³).
* Density maps (MRC) are read with :func:`tomoclass.io.read_volume`, background-subtracted
  (median of the box border), scaled so the mean inside the particle (above 50 % of the
  maximum) is 1, and resampled to the target voxel size.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from tomoclass.errors import InputError
from tomoclass.simulate.maps import (
    MAP_VOXEL_SIZE_OPTION,
    check_map_not_inverted,
    check_map_size,
    map_mask,
)
from tomoclass.simulate.phantoms import PROTEIN_DA_PER_A3
from tomoclass.simulate.template import (
    Template,
    center_and_crop,
    lowpass_gaussian,
    size_group_for_mass,
)

__all__ = ["load_atomic_model", "template_from_atoms", "template_from_model", "template_from_map",
           "load_template", "load_class_templates", "MODEL_SUFFIXES", "MAP_SUFFIXES"]

MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz", ".mmcif.gz")
MAP_SUFFIXES = (".mrc", ".map", ".mrcs", ".rec", ".mrc.gz", ".map.gz")

log = logging.getLogger(__name__)


def _name_of(path: Path) -> str:
    name = path.name
    for suf in sorted(MODEL_SUFFIXES + MAP_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return path.stem


def load_atomic_model(path: str | os.PathLike, *, assembly: bool = True):
    """Read an atomic model and return atom coordinates and masses.

    Parameters
    ----------
    path
        PDB or mmCIF file, optionally gzipped.
    assembly
        Build the first biological assembly (default); ``False`` keeps the asymmetric unit.

    Returns
    -------
    coords_angstrom : numpy.ndarray
        ``(n_atoms, 3)`` float64 (x, y, z) in Å.
    masses_da : numpy.ndarray
        ``(n_atoms,)`` float64 atomic masses in Da (occupancy-weighted).
    n_chains : int
        Number of chains (copies included) in the model used.

    Raises
    ------
    InputError
        If the file cannot be read or holds no atoms.
    """
    import gemmi

    path = Path(path)
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError/ValueError/OSError
        raise InputError(f"cannot read atomic model: {exc}", path=path) from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError("atomic model holds no atoms", path=path)
    st.setup_entities()
    st.remove_waters()
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    model = st[0]
    if assembly and len(st.assemblies) > 0:
        try:
            model = gemmi.make_assembly(
                st.assemblies[0], st[0], gemmi.HowToNameCopiedChain.AddNumber
            )
        except Exception as exc:
            raise InputError(f"cannot build biological assembly: {exc}", path=path) from None
    coords, masses = [], []
    for chain in model:
        for res in chain:
            for atom in res:
                coords.append(atom.pos.tolist())
                masses.append(atom.element.weight * atom.occ)
    if not coords:
        raise InputError("atomic model holds no atoms after removing waters/hydrogens", path=path)
    return np.asarray(coords, dtype=float), np.asarray(masses, dtype=float), len(model)


def template_from_atoms(
    coords_angstrom: np.ndarray,
    masses_da: np.ndarray,
    *,
    name: str,
    voxel_size_angstrom: float = 10.0,
    resolution_angstrom: float = 20.0,
    source: str = "",
) -> Template:
    """Splat atoms onto a grid and low-pass them into a :class:`Template`.

    Parameters
    ----------
    coords_angstrom
        ``(n, 3)`` (x, y, z) in Å.
    masses_da
        ``(n,)`` masses in Da.
    name, source
        Template name and provenance.
    voxel_size_angstrom, resolution_angstrom
        Grid sampling and Gaussian low-pass resolution (Å).

    Returns
    -------
    Template
        Density in units of protein mass density, centred on its centre of mass.
    """
    coords = np.asarray(coords_angstrom, dtype=float)
    masses = np.asarray(masses_da, dtype=float)
    com = (coords * masses[:, None]).sum(0) / masses.sum()
    rel = (coords - com) / voxel_size_angstrom
    pad = 3 + int(np.ceil(1.5 * resolution_angstrom / voxel_size_angstrom))
    half = int(np.ceil(np.abs(rel).max())) + pad
    n = 2 * half + 1
    pos = rel[:, ::-1] + half  # (z, y, x) voxel coordinates
    base = np.floor(pos).astype(np.int64)
    frac = pos - base
    grid = np.zeros(n**3, dtype=np.float64)
    for dz in (0, 1):
        wz = frac[:, 0] if dz else 1 - frac[:, 0]
        for dy in (0, 1):
            wy = frac[:, 1] if dy else 1 - frac[:, 1]
            for dx in (0, 1):
                wx = frac[:, 2] if dx else 1 - frac[:, 2]
                idx = ((base[:, 0] + dz) * n + base[:, 1] + dy) * n + base[:, 2] + dx
                grid += np.bincount(idx, weights=masses * wz * wy * wx, minlength=n**3)
    grid = grid.reshape(n, n, n) / (voxel_size_angstrom**3 * PROTEIN_DA_PER_A3)
    dens = lowpass_gaussian(grid.astype(np.float32), resolution_angstrom=resolution_angstrom,
                            voxel_size_angstrom=voxel_size_angstrom)
    dens = center_and_crop(dens)
    mass_kda = float(masses.sum()) / 1e3
    return Template(
        name=name, density=dens, voxel_size_angstrom=float(voxel_size_angstrom),
        size_group=size_group_for_mass(mass_kda), source=source, mass_kda=mass_kda,
    )


def template_from_model(
    path: str | os.PathLike,
    *,
    voxel_size_angstrom: float = 10.0,
    resolution_angstrom: float = 20.0,
    assembly: bool = True,
    name: str | None = None,
) -> Template:
    """Read a PDB/mmCIF model (biological assembly by default) into a :class:`Template`.

    Raises
    ------
    InputError
        Unreadable or empty file (names the file).
    """
    path = Path(path)
    coords, masses, n_chains = load_atomic_model(path, assembly=assembly)
    t = template_from_atoms(
        coords, masses, name=name or _name_of(path), voxel_size_angstrom=voxel_size_angstrom,
        resolution_angstrom=resolution_angstrom, source=str(path),
    )
    return dataclasses.replace(t, n_chains=n_chains)


def template_from_map(
    path: str | os.PathLike,
    *,
    voxel_size_angstrom: float = 10.0,
    resolution_angstrom: float = 20.0,
    map_voxel_size_angstrom: float | None = None,
    name: str | None = None,
    mask_radius_angstrom: float | None = None,
    mask_path: str | os.PathLike | None = None,
    mask_edge_angstrom: float | None = None,
) -> Template:
    """Read an MRC density map and resample it into a :class:`Template`.

    Parameters
    ----------
    path
        MRC/MAP file (protein density positive).
    voxel_size_angstrom
        Target sampling in Å.
    resolution_angstrom
        Gaussian low-pass resolution (Å), applied before resampling (also anti-aliases).
    map_voxel_size_angstrom
        Override of the header's voxel size (headers are sometimes wrong, e.g. 1 Å for 1 nm).
    name
        Template name (default: the file stem).
    mask_radius_angstrom, mask_edge_angstrom
        Keep only a soft sphere of this radius about the box centre (edge width default: the
        resolution), e.g. to drop the membrane an in-cell average brings along.
    mask_path
        A mask MRC on the map's grid (0-1) to multiply the map with (after background
        subtraction).

    The voxel size used is logged and kept as ``source_voxel_size_angstrom``; a particle whose
    radius of gyration is implausible at that voxel size is warned about
    (:func:`~tomoclass.simulate.maps.check_map_size`).

    Raises
    ------
    InputError
        Unreadable file, non-3D data, NaN/inf values, empty density, a map that looks inverted
        (protein dark), a bad mask, or no usable voxel size (the message names
        ``--map-voxel-size``).
    """
    path = Path(path)
    data, src_vs = _read_map(path, map_voxel_size_angstrom)
    log.info("%s: map voxel size %g Å (%s)", path, src_vs,
             "header" if map_voxel_size_angstrom is None else "given")
    border = np.concatenate([data[[0, -1]].ravel(), data[:, [0, -1]].ravel(),
                             data[:, :, [0, -1]].ravel()])
    d = data.astype(np.float32) - np.float32(np.median(border))
    check_map_not_inverted(d, src_vs, resolution_angstrom, path=path)
    mask = map_mask(d.shape, src_vs, radius_angstrom=mask_radius_angstrom, mask_path=mask_path,
                    edge_angstrom=resolution_angstrom if mask_edge_angstrom is None
                    else mask_edge_angstrom)
    if mask is not None:
        d *= mask
    if float(d.max()) <= 0:
        raise InputError("map holds no positive density above its background", path=path)
    check_map_size(d, src_vs, path=path, given=map_voxel_size_angstrom is not None)
    sigma = max(resolution_angstrom, 0.0)
    # low-pass at the target resolution and at least the target Nyquist, in source voxels
    eff = max(sigma, 2.0 * voxel_size_angstrom if voxel_size_angstrom > src_vs else 0.0)
    d = lowpass_gaussian(d, resolution_angstrom=eff, voxel_size_angstrom=src_vs)
    factor = src_vs / voxel_size_angstrom
    if abs(factor - 1.0) > 1e-6:
        d = ndimage.zoom(d, factor, order=3, mode="grid-constant", grid_mode=True)
    d = np.clip(d, 0, None)
    inside = d > 0.5 * d.max()
    d = d / np.float32(d[inside].mean())
    d[d < 0.01 * d.max()] = 0
    dens = center_and_crop(d)
    # mass estimated from the volume enclosed at half maximum, at protein density
    mass_kda = float((dens > 0.5 * dens.max()).sum()) * voxel_size_angstrom**3 \
        * PROTEIN_DA_PER_A3 / 1e3
    return Template(
        name=name or _name_of(path), density=dens, voxel_size_angstrom=float(voxel_size_angstrom),
        size_group=size_group_for_mass(mass_kda), source=str(path), mass_kda=mass_kda,
        source_voxel_size_angstrom=src_vs,
    )


def _read_map(path: Path, voxel_size_angstrom: float | None) -> tuple[np.ndarray, float]:
    """Read a 3D map (:func:`tomoclass.io.read_volume`): data (z, y, x) float32, voxel size Å."""
    from tomoclass.io import read_volume

    # simulate's --voxel-size-angstrom is the *target* size: errors name --map-voxel-size
    vol = read_volume(path, voxel_size_angstrom=voxel_size_angstrom, mmap=False, check="full",
                      override_option=MAP_VOXEL_SIZE_OPTION)
    return np.asarray(vol.data, dtype=np.float32), float(vol.voxel_size_angstrom)


def load_template(
    spec: str | os.PathLike,
    *,
    voxel_size_angstrom: float = 10.0,
    resolution_angstrom: float = 20.0,
    assembly: bool = True,
    map_voxel_size_angstrom: float | None = None,
    name: str | None = None,
    mask_radius_angstrom: float | None = None,
    mask_path: str | os.PathLike | None = None,
) -> Template:
    """Load a template from a phantom name, an atomic model or a map, chosen by the spec.

    Parameters
    ----------
    spec
        A built-in phantom name (``"ring6"``), ``"phantom:ring6"``, or a file path (PDB/mmCIF,
        gzipped or not, or MRC).
    voxel_size_angstrom, resolution_angstrom
        Target sampling and Gaussian low-pass resolution (Å).
    assembly
        For atomic models: build the first biological assembly (else the asymmetric unit).
    map_voxel_size_angstrom
        For maps: override of the header voxel size (Å).
    mask_radius_angstrom, mask_path
        For maps: a soft spherical mask radius (Å) and/or a mask file (see
        :func:`template_from_map`).
    name
        Class name (default: phantom name or file stem).

    Raises
    ------
    InputError
        Unknown phantom / missing or unreadable file (names it).
    """
    from tomoclass.simulate.phantoms import PHANTOMS, phantom

    text = str(spec)
    key = text[len("phantom:"):] if text.startswith("phantom:") else text
    if key in PHANTOMS:
        t = phantom(key, voxel_size_angstrom=voxel_size_angstrom,
                    resolution_angstrom=resolution_angstrom)
        if name and name != t.name:
            t = dataclasses.replace(t, name=name, _cache={})
        return t
    path = Path(text)
    if text.startswith("phantom:"):
        raise InputError(f"unknown phantom {key!r}; known: {', '.join(PHANTOMS)}", field="source")
    if not path.exists():
        raise InputError("structure file not found (nor a built-in phantom name)", path=path)
    low = path.name.lower()
    if any(low.endswith(s) for s in MAP_SUFFIXES):
        return template_from_map(path, voxel_size_angstrom=voxel_size_angstrom,
                                 resolution_angstrom=resolution_angstrom,
                                 map_voxel_size_angstrom=map_voxel_size_angstrom, name=name,
                                 mask_radius_angstrom=mask_radius_angstrom, mask_path=mask_path)
    return template_from_model(path, voxel_size_angstrom=voxel_size_angstrom,
                               resolution_angstrom=resolution_angstrom, assembly=assembly,
                               name=name)


def load_class_templates(config) -> list[Template]:
    """Load every class template of a :class:`~tomoclass.simulate.config.SimulationConfig`.

    Returns
    -------
    list of Template
        In the config's class order, at its voxel size and resolution, named by the class
        name when given.
    """
    out = []
    for spec in config.classes:
        out.append(load_template(
            spec.source, voxel_size_angstrom=config.voxel_size_angstrom,
            resolution_angstrom=config.resolution_angstrom, assembly=config.assembly,
            map_voxel_size_angstrom=spec.map_voxel_size_angstrom, name=spec.name,
            mask_radius_angstrom=spec.map_mask_radius_angstrom, mask_path=spec.map_mask,
        ))
    return out
