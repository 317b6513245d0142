import json

import mrcfile
import numpy as np
import pandas as pd
import pytest
from locate_nets import PlantedNet
from test_locate import PLANTED, _planted_tomogram, assert_planted_found

from tomoclass.cli.main import main
from tomoclass.io import read_particles, write_particles, write_volume
from tomoclass.io.outputs import MARKER
from tomoclass.models import registry
from tomoclass.train.checkpoint import FORMAT, FORMAT_VERSION, save_checkpoint


def _planted(num_classes, **kw):
    assert num_classes == 3
    return PlantedNet(**kw)


@pytest.fixture
def planted_run(tmp_path, monkeypatch):
    """A run directory holding the planted net, as the training stage writes one."""
    monkeypatch.setitem(registry._REGISTRY, "planted_test", _planted)
    # the planted net knows particles of both contrasts: nothing to invert
    return _save_planted_run(tmp_path / "run", "mixed")


def _save_planted_run(run, polarity, **data):
    net = PlantedNet()
    save_checkpoint(
        run / "checkpoints" / "best.pt",
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_name": "planted_test",
            "model_kwargs": {},
            "class_names": ["background", "bright", "dark"],
            "size_groups": ["", "small", "medium"],
            "model_state": {k: v.clone() for k, v in net.state_dict().items()},
            "epoch": 1,
            "box": 8,
            "voxel_size_angstrom": 10.0,
            "data": {"normalization": "none", "polarity": polarity, **data},
        },
    )
    return run


