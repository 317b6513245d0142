import mrcfile
import numpy as np
import pytest

from tomoclass.errors import InputError
from tomoclass.io import read_volume, write_volume


@pytest.fixture
def vol(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(12, 16, 20)).astype(np.float32)
    path = tmp_path / "t.mrc"
    write_volume(path, data, 10.0)
    return path, data


def test_round_trip_memmapped_zyx_and_voxel(vol):
    path, data = vol
    v = read_volume(path)
    assert isinstance(v.data, np.memmap)
    assert v.shape == (12, 16, 20)
    assert v.voxel_size_angstrom == pytest.approx(10.0)
    np.testing.assert_array_equal(np.asarray(v.data), data)
    v2 = read_volume(path, mmap=False)
    assert not isinstance(v2.data, np.memmap)
    np.testing.assert_array_equal(v2.data, data)


def test_header_stats_and_cell(vol):
    path, data = vol
    with mrcfile.open(path) as m:
        h = m.header
        assert float(h.dmin) == pytest.approx(data.min())
        assert float(h.dmax) == pytest.approx(data.max())
        assert float(h.dmean) == pytest.approx(data.mean(), abs=1e-5)
        assert float(h.rms) == pytest.approx(data.std(), rel=1e-4)
        assert (int(h.nx), int(h.ny), int(h.nz)) == (20, 16, 12)
        assert float(h.cella.x) == pytest.approx(200.0)
        assert int(h.mode) == 2


def test_override_voxel_size(vol):
    path, _ = vol
    assert read_volume(path, voxel_size_angstrom=5.0).voxel_size_angstrom == 5.0


def test_dtypes_kept_or_converted(tmp_path):
    cases = [(np.int8, 0), (np.int16, 1), (np.uint16, 6), (np.float64, 2), (np.uint8, 6)]
    for dtype, mode in cases:
        p = tmp_path / f"{np.dtype(dtype).name}.mrc"
        write_volume(p, (np.arange(2 * 3 * 4).reshape(2, 3, 4) % 7).astype(dtype), 4.0)
        with mrcfile.open(p) as m:
            assert int(m.header.mode) == mode
        assert read_volume(p).data[1, 2, 3] == (23 % 7)


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "a.mrc"
    write_volume(p, np.ones((2, 3, 4), np.float32) * np.arange(4), 1.0)
    before = p.read_bytes()
    with pytest.raises(InputError):
        write_volume(p, np.ones((2, 3, 4, 5), np.float32), 1.0)
    with pytest.raises(InputError):
        write_volume(p, np.ones((2, 3, 4), np.float32), 0.0)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.mrc"]


# --- bad inputs (issue 9, section 1) -------------------------------------------------------

def _match(exc, *words):
    text = str(exc.value)
    for w in words:
        assert w in text, text
    assert "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as e:
        read_volume(tmp_path / "nope.mrc")
    _match(e, "nope.mrc", "no such file")


def test_truncated_file(vol, tmp_path):
    path, _ = vol
    bad = tmp_path / "trunc.mrc"
    bad.write_bytes(path.read_bytes()[:-1000])
    for mm in (True, False):
        with pytest.raises(InputError) as e:
            read_volume(bad, mmap=mm)
        _match(e, "trunc.mrc", "truncated", "field 'data'")


def test_not_an_mrc(tmp_path):
    bad = tmp_path / "text.mrc"
    bad.write_text("hello, I am not a volume\n" * 3)
    with pytest.raises(InputError) as e:
        read_volume(bad)
    _match(e, "text.mrc")


def test_wrong_mode(vol, tmp_path):
    path, _ = vol
    bad = tmp_path / "mode.mrc"
    raw = bytearray(path.read_bytes())
    raw[12:16] = np.int32(4).tobytes()  # mode 4: complex64
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        read_volume(bad)
    _match(e, "mode.mrc", "field 'mode'", "mode 4")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_inf(tmp_path, value):
    data = np.random.default_rng(1).normal(size=(8, 8, 8)).astype(np.float32)
    data[3, 4, 5] = value
    p = tmp_path / "nan.mrc"
    write_volume(p, data, 10.0)
    with pytest.raises(InputError) as e:
        read_volume(p)
    _match(e, "nan.mrc", "NaN/Inf", "field 'data'")
    assert read_volume(p, check="none").shape == (8, 8, 8)


def test_nan_in_sampled_mode_checks_sampled_sections(tmp_path):
    data = np.random.default_rng(1).normal(size=(40, 4, 4)).astype(np.float32)
    data[0, 1, 1] = np.nan  # section 0 is always among the sampled ones
    p = tmp_path / "s.mrc"
    write_volume(p, data, 10.0)
    with pytest.raises(InputError):
        read_volume(p, check="sample")


def test_zero_variance(tmp_path):
    p = tmp_path / "flat.mrc"
    write_volume(p, np.full((4, 5, 6), 3.0, np.float32), 10.0)
    with pytest.raises(InputError) as e:
        read_volume(p)
    _match(e, "flat.mrc", "zero variance")


def test_2d_where_3d_expected(tmp_path):
    p = tmp_path / "img.mrc"
    write_volume(p, np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32), 10.0)
    with pytest.raises(InputError) as e:
        read_volume(p)
    _match(e, "img.mrc", "2D image", "3D volume")
    assert read_volume(p, allow_2d=True).shape == (1, 16, 16)


