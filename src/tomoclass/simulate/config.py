"""One validated configuration object for every physical parameter of the simulator.

:class:`SimulationConfig` round-trips to YAML (:meth:`SimulationConfig.to_yaml`,
:meth:`SimulationConfig.from_yaml`); the ``tomoclass simulate`` CLI builds its options from
these fields, so defaults live here only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tomoclass.errors import InputError
from tomoclass.simulate.fourier import (
    AMPLITUDE_CONTRAST,
    SPHERICAL_ABERRATION_MM,
    TILT_RANGE_DEG,
    VOLTAGE_KV,
)
from tomoclass.simulate.phantoms import list_phantoms

__all__ = [
    "ClassSpec",
    "MicroscopeConfig",
    "SubtomogramConfig",
    "TomogramConfig",
    "SimulationConfig",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ClassSpec(_Model):
    """One particle class: where its structure comes from and its share of particles."""

    source: str = Field(description="built-in phantom name, or a PDB/mmCIF(.gz)/MRC file path")
    name: str | None = Field(None, description="class name (default: phantom name / file stem)")
    weight: float = Field(1.0, ge=0.0, description="relative abundance in tomograms")
    map_voxel_size_angstrom: float | None = Field(
        None, gt=0.0, description="override of an MRC header's voxel size (Å)"
    )
    map_mask_radius_angstrom: float | None = Field(
        None, gt=0.0, description="maps: keep a soft sphere of this radius about the box "
        "centre (Å; drops membranes and neighbours an in-cell average brings along)"
    )
    map_mask: str | None = Field(
        None, description="maps: mask MRC on the map's grid (0-1) to multiply the map with"
    )


class MicroscopeConfig(_Model):
    """Imaging: optics and tilt scheme (SHREC'21-like defaults)."""

    voltage_kv: float = Field(
        VOLTAGE_KV, gt=0.0, le=3000.0, description="acceleration voltage (kV)"
    )
    spherical_aberration_mm: float = Field(
        SPHERICAL_ABERRATION_MM, ge=0.0, le=20.0, description="Cs (mm)"
    )
    amplitude_contrast: float = Field(
        AMPLITUDE_CONTRAST, ge=0.0, lt=1.0, description="amplitude contrast"
    )
    defocus_um: tuple[float, float] = Field(
        (2.5, 3.5), description="defocus range (µm, underfocus positive), drawn uniformly"
    )
    b_factor_angstrom2: float = Field(0.0, ge=0.0, description="CTF envelope B-factor (Å²)")
    tilt_range_deg: tuple[float, float] = Field(TILT_RANGE_DEG, description="tilt range (deg)")
    tilt_step_deg: float = Field(2.0, gt=0.0, le=90.0, description="tilt increment (deg)")

    @model_validator(mode="after")
    def _ranges(self):
        lo, hi = self.defocus_um
        if not (0.0 <= lo <= hi <= 50.0):
            raise ValueError(
                f"defocus_um must satisfy 0 <= min <= max <= 50, got {self.defocus_um}")
        a, b = self.tilt_range_deg
        if not (-90.0 <= a <= b <= 90.0):
            raise ValueError(f"tilt_range_deg must satisfy -90 <= min <= max <= 90, got {(a, b)}")
        return self

    @property
    def tilt_angles_deg(self) -> list[float]:
        """The tilt series' angles, ``tilt_min`` to ``tilt_max`` in ``tilt_step`` steps."""
        a, b = self.tilt_range_deg
        n = int(round((b - a) / self.tilt_step_deg)) + 1
        angles = (a + i * self.tilt_step_deg for i in range(n))
        return [t for t in angles if t <= b + 1e-6]


class SubtomogramConfig(_Model):
    """Subtomogram mode: one particle per box."""

    box_size: int = Field(32, ge=8, le=512, description="subtomogram edge (voxels)")
    n_per_class: int = Field(100, ge=1, description="subtomograms per class")
    snr_range: tuple[float, float] = Field(
        (0.1, 0.1), description="SNR range, drawn log-uniformly (var(signal)/var(noise) in the box)"
    )
    snr_reference: Literal["dataset", "subtomogram"] = Field(
        "dataset", description="SNR per dataset (one noise level: small particles get a lower "
        "SNR, as in a tomogram) or per subtomogram (each box exactly at the SNR)")
    noise: bool = Field(True, description="add noise")
    ctf: bool = Field(True, description="apply the CTF")
    missing_wedge: bool = Field(True, description="apply the missing wedge")
    max_shift_voxels: float = Field(1.0, ge=0.0, description="max sub-voxel/voxel shift (voxels)")
    crowding: int = Field(0, ge=0, le=16, description="max neighbouring particles per box")
    interpolation_order: Literal[1, 3] = Field(
        1, description="rotation spline order (1: trilinear, fast)")
    batch_size: int = Field(64, ge=1, description="particles per FFT batch")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of the 'val' split")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of the 'test' split")

    @model_validator(mode="after")
    def _check(self):
        lo, hi = self.snr_range
        if not (0.0 < lo <= hi):
            raise ValueError(f"snr_range must satisfy 0 < min <= max, got {self.snr_range}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be < 1")
        return self


