"""Structures -> templates: atomic models, maps, bad input, and the real shrec12 set."""

import gzip
import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from scipy import stats

from tomoclass.errors import InputError
from tomoclass.simulate.config import SimulationConfig
from tomoclass.simulate.structures import (
    load_atomic_model,
    load_class_templates,
    load_template,
    template_from_map,
)

SHARED = Path(os.environ.get("TOMOCLASS_SHARED_DATA",
                             Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
PDB_DIR = SHARED / "structures" / "pdb"

# Two copies by BIOMT: identity and a 180 degree turn about z with a 40 A shift in x.
TINY_PDB = """\
REMARK 350 BIOMOLECULE: 1
REMARK 350 APPLY THE FOLLOWING TO CHAINS: A
REMARK 350   BIOMT1   1  1.000000  0.000000  0.000000        0.00000
REMARK 350   BIOMT2   1  0.000000  1.000000  0.000000        0.00000
REMARK 350   BIOMT3   1  0.000000  0.000000  1.000000        0.00000
REMARK 350   BIOMT1   2 -1.000000  0.000000  0.000000       40.00000
REMARK 350   BIOMT2   2  0.000000 -1.000000  0.000000        0.00000
REMARK 350   BIOMT3   2  0.000000  0.000000  1.000000        0.00000
ATOM      1  N   ALA A   1      11.000  10.000  10.000  1.00  0.00           N
ATOM      2  CA  ALA A   1      12.400  10.000  10.000  1.00  0.00           C
ATOM      3  C   ALA A   1      13.000  11.400  10.000  1.00  0.00           C
ATOM      4  O   ALA A   1      12.300  12.400  10.000  1.00  0.00           O
ATOM      5  CB  ALA A   1      13.000   9.000   9.000  1.00  0.00           C
HETATM    6  O   HOH A 101      30.000  30.000  30.000  1.00  0.00           O
END
"""


def test_tiny_pdb_builds_its_biomt_assembly(tmp_path):
    path = tmp_path / "tiny.pdb"
    path.write_text(TINY_PDB)
    coords, masses, chains = load_atomic_model(path)
    assert (len(coords), chains) == (10, 2)  # water dropped, two copies
    coords1, _, chains1 = load_atomic_model(path, assembly=False)
    assert (len(coords1), chains1) == (5, 1)
    assert masses.sum() == pytest.approx(2 * (14.007 + 3 * 12.011 + 15.999), rel=1e-3)
    # gzipped too
    gz = tmp_path / "tiny.pdb.gz"
    gz.write_bytes(gzip.compress(TINY_PDB.encode()))
    t = load_template(gz, voxel_size_angstrom=4.0, resolution_angstrom=8.0)
    assert t.name == "tiny" and t.mass_kda == pytest.approx(masses.sum() / 1e3)
    assert t.box % 2 == 1 and t.density.max() > 0


@pytest.mark.parametrize("content", ["", "HEADER    nothing here\nEND\n", "\x00\x01garbage"])
def test_unreadable_or_empty_model_names_the_file(tmp_path, content):
    path = tmp_path / "bad.pdb"
    path.write_text(content)
    with pytest.raises(InputError) as exc:
        load_template(path)
    assert exc.value.path == str(path)
    assert str(path) in str(exc.value)


def test_missing_file_and_unknown_phantom():
    with pytest.raises(InputError, match="not found"):
        load_template("/nonexistent/x.pdb")
    with pytest.raises(InputError, match="unknown phantom"):
        load_template("phantom:nope")


def _write_map(path, data, voxel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile warns about the NaN we want
        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(data.astype(np.float32))
            m.voxel_size = voxel


def test_map_with_nans_names_the_file(tmp_path):
    data = np.ones((16, 16, 16), np.float32)
    data[3, 4, 5] = np.nan
    path = tmp_path / "nan.mrc"
    _write_map(path, data, 10.0)
    with pytest.raises(InputError) as exc:
        load_template(path)
    assert exc.value.path == str(path)


def test_map_is_resampled_to_the_target_voxel_size(tmp_path):
    n, voxel, radius = 48, 5.0, 40.0
    z, y, x = (np.indices((n, n, n)) - n // 2) * voxel
    ball = (np.sqrt(x**2 + y**2 + z**2) <= radius).astype(np.float32) * 7.0 + 0.5
    path = tmp_path / "ball.mrc"
    _write_map(path, ball, voxel)
    t = template_from_map(path, voxel_size_angstrom=10.0, resolution_angstrom=20.0)
    assert t.voxel_size_angstrom == 10.0
    assert abs(t.radius_angstrom - radius) < 12.0
    # the header override rescales: the same file read as 2.5 A/voxel is half as big
    t2 = template_from_map(path, voxel_size_angstrom=10.0, resolution_angstrom=20.0,
                           map_voxel_size_angstrom=2.5)
    assert t2.radius_angstrom < 0.7 * t.radius_angstrom


def test_config_yaml_round_trip_and_validation(tmp_path):
    cfg = SimulationConfig(seed=3)
    cfg.subtomograms.snr_range = (0.05, 0.2)
    cfg.tomogram.shape_zyx = (20, 40, 40)
    path = tmp_path / "sim.yaml"
    text = cfg.to_yaml(path)
    again = SimulationConfig.from_yaml(path)
    assert again == cfg
    assert again.to_yaml() == text
    assert len(SimulationConfig().classes) >= 12
    bad = tmp_path / "bad.yaml"
    bad.write_text("microscope:\n  amplitude_contrast: 1.5\n")
    with pytest.raises(InputError) as exc:
        SimulationConfig.from_yaml(bad)
    assert exc.value.field == "microscope.amplitude_contrast" and exc.value.path == str(bad)
    bad.write_text("subtomograms:\n  snr_range: [0.5, 0.1]\n")
    with pytest.raises(InputError, match="snr_range"):
        SimulationConfig.from_yaml(bad)
    bad.write_text("nonsense_key: 1\n")
    with pytest.raises(InputError, match="nonsense_key|Extra"):
        SimulationConfig.from_yaml(bad)
    assert SimulationConfig().microscope.tilt_angles_deg[:2] == [-60.0, -58.0]
    assert len(SimulationConfig().microscope.tilt_angles_deg) == 61


realdata = pytest.mark.skipif(not PDB_DIR.is_dir(), reason=f"shared data absent ({PDB_DIR})")


@pytest.mark.realdata
@realdata
def test_real_structures_load_and_radii_follow_masses():
    files = sorted(p for p in PDB_DIR.iterdir() if p.name.endswith((".pdb", ".cif.gz")))
    assert len(files) == 12
    cfg = SimulationConfig(classes=[{"source": str(p)} for p in files])
    templates = load_class_templates(cfg)
    masses = np.array([t.mass_kda for t in templates])
    rg = np.array([t.radius_of_gyration_angstrom for t in templates])
    rho = stats.spearmanr(masses, rg).statistic
    names = [t.name for t in templates]
    assert rho >= 0.8, dict(zip(names, zip(masses, rg, strict=True), strict=True))
    by = {t.name: t for t in templates}
    assert by["3cf3"].n_chains == 6  # the C6 hexamer from BIOMT
    assert by["3cf3"].mass_kda == pytest.approx(449, rel=0.05)
    assert by["7p6z"].size_group == "large" and by["1s3x"].size_group == "tiny"
    _, _, asu_chains = load_atomic_model(PDB_DIR / "3cf3.pdb", assembly=False)
    assert asu_chains == 3
