"""predict annotates the user's RELION 3.1 / RELION 5 / Warp STAR: blocks, columns, units kept."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import starfile
from infer_support import make_world
from train_support import one_thread

from tomoclass.cli.main import main
from tomoclass.errors import InputError
from tomoclass.infer.predict import predict_particles
from tomoclass.io.tomonames import resolve_tomogram_name

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained tiny run, a 40^3 tomogram at 10 Å with 6 blobs, and their picks as CSV."""
    return make_world(tmp_path_factory.mktemp("predict"))


UNBINNED = 2.5  # Å per tilt-series pixel; the tomogram has 10 Å voxels (binning 4)


def _picks(world):  # noqa: F811
    return pd.read_csv(world / "picks.csv")


def _assert_kept(original: dict, written: dict, key: str) -> pd.DataFrame:
    """Every block and column of ``original`` in ``written`` with the same values."""
    assert list(written)[: len(original)] == list(original)
    for name, block in original.items():
        got = written[name]
        if name != key:
            if isinstance(block, pd.DataFrame):
                pd.testing.assert_frame_equal(got, block, check_dtype=False)
            else:
                assert got == block
            continue
        assert list(got.columns[: len(block.columns)]) == list(block.columns)
        for col in block.columns:
            if block[col].dtype.kind in "if":
                np.testing.assert_allclose(got[col], block[col], rtol=1e-9)
            else:
                assert list(got[col].astype(str)) == list(block[col].astype(str)), col
    return written[key]


def test_relion31_unbinned_pixels_stay_unbinned(world, tmp_path):  # noqa: F811
    p = _picks(world)
    n = len(p)
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           "rlnImagePixelSize": [UNBINNED], "rlnImageSize": [48],
                           "rlnImageDimensionality": [3]})
    particles = pd.DataFrame({
        "rlnMicrographName": ["tomos/TS_01.mrc"] * n,
        "rlnCoordinateX": p["x"] * 4.0, "rlnCoordinateY": p["y"] * 4.0,
        "rlnCoordinateZ": p["z"] * 4.0,
        "rlnOriginXAngst": [0.0] * n, "rlnOriginYAngst": [0.0] * n, "rlnOriginZAngst": [0.0] * n,
        "rlnAngleRot": np.arange(n) * 10.0, "rlnAngleTilt": [90.0] * n, "rlnAnglePsi": [0.0] * n,
        "rlnImageName": [f"Extract/job007/tomos/TS_01{i:06d}.mrc" for i in range(n)],
        "rlnOpticsGroup": [1] * n, "rlnRandomSubset": [1 + i % 2 for i in range(n)],
        "rlnClassNumber": [7] * n,
    })
    src = tmp_path / "run_data.star"
    starfile.write({"optics": optics, "particles": particles}, src)
    shutil.copy(world / "tomo.mrc", tmp_path / "TS_01.mrc")
    out = tmp_path / "classified.star"
    assert main(["predict", "--run", str(world / "run"), "--tomogram", str(tmp_path / "TS_01.mrc"),
                 "--coords", str(src), "--coords-angpix", str(UNBINNED), "--out", str(out),
                 "--no-progress"]) == 0
    written = starfile.read(out, always_dict=True)
    got = _assert_kept({"optics": optics, "particles": particles}, written, "particles")
    assert (got["rlnClassNumber"] == 7).all()  # the table's own classes are not overwritten
    ref = predict_particles(world / "run", world / "tomo.mrc", world / "picks.csv")
    assert list(got["tomoclassClassName"]) == list(ref.table["class_name"])
    np.testing.assert_allclose(got["tomoclass_confidence"], ref.table["confidence"], atol=1e-5)
    # RELION 5 centred Å added from the unbinned pixels: (x * 2.5 / 10 - 40 / 2) * 10
    np.testing.assert_allclose(got["rlnCenteredCoordinateXAngst"], (p["x"] - 20) * 10.0)


def test_relion5_with_tomograms_star_and_one_file_per_class(world, tmp_path):  # noqa: F811
    p = _picks(world)
    n = len(p)
    general = {"rlnTomoSubTomosAre2DStacks": 1}
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["optics1"],
                           "rlnTomoTiltSeriesPixelSize": [UNBINNED], "rlnImagePixelSize": [10.0],
                           "rlnImageSize": [32], "rlnImageDimensionality": [2]})
    particles = pd.DataFrame({
        "rlnTomoName": ["TS_01"] * n,
        "rlnTomoParticleName": [f"TS_01/{i + 1}" for i in range(n)],
        "rlnCenteredCoordinateXAngst": (p["x"] - 20) * 10.0,
        "rlnCenteredCoordinateYAngst": (p["y"] - 20) * 10.0,
        "rlnCenteredCoordinateZAngst": (p["z"] - 20) * 10.0,
        "rlnOriginXAngst": [0.0] * n, "rlnOriginYAngst": [0.0] * n, "rlnOriginZAngst": [0.0] * n,
        "rlnOpticsGroup": [1] * n, "rlnRandomSubset": [1 + i % 2 for i in range(n)],
    })
    src = tmp_path / "particles.star"
    original = {"general": general, "optics": optics, "particles": particles}
    starfile.write(original, src)
    tomos = tmp_path / "tomograms.star"
    starfile.write({"global": pd.DataFrame({"rlnTomoName": ["TS_0", "TS_01", "TS_011"],
                                            "rlnTomoSizeX": [160] * 3})}, tomos)
    shutil.copy(world / "tomo.mrc", tmp_path / "rec_TS_01.mrc")
    out = tmp_path / "classified.star"
    assert main(["predict", "--run", str(world / "run"), "--tomogram",
                 str(tmp_path / "rec_TS_01.mrc"), "--coords", str(src), "--tomograms-star",
                 str(tomos), "--split-by-class", "--out", str(out), "--no-progress"]) == 0
    written = starfile.read(out, always_dict=True)
    got = _assert_kept(original, written, "particles")
    assert "rlnCoordinateX" not in got.columns  # centred Å came in, centred Å go out
    per_class = sorted(tmp_path.glob("classified_*.star"))
    assert per_class and sum(len(starfile.read(f, always_dict=True)["particles"])
                             for f in per_class) == n
    for f in per_class:
        part = starfile.read(f, always_dict=True)
        assert list(part) == ["general", "optics", "particles"]
        assert part["particles"]["tomoclassClassName"].nunique() == 1
    # without the mapping the file stem 'rec_TS_01' names no row of the table
    assert main(["predict", "--run", str(world / "run"), "--tomogram",
                 str(tmp_path / "rec_TS_01.mrc"), "--coords", str(src), "--out",
                 str(tmp_path / "x.star"), "--no-progress"]) == 0  # one tomogram: all rows