class TomogramConfig(_Model):
    """Tomogram mode: crowded volume, tilt series, weighted back-projection."""

    shape_zyx: tuple[int, int, int] = Field((200, 512, 512), description="tomogram (z, y, x)")
    n_particles: int = Field(2500, ge=0, description="particles to place")
    n_tomograms: int = Field(1, ge=1, description="tomograms to simulate")
    min_gap_voxels: float = Field(1.0, ge=0.0, description="min gap between bounding spheres")
    dose_e_per_angstrom2: float = Field(110.0, gt=0.0, description="total dose (e/Å²)")
    potential_contrast_volts: float = Field(
        2.0, gt=0.0, description="protein minus ice mean inner potential (V)"
    )
    defocus_jitter_um: float = Field(0.2, ge=0.0, description="per-tilt defocus s.d. (µm)")
    acquisition: Literal["dose_symmetric", "sequential"] = Field(
        "dose_symmetric", description="tilt order, for accumulated dose"
    )
    radiation_damage: bool = Field(True, description="attenuate by accumulated dose")
    noise: bool = Field(True, description="Poisson shot noise at the dose")
    ctf: bool = Field(True, description="apply the per-tilt CTF")
    write_density: bool = Field(False, description="also write the noise-free density")
    interpolation_order: Literal[1, 3] = Field(3, description="rotation spline order")

    @model_validator(mode="after")
    def _check(self):
        if min(self.shape_zyx) < 8:
            raise ValueError(f"shape_zyx must be at least 8 voxels per axis, got {self.shape_zyx}")
        return self


def _default_classes() -> list[ClassSpec]:
    return [ClassSpec(source=name) for name in list_phantoms()]


class SimulationConfig(_Model):
    """Everything the simulator needs; ``SimulationConfig()`` is a valid default (phantoms)."""

    seed: int = Field(0, ge=0, description="random seed: same seed, same output")
    voxel_size_angstrom: float = Field(10.0, gt=0.0, description="voxel size (Å)")
    resolution_angstrom: float = Field(20.0, ge=0.0, description="template low-pass (Å)")
    assembly: bool = Field(True, description="build biological assemblies of atomic models")
    classes: list[ClassSpec] = Field(default_factory=_default_classes, min_length=1)
    microscope: MicroscopeConfig = Field(default_factory=MicroscopeConfig)
    subtomograms: SubtomogramConfig = Field(default_factory=SubtomogramConfig)
    tomogram: TomogramConfig = Field(default_factory=TomogramConfig)

    @model_validator(mode="after")
    def _unique(self):
        names = [c.name or Path(c.source).name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        return self

    def to_dict(self) -> dict:
        """Plain, YAML-ready dict (tuples as lists)."""
        return self.model_dump(mode="json")

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """Serialize to YAML; also write it (atomically) when ``path`` is given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from tomoclass.io.atomic import atomic_path

            with atomic_path(path) as tmp:
                tmp.write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict, *, path: str | os.PathLike | None = None) -> SimulationConfig:
        """Validate a dict; problems raise :class:`InputError` naming the field (and file)."""
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            raise InputError(err["msg"], path=path, field=field) from None

    @classmethod
    def from_yaml(cls, source: str | os.PathLike) -> SimulationConfig:
        """Load from a YAML file path (or YAML text containing a newline)."""
        if isinstance(source, str) and "\n" in source:
            text, path = source, None
        else:
            path = Path(source)
            try:
                text = path.read_text()
            except OSError as exc:
                raise InputError(f"cannot read config: {exc.strerror}", path=path) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            raise InputError(f"invalid YAML: {exc}".splitlines()[0], path=path,
                             line=None if line is None else line + 1) from None
        if data is not None and not isinstance(data, dict):
            raise InputError("config must be a YAML mapping", path=path)
        return cls.from_dict(data or {}, path=path)
