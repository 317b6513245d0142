"""Density-map inputs: voxel size reported and recorded, implausible headers, inverted maps,
masks, and the ``--map-*`` options of ``tomoclass simulate``."""

import logging

import mrcfile
import numpy as np
import pytest
import yaml

from tomoclass.cli.main import main
from tomoclass.errors import InputError
from tomoclass.simulate.maps import map_radius_of_gyration_angstrom, soft_sphere_mask
from tomoclass.simulate.structures import template_from_map


def _ball(n=24, radius_vox=6.0, centre=None, value=5.0):
    idx = np.indices((n, n, n))
    c = np.array(centre if centre is not None else (n // 2,) * 3)[:, None, None, None]
    r = np.sqrt(((idx - c) ** 2).sum(0))
    return (r <= radius_vox).astype(np.float32) * value


def _write(path, data, voxel):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, np.float32))
        m.voxel_size = voxel
    return path


def test_rg_of_a_ball_is_sqrt_three_fifths_of_its_radius():
    rg = map_radius_of_gyration_angstrom(_ball(32, 10.0), 2.0)
    assert rg == pytest.approx(np.sqrt(3 / 5) * 20.0, rel=0.05)


def test_map_voxel_size_is_kept_and_implausible_header_warned(tmp_path, caplog):
    # a ball of 6 voxels written at 10 A/voxel (Rg ~ 46 A) is plausible ...
    path = _write(tmp_path / "ok.mrc", _ball(), 10.0)
    with caplog.at_level(logging.INFO):
        t = template_from_map(path, voxel_size_angstrom=10.0)
    assert t.source_voxel_size_angstrom == 10.0
    assert "map voxel size 10 Å (header)" in caplog.text
    assert "radius of gyration" not in caplog.text
    # ... the same file with a 1 A header is a 4.6 A particle: warned, naming the option
    caplog.clear()
    bad = _write(tmp_path / "tiny.mrc", _ball(), 1.0)
    with caplog.at_level(logging.WARNING):
        template_from_map(bad, voxel_size_angstrom=1.0, resolution_angstrom=2.0)
    assert "smaller than any protein" in caplog.text and "--map-voxel-size" in caplog.text
    # the override fixes it (and is what the template records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        t = template_from_map(bad, voxel_size_angstrom=10.0, map_voxel_size_angstrom=10.0)
    assert caplog.text == "" and t.source_voxel_size_angstrom == 10.0


def test_zero_header_names_map_voxel_size(tmp_path):
    path = _write(tmp_path / "zero.mrc", _ball(), 0.0)
    with pytest.raises(InputError) as exc:
        template_from_map(path)
    msg = str(exc.value)
    assert str(path) in msg and "--map-voxel-size" in msg
    assert "with --voxel-size" not in msg  # that is the target size in simulate


def test_inverted_map_is_named_as_such(tmp_path):
    rng = np.random.default_rng(0)
    data = -_ball() + rng.normal(0, 0.05, (24, 24, 24)).astype(np.float32)
    path = _write(tmp_path / "inv.mrc", data, 10.0)
    with pytest.raises(InputError, match="this map looks inverted") as exc:
        template_from_map(path)
    assert exc.value.path == str(path)
    template_from_map(_write(tmp_path / "pos.mrc", -data, 10.0))  # the right sign passes


def test_soft_sphere_and_user_mask_drop_a_slab(tmp_path):
    m = soft_sphere_mask((21, 21, 21), 5.0, 3.0)
    assert m[10, 10, 10] == 1.0 and m[10, 10, 0] == 0.0 and 0 < m[10, 10, 17] < 1
    # a particle at the centre plus a membrane slab at the top of the box
    data = _ball(32, 5.0)
    data[26:29] = 3.0
    path = _write(tmp_path / "incell.mrc", data, 10.0)
    plain = template_from_map(path, resolution_angstrom=10.0)
    masked = template_from_map(path, resolution_angstrom=10.0, mask_radius_angstrom=80.0,
                               mask_edge_angstrom=20.0)
    assert masked.box < plain.box and masked.radius_angstrom < 80.0
    mask = _write(tmp_path / "mask.mrc", (_ball(32, 9.0) > 0).astype(np.float32), 10.0)
    user = template_from_map(path, resolution_angstrom=10.0, mask_path=mask)
    assert user.box < plain.box
    wrong = _write(tmp_path / "wrong.mrc", np.ones((8, 8, 8), np.float32), 10.0)
    with pytest.raises(InputError, match="on the map's grid") as exc:
        template_from_map(path, mask_path=wrong)
    assert exc.value.path == str(wrong)


def test_cli_map_options_per_map_and_recorded(tmp_path, capsys):
    a = _write(tmp_path / "a.mrc", _ball(24, 4.0), 1.0)   # wrong header: really 10 A
    b = _write(tmp_path / "b.mrc", _ball(24, 3.0), 1.0)
    out = tmp_path / "ds"
    rc = main(["simulate", "subtomograms", "--out", str(out), "--classes", str(a), str(b),
               "--map-voxel-size", "10", "8", "--map-mask-radius", "60", "--box-size", "16",
               "--n-per-class", "2", "--no-ctf", "--no-missing-wedge"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "read at 10 Å/voxel" in text and "read at 8 Å/voxel" in text
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["provenance"]["map_voxel_size_angstrom"] == {"a": 10.0, "b": 8.0}
    # a count that is neither one nor one per map is refused, naming the option
    rc = main(["simulate", "subtomograms", "--out", str(tmp_path / "x"), "--classes", str(a),
               str(b), "--map-voxel-size", "10", "8", "9"])
    err = capsys.readouterr().err
    assert rc == 2 and "--map-voxel-size" in err and "2 maps" in err
    rc = main(["simulate", "subtomograms", "--out", str(tmp_path / "x"), "--classes", "globule",
               "--map-mask-radius", "50"])
    assert rc == 2 and "--map-mask-radius" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_tomogram_meta_records_the_map_voxel_size(tmp_path):
    a = _write(tmp_path / "a.mrc", _ball(24, 3.0), 10.0)
    out = tmp_path / "t"
    assert main(["-q", "simulate", "tomograms", "--classes", str(a), "globule", "--shape-zyx",
                 "24", "48", "48", "--n-particles", "3", "--tilt-step-deg", "10",
                 "--out", str(out)]) == 0
    meta = yaml.safe_load((out / "tomo_000_meta.yaml").read_text())
    assert meta["info"]["map_voxel_size_angstrom"] == {"a": 10.0}  # the phantom is no map