@pytest.mark.parametrize("voxel", [0.0, 1e5, 0.001])
def test_voxel_size_zero_or_absurd(tmp_path, voxel):
    p = tmp_path / "vs.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.random.default_rng(0).normal(size=(4, 4, 4)).astype(np.float32))
        m.voxel_size = voxel
    with pytest.raises(InputError) as e:
        read_volume(p)
    _match(e, "vs.mrc", "voxel size", "--voxel-size")
    assert read_volume(p, voxel_size_angstrom=10.0).voxel_size_angstrom == 10.0


def test_anisotropic_voxel_size(tmp_path):
    p = tmp_path / "an.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.random.default_rng(0).normal(size=(4, 4, 4)).astype(np.float32))
        m.voxel_size = (10.0, 10.0, 20.0)
    with pytest.raises(InputError) as e:
        read_volume(p)
    _match(e, "anisotropic")


def test_bad_override():
    from tomoclass.io import check_voxel_size
    with pytest.raises(InputError):
        check_voxel_size(-1)
    with pytest.raises(InputError):
        check_voxel_size("ten")


def test_a_tomogram_thinnest_along_y_is_flagged(tmp_path, caplog):
    import logging

    from tomoclass.io.volume import warn_if_beam_along_y

    beam_y = read_volume(write_volume(tmp_path / "imod.mrc", np.ones((64, 20, 64), np.float32)
                                      + np.arange(20, dtype=np.float32)[None, :, None], 10.0))
    with caplog.at_level(logging.WARNING, logger="tomoclass.io.volume"):
        assert warn_if_beam_along_y(beam_y)
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "imod.mrc" in msg and "beam along y" in msg and "trimvol -rx" in msg
    caplog.clear()
    usual = read_volume(write_volume(tmp_path / "t.mrc", np.ones((20, 64, 64), np.float32)
                                     + np.arange(20, dtype=np.float32)[:, None, None], 10.0))
    with caplog.at_level(logging.WARNING, logger="tomoclass.io.volume"):
        assert not warn_if_beam_along_y(usual)
    assert not caplog.records


@pytest.mark.parametrize("order", [(3, 2, 1), (2, 1, 3), (1, 3, 2), (3, 1, 2), (2, 3, 1)])
@pytest.mark.parametrize("mmap", [True, False])
def test_non_standard_axis_order_is_read_as_zyx(tmp_path, order, mmap):
    # A (z, y, x) volume with a distinct extent per axis and a feature at a known voxel, stored
    # with columns, rows, sections along order = (mapc, mapr, maps) as MRC2014 allows.
    zyx = np.random.default_rng(1).normal(size=(5, 6, 7)).astype(np.float32)
    zyx[1, 2, 3] = 50.0
    mapc, mapr, maps = order
    # File axes (sections, rows, columns) run along maps, mapr, mapc; zyx axis of x/y/z is 2/1/0.
    stored = zyx.transpose(3 - maps, 3 - mapr, 3 - mapc)
    p = tmp_path / "perm.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.ascontiguousarray(stored))
        m.header.mapc, m.header.mapr, m.header.maps = order
        m.header.mx, m.header.my, m.header.mz = 7, 6, 5   # sampling along x, y, z
        m.header.cella = (70.0, 60.0, 50.0)                 # 10 Å along x, y, z
    v = read_volume(p, mmap=mmap)
    assert v.shape == (5, 6, 7)
    assert v.voxel_size_angstrom == pytest.approx(10.0)
    np.testing.assert_array_equal(np.asarray(v.data), zyx)
    assert tuple(int(i) for i in np.argwhere(np.asarray(v.data) == 50.0)[0]) == (1, 2, 3)
    if not mmap:
        assert v.data.flags.c_contiguous


def test_axis_order_that_is_not_a_permutation(tmp_path):
    p = tmp_path / "bad.mrc"
    with mrcfile.new(p) as m:
        m.set_data(np.random.default_rng(0).normal(size=(4, 4, 4)).astype(np.float32))
        m.voxel_size = 10.0
        m.header.mapc, m.header.mapr, m.header.maps = 1, 1, 3
    with pytest.raises(InputError) as e:
        read_volume(p)
    _match(e, "bad.mrc", "mapc", "permutation")


@pytest.mark.parametrize("signed_flag", [0, 1])
def test_imod_byte_tomograms_keep_their_sign(tmp_path, signed_flag):
    # IMOD writes mode 0 as unsigned bytes (stamp at byte 152, flag bit 1 clear); read as
    # MRC2014's int8, 200 would become -56
    values = np.arange(0, 256, 2, dtype=np.uint8).reshape(4, 4, 8)
    p = tmp_path / "byte.mrc"
    with mrcfile.new(p) as m:
        m.set_data(values.view(np.int8))
        m.voxel_size = 10.0
        extra = bytearray(bytes(m.header.extra2))
        extra[40:48] = np.array([1146047817, signed_flag], dtype="<i4").tobytes()
        m.header.extra2 = bytes(extra)
    v = read_volume(p)
    if signed_flag:
        assert v.data.dtype == np.int8 and int(v.data.min()) < 0
    else:
        assert v.data.dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(v.data), values)
    # without the IMOD stamp mode 0 is MRC2014's signed int8
    with mrcfile.new(tmp_path / "plain.mrc") as m:
        m.set_data(values.view(np.int8))
        m.voxel_size = 10.0
    assert read_volume(tmp_path / "plain.mrc").data.dtype == np.int8