def test_warp_reconstruction_name_and_nameless_block(world, tmp_path, caplog):  # noqa: F811
    p = _picks(world)
    n = len(p)
    particles = pd.DataFrame({
        "rlnCoordinateX": p["x"] * 4.0, "rlnCoordinateY": p["y"] * 4.0,
        "rlnCoordinateZ": p["z"] * 4.0,
        "rlnAngleRot": [0.0] * n, "rlnAngleTilt": [0.0] * n, "rlnAnglePsi": [0.0] * n,
        "rlnMicrographName": ["TS_01.tomostar"] * n,
        "rlnMagnification": [10000.0] * n, "rlnDetectorPixelSize": [UNBINNED] * n,
        "rlnAutopickFigureOfMerit": np.linspace(0.1, 0.9, n),
    })
    other = particles.iloc[:2].assign(rlnMicrographName="TS_02.tomostar")
    src = tmp_path / "warp.star"
    starfile.write({"": pd.concat([particles, other], ignore_index=True)}, src)
    tomo = tmp_path / "TS_01_10.00Apx.mrc"
    shutil.copy(world / "tomo.mrc", tomo)
    with caplog.at_level("INFO"):
        assert resolve_tomogram_name(tomo) == "TS_01"
    assert "Warp" in caplog.text
    out = tmp_path / "classified.star"
    assert main(["predict", "--run", str(world / "run"), "--tomogram", str(tomo), "--coords",
                 str(src), "--coords-angpix", str(UNBINNED), "--out", str(out),
                 "--no-progress"]) == 0
    written = starfile.read(out, always_dict=True)
    got = _assert_kept({"": particles}, written, "")
    assert len(got) == n  # TS_02's rows are another tomogram's
    np.testing.assert_allclose(got["rlnAutopickFigureOfMerit"], particles[
        "rlnAutopickFigureOfMerit"])  # the picker's own score stays


def test_tomograms_star_without_the_tomogram_is_an_error(tmp_path):
    tomos = tmp_path / "tomograms.star"
    starfile.write({"global": pd.DataFrame({"rlnTomoName": ["TS_07"]})}, tomos)
    with pytest.raises(InputError, match="--tomo-name"):
        resolve_tomogram_name(tmp_path / "TS_01.mrc", tomograms_star=tomos)
    assert resolve_tomogram_name(tmp_path / "x.mrc", name="TS_9") == "TS_9"


def _warp_settings(tmp_path, names):
    tomostar = tmp_path / "tomostar"
    tomostar.mkdir()
    for n in names:
        (tomostar / f"{n}.tomostar").write_text("data_\n")
    settings = tmp_path / "warp_tiltseries.settings"
    settings.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<Settings><Import>'
        '<Param Name="DataFolder" Value="tomostar" /><Param Name="Extension" '
        'Value="*.tomostar" /><Param Name="PixelSize" Value="1.25" />'
        '<Param Name="BinTimes" Value="1" /></Import><Tomo /></Settings>\n')
    return settings


def test_names_from_a_warp_settings_file(tmp_path, caplog):
    from tomoclass.io.tomonames import read_warp_settings

    settings = _warp_settings(tmp_path, ["lam1_ts_003", "lam1_ts_0031"])
    assert read_warp_settings(settings)["tilt_series_pixel_size"] == 2.5  # 1.25 * 2**1
    with caplog.at_level("INFO"):
        got = resolve_tomogram_name(tmp_path / "lam1_ts_003_10.00Apx.mrc",
                                    warp_settings=settings)
    assert got == "lam1_ts_003" and "--coords-angpix 2.5" in caplog.text
    with pytest.raises(InputError, match="lam1_ts_003"):
        resolve_tomogram_name(tmp_path / "other.mrc", warp_settings=settings)
    (tmp_path / "bad.settings").write_text("<Settings><Import>")
    with pytest.raises(InputError, match="Warp settings"):
        resolve_tomogram_name(tmp_path / "x.mrc", warp_settings=tmp_path / "bad.settings")