def test_locate_then_score_picks_end_to_end(planted_run, tmp_path, capsys):
    tomo = tmp_path / "planted.mrc"
    write_volume(tomo, _planted_tomogram(), 10.0)
    truth = pd.DataFrame(
        [{"class_name": c, "z": z, "y": y, "x": x} for c, (z, y, x), _, _ in PLANTED]
    ).assign(tomogram="planted")
    write_particles(tmp_path / "planted_gt.txt", truth)

    out = tmp_path / "picks.star"
    code = main(
        [
            "locate",
            "--run",
            str(planted_run),
            "--tomogram",
            str(tomo),
            "--out",
            str(out),
            "--method",
            "boxes",
            "--score-maps",
            str(tmp_path / "maps"),
            "--radius",
            "bright=3",
            "--radius",
            "dark=4",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert "4 picks" in capsys.readouterr().out
    picks = read_particles(out)
    assert len(picks) == 4 and set(picks["class_name"]) == {"bright", "dark"}
    assert len(read_particles(tmp_path / "picks.csv")) == 4
    assert len(read_particles(tmp_path / "picks.txt")) == 4
    with mrcfile.open(tmp_path / "maps" / "objectness.mrc", permissive=True) as m:
        assert m.data.shape == (40, 48, 48)
        assert float(m.voxel_size.x) == pytest.approx(10.0)
        zyx = np.rint(np.array(PLANTED[0][1])).astype(int)
        assert m.data[tuple(zyx)] > 0.5
    assert sorted(p.name for p in (tmp_path / "maps").iterdir() if p.name != MARKER) == [
        "background.mrc",
        "bright.mrc",
        "dark.mrc",
        "objectness.mrc",
    ]

    report = tmp_path / "score.json"
    code = main(
        [
            "score-picks",
            "--truth",
            str(tmp_path / "planted_gt.txt"),
            "--picks",
            str(out),
            "--radius",
            "2",
            "--json",
            str(report),
        ]
    )
    assert code == 0
    assert "F1 1.000" in capsys.readouterr().out
    scores = json.loads(report.read_text())
    assert (scores["tp"], scores["fp"], scores["fn"]) == (4, 0, 0)
    assert scores["per_class"]["bright"]["cls_f1"] == 1.0


def test_locate_refuses_a_wrong_voxel_size(planted_run, tmp_path, capsys):
    tomo = tmp_path / "t.mrc"
    write_volume(tomo, np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32), 13.0)
    code = main(
        [
            "locate",
            "--run",
            str(planted_run),
            "--tomogram",
            str(tomo),
            "--out",
            str(tmp_path / "p.star"),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "voxel size 13" in capsys.readouterr().err
    assert not (tmp_path / "p.star").exists()


@pytest.mark.parametrize("method", ["candidates", "boxes"])
def test_locate_rescales_a_finer_tomogram_to_the_training_voxel_size(
        planted_run, tmp_path, capsys, method):
    """The planted tomogram at 5 Å (the run is at 10 Å): --rescale finds every particle,
    in the tomogram's own voxels; without it the voxel size is a one-line error."""
    tomo = tmp_path / "fine.mrc"
    write_volume(tomo, _planted_tomogram(scale=2), 5.0)
    out = tmp_path / "picks.csv"
    args = ["locate", "--run", str(planted_run), "--tomogram", str(tomo), "--out", str(out),
            "--radius", "bright=6", "--radius", "dark=8", "--method", method,
            "--no-progress", "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rescale" in err[0] and "fine.mrc" in err[0]
    assert not out.exists()
    assert main(args + ["--rescale"]) == 0
    assert "resampled by 2" in capsys.readouterr().out
    picks = read_particles(out)
    half = picks.assign(**{c: picks[c] / 2 for c in ("x", "y", "z")})
    assert_planted_found(half)  # within 2 voxels of 10 Å = 4 of the tomogram's


def test_score_picks_cli_rejects_a_bad_radius(tmp_path, capsys):
    write_particles(tmp_path / "t.csv", pd.DataFrame({"x": [1.0], "y": [1.0], "z": [1.0]}))
    code = main(
        [
            "score-picks",
            "--truth",
            str(tmp_path / "t.csv"),
            "--picks",
            str(tmp_path / "t.csv"),
            "--radius",
            "big",
        ]
    )
    assert code == 2
    assert "radius" in capsys.readouterr().err


def test_locate_takes_radii_from_a_shrec21_sizes_file(planted_run, tmp_path, capsys):
    # radius(nm) at the tomogram's 10 Å voxels: bright 3 nm -> 3 voxels, dark 4 voxels:
    # the same picks as with --radius bright=3 --radius dark=4
    tomo = tmp_path / "planted.mrc"
    write_volume(tomo, _planted_tomogram(), 10.0)
    sizes = tmp_path / "sizes.txt"
    sizes.write_text("id box(px) radius(nm) maskradius(px)\nbright 8 3.0 3\ndark 8 4.0 4\n")
    outs = {}
    for name, extra in (("sizes", ["--sizes", str(sizes)]),
                        ("radius", ["--radius", "bright=3", "--radius", "dark=4"])):
        outs[name] = tmp_path / f"picks_{name}.csv"  # picks_sizes.txt: not the input
        assert main(["locate", "--run", str(planted_run), "--tomogram", str(tomo), "--out",
                     str(outs[name]), "--no-progress", "--device", "cpu", *extra]) == 0
    a, b = (read_particles(outs[k]) for k in ("sizes", "radius"))
    assert len(a) == len(b) == len(PLANTED)
    np.testing.assert_allclose(a[["x", "y", "z"]].to_numpy(), b[["x", "y", "z"]].to_numpy())


def test_locate_by_candidates_finds_the_planted_particles(planted_run, tmp_path, capsys):
    tomo = tmp_path / "planted.mrc"
    write_volume(tomo, _planted_tomogram(), 10.0)
    out = tmp_path / "picks.csv"
    args = ["locate", "--run", str(planted_run), "--tomogram", str(tomo), "--out", str(out),
            "--radius", "bright=3", "--radius", "dark=4",  # --method candidates: the default
            "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "4 picks among" in text and "candidates" in text
    assert_planted_found(read_particles(out))
    # dark-only proposals miss the bright particles, whatever the classifier says
    assert main(args[:-3] + ["--polarity", "dark", "--out", str(tmp_path / "dark.csv"),
                             "--no-progress", "--device", "cpu"]) == 0
    assert set(read_particles(tmp_path / "dark.csv")["class_name"]) == {"dark"}


def test_locate_by_candidates_refuses_score_maps(planted_run, tmp_path, capsys):
    tomo = tmp_path / "planted.mrc"
    write_volume(tomo, _planted_tomogram(), 10.0)
    code = main(["locate", "--run", str(planted_run), "--tomogram", str(tomo), "--out",
                 str(tmp_path / "p.star"), "--method", "candidates", "--score-maps",
                 str(tmp_path / "maps"), "--radius", "3", "--no-progress"])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "score maps" in err[0]
    assert not (tmp_path / "p.star").exists() and not (tmp_path / "maps").exists()


def test_locate_refuses_a_separation_that_is_not_positive(planted_run, tmp_path, capsys):
    tomo = tmp_path / "planted.mrc"
    write_volume(tomo, _planted_tomogram(), 10.0)
    code = main(["locate", "--run", str(planted_run), "--tomogram", str(tomo), "--out",
                 str(tmp_path / "p.star"), "--separation", "0", "--radius", "3",
                 "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "separation" in err[0]
    assert not (tmp_path / "p.star").exists()


def _balls(sign, shape=(40, 72, 72), noise=0.1, seed=0):
    """18 balls of radius 3 and contrast ``sign`` on a grid, in noise; their centres."""
    rng = np.random.default_rng(seed)
    tomo = rng.normal(0.0, noise, shape).astype(np.float32)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    centres = [(z, y, x) for z in (12, 28) for y in (12, 36, 60) for x in (12, 36, 60)]
    for z, y, x in centres:
        tomo[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= 9] += sign
    return tomo, np.array(centres, float)


@pytest.mark.parametrize("sign,kept", [(-1.0, "dark"), (1.0, "bright")])
def test_auto_polarity_keeps_the_sign_the_classifier_finds_particles_in(
        planted_run, tmp_path, sign, kept):
    # balls of one contrast only: the planted net calls them particles and the blobs of the
    # other sign background, so auto drops the other sign's candidates
    from tomoclass.workflows.locate import locate

    tomo, centres = _balls(sign)
    path = tmp_path / "balls.mrc"
    write_volume(path, tomo, 10.0)
    radii = {"bright": 3.0, "dark": 3.0}
    auto = locate(planted_run, path, tmp_path / "auto.csv", radii=radii, device="cpu",
                  progress=False)
    both = locate(planted_run, path, tmp_path / "both.csv", radii=radii, polarity="both",
                  device="cpu", progress=False)
    assert auto.candidates.polarity == kept and both.candidates.polarity == "both"
    assert len(auto.candidates) < len(both.candidates)
    assert (auto.candidates.dark == (kept == "dark")).all()
    for centre in centres:  # every ball is still picked, once, with its class
        d = np.linalg.norm(auto.picks[["z", "y", "x"]].to_numpy() - centre, axis=1)
        assert d.min() <= 2.0
    assert len(auto.picks) == len(centres) and set(auto.picks["class_name"]) == {kept}
    # the picks are those polarity="both" makes among the kept sign's candidates
    pd.testing.assert_frame_equal(auto.picks.reset_index(drop=True),
                                  both.picks[both.picks["class_name"] == kept]
                                  .reset_index(drop=True))


def test_a_tomogram_of_the_other_contrast_is_inverted_before_locating(planted_run, tmp_path,
                                                                      capsys):
    # the same net, recorded as trained on dark particles: bright balls are measured bright,
    # the tomogram inverted as it is read, and every ball found as a dark particle
    from tomoclass.workflows.locate import locate

    dark_run = _save_planted_run(tmp_path / "dark_run", "dark")
    tomo, centres = _balls(1.0)
    path = tmp_path / "balls.mrc"
    write_volume(path, tomo, 10.0)
    radii = {"bright": 3.0, "dark": 3.0}
    auto = locate(dark_run, path, tmp_path / "auto.csv", radii=radii, device="cpu",
                  progress=False)
    assert auto.inverted and auto.polarity.polarity == "bright"
    assert len(auto.picks) == len(centres) and set(auto.picks["class_name"]) == {"dark"}
    for centre in centres:
        assert np.linalg.norm(auto.picks[["z", "y", "x"]].to_numpy() - centre, axis=1).min() <= 2
    told = locate(dark_run, path, tmp_path / "told.csv", radii=radii, polarity="bright",
                  device="cpu", progress=False)
    assert told.inverted and told.polarity is None and told.candidates.polarity == "dark"
    pd.testing.assert_frame_equal(told.picks, auto.picks)
    # "both" takes the tomogram as given: the balls are what the net calls bright
    both = locate(dark_run, path, tmp_path / "both.csv", radii=radii, polarity="both",
                  device="cpu", progress=False)
    assert not both.inverted and set(both.picks["class_name"]) == {"bright"}
    # the dense method inverts the same way
    dense = locate(dark_run, path, tmp_path / "dense.csv", radii=radii, method="boxes",
                   device="cpu", progress=False)
    assert dense.inverted and set(dense.picks["class_name"]) == {"dark"}
    assert main(["locate", "--run", str(dark_run), "--tomogram", str(path), "--out",
                 str(tmp_path / "cli.csv"), "--radius", "3", "--no-progress", "--device",
                 "cpu"]) == 0
    assert "contrast inverted" in capsys.readouterr().out


def test_auto_polarity_keeps_both_when_both_hold_particles(planted_run, tmp_path):
    from tomoclass.workflows.locate import locate

    path = tmp_path / "planted.mrc"
    write_volume(path, _planted_tomogram(), 10.0)
    res = locate(planted_run, path, tmp_path / "p.csv", radii={"bright": 3.0, "dark": 4.0},
                 device="cpu", progress=False)
    assert res.candidates.polarity == "both" and len(res.picks) == len(PLANTED)


def test_locate_several_tomograms_into_one_table(planted_run, tmp_path, capsys):
    """One call, two tomograms: a table each and one with both, rlnTomoName per row."""
    tomos = []
    for name, seed in (("TS_01", 0), ("TS_02", 1)):
        tomos.append(str(write_volume(tmp_path / f"{name}.mrc", _planted_tomogram(seed=seed),
                                      10.0)))
    out = tmp_path / "picks"
    base = ["locate", "--run", str(planted_run), "--radius", "bright=3", "--radius", "dark=4",
            "--no-progress", "--device", "cpu"]
    assert main(base + ["--tomogram", *tomos, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{2 * len(PLANTED)} picks in 2 tomograms" in text
    for name in ("TS_01", "TS_02"):
        one = read_particles(out / f"{name}_picks.star")
        assert_planted_found(one)
        assert set(one["tomogram"]) == {name}
        assert (out / f"{name}_picks.txt").is_file()
    both = read_particles(out / "picks.star")
    assert len(both) == 2 * len(PLANTED) and set(both["tomogram"]) == {"TS_01", "TS_02"}
    import starfile

    assert set(starfile.read(out / "picks.star")["rlnTomoName"]) == {"TS_01", "TS_02"}
    # RELION 5 centred coordinates beside the voxels, from each tomogram's size and voxel size
    shape = _planted_tomogram().shape
    centred = read_particles(out / "picks.star", voxel_size_angstrom=10.0,
                             tomogram_shape={"TS_01": shape, "TS_02": shape})
    np.testing.assert_allclose(centred[["x", "y", "z"]], both[["x", "y", "z"]], atol=1e-3)
    raw = starfile.read(out / "TS_01_picks.star")
    np.testing.assert_allclose(raw["rlnCenteredCoordinateZAngst"],
                               (raw["rlnCoordinateZ"] - shape[0] / 2) * 10.0, atol=1e-3)
    assert len(read_particles(out / "picks.csv")) == 2 * len(PLANTED)
    # a table name for --out, a missing tomogram, a repeated name: one-line errors, nothing new
    for bad_args, words in (
            (["--tomogram", *tomos, "--out", str(tmp_path / "x.star")], "folder"),
            (["--tomogram", tomos[0], str(tmp_path / "nope.mrc"), "--out",
              str(tmp_path / "o2")], "nope.mrc"),
            (["--tomogram", tomos[0], tomos[0], "--out", str(tmp_path / "o3")], "TS_01")):
        assert main(base + bad_args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "x.star").exists()
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_locate_shrec_folders_of_reconstruction_mrc(planted_run, tmp_path, capsys):
    # model_0/reconstruction.mrc, model_1/reconstruction.mrc: named by their folders
    tomos = []
    for k in range(2):
        (tmp_path / f"model_{k}").mkdir()
        tomos.append(str(write_volume(tmp_path / f"model_{k}" / "reconstruction.mrc",
                                      _planted_tomogram(seed=k), 10.0)))
    out = tmp_path / "picks"
    assert main(["locate", "--run", str(planted_run), "--radius", "bright=3", "--radius",
                 "dark=4", "--no-progress", "--device", "cpu", "--tomogram", *tomos, "--out",
                 str(out)]) == 0
    both = read_particles(out / "picks.star")
    assert set(both["tomogram"]) == {"model_0", "model_1"}
    assert (out / "model_0_picks.star").is_file() and (out / "model_1_picks.txt").is_file()


def test_spectrum_matching_in_locate(planted_run, tmp_path):
    # a run that records a training spectrum (here: boxes at the planted particles) gets
    # the gain measured at the candidates; a run of boxes that were not z-scored cannot be
    # matched, nor a dense method
    from tomoclass.data.spectrum import spectrum_at
    from tomoclass.errors import InputError
    from tomoclass.workflows.locate import locate

    tomo = _planted_tomogram()
    path = write_volume(tmp_path / "planted.mrc", tomo, 10.0)
    centres = np.array([c for _, c, _, _ in PLANTED])
    own = spectrum_at(tomo, centres, 8, 10.0).to_dict()
    run = _save_planted_run(tmp_path / "zrun", "mixed", normalization="zscore", spectrum=own)
    radii = {"bright": 3.0, "dark": 4.0}
    on = locate(run, path, tmp_path / "on.csv", radii=radii, device="cpu", progress=False,
                match_spectrum="on")
    gain = np.array(on.spectrum_gain)
    assert len(gain) == 5 and gain[0] == 1.0 and np.all((gain >= 0.1) & (gain <= 10))
    auto = locate(run, path, tmp_path / "auto.csv", radii=radii, device="cpu", progress=False)
    assert auto.spectrum_gain is None  # same voxel size: auto leaves it off
    with pytest.raises(InputError, match="z-scored"):
        locate(planted_run, path, tmp_path / "x.csv", radii=radii, device="cpu",
               progress=False, match_spectrum="on")
    with pytest.raises(InputError, match="candidates"):
        locate(run, path, tmp_path / "y.csv", radii=radii, device="cpu", progress=False,
               match_spectrum="on", method="boxes")
