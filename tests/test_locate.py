import numpy as np
import pandas as pd
import pytest
import torch
from locate_nets import PlantedNet, RandomGapNet
from torch import nn

from tomoclass.errors import InputError
from tomoclass.locate import (
    ScoreMaps,
    find_peaks,
    model_geometry,
    receptive_field_radius,
    score_tomogram,
)

CLASSES = ["background", "bright", "dark"]
PLANTED = [  # class, (z, y, x) in voxels, Gaussian sigma, sign
    ("bright", (12.3, 10.0, 15.6), 1.5, 1.0),
    ("bright", (28.0, 30.0, 33.0), 1.5, 1.0),
    ("dark", (20.0, 36.0, 12.0), 2.0, -1.0),
    ("dark", (10.0, 30.0, 38.5), 2.0, -1.0),
]


def _planted_tomogram(shape=(40, 48, 48), seed=0, scale=1):
    """PLANTED in noise; ``scale`` voxels per PLANTED voxel (a finer voxel size)."""
    shape = tuple(int(n * scale) for n in shape)
    rng = np.random.default_rng(seed)
    tomo = rng.normal(0.0, 0.1, shape).astype(np.float32)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    for _, centre, sigma, sign in PLANTED:
        z, y, x = (scale * c for c in centre)
        r2 = (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2
        tomo += (sign * np.exp(-r2 / (2 * (scale * sigma) ** 2))).astype(np.float32)
    return tomo


def assert_planted_found(picks: pd.DataFrame) -> None:
    """One pick per PLANTED particle, within 2 voxels and of its class, and no other."""
    assert len(picks) == len(PLANTED)  # no false pick above threshold
    xyz = picks[["z", "y", "x"]].to_numpy()
    for name, centre, _, _ in PLANTED:
        d = np.linalg.norm(xyz - np.array(centre), axis=1)
        i = int(d.argmin())
        assert d[i] <= 2.0
        assert picks.iloc[i]["class_name"] == name


@pytest.mark.parametrize("method", ["boxes", "tiles"])
def test_planted_particles_are_found_within_two_voxels_and_nothing_else(method):
    maps = score_tomogram(
        PlantedNet(),
        _planted_tomogram(),
        box=8,
        class_names=CLASSES,
        tile=16,
        normalize="none",
        progress=False,
        method=method,
    )
    picks = find_peaks(maps, {"bright": 3.0, "dark": 4.0}, threshold=0.5, tomogram_name="t")
    assert_planted_found(picks)
    assert (picks["tomogram"] == "t").all()
    assert picks["score"].is_monotonic_decreasing


@pytest.mark.parametrize("method", ["stages", "tiles"])
@pytest.mark.parametrize("normalize", ["local", "global"])
def test_tile_seams_do_not_change_scores(normalize, method):
    # Long along x, so tiles of 16 voxels with a 20-voxel halo really cut it.
    tomo = np.random.default_rng(1).normal(size=(12, 12, 100)).astype(np.float32)
    net = RandomGapNet()
    kw = dict(box=16, class_names=CLASSES, normalize=normalize, progress=False, method=method)
    whole = score_tomogram(net, tomo, tile=1000, **kw).probabilities
    tiled = score_tomogram(net, tomo, tile=16, **kw).probabilities
    assert tiled.shape == whole.shape == (3, 4, 4, 26)
    assert np.abs(tiled - whole).max() <= 1e-4
    if method == "tiles":  # without a halo the seams do show: the test can see them
        seamy = score_tomogram(net, tomo, tile=16, halo=0, **kw).probabilities
        assert np.abs(seamy - whole).max() > 1e-3


def test_stagewise_and_tilewise_scoring_agree():
    tomo = np.random.default_rng(5).normal(size=(20, 30, 40)).astype(np.float32)
    net = RandomGapNet(seed=3)
    kw = dict(box=16, class_names=CLASSES, progress=False, tile=16)
    stages = score_tomogram(net, tomo, method="stages", **kw).probabilities
    tiles = score_tomogram(net, tomo, method="tiles", **kw).probabilities
    assert np.abs(stages - tiles).max() <= 1e-4
    with pytest.raises(InputError, match="method"):
        score_tomogram(PlantedNet(), tomo, box=8, class_names=CLASSES, method="stages")


def test_receptive_field_bound_covers_the_input_gradient():
    net = RandomGapNet()
    radius = receptive_field_radius(net)
    assert radius == 1 + 2 * 2 + 3 * 4  # 3x3x3 convs at strides 1, 2 and 4, dilations 1, 2, 3
    x = torch.randn(1, 1, 64, 64, 64, requires_grad=True)
    f = net.forward_features(x)
    c = f.shape[2] // 2
    f[0, :, c, c, c].sum().backward()
    support = np.flatnonzero(x.grad[0, 0].abs().sum(dim=(1, 2)).numpy())
    cell = np.arange(4 * c, 4 * c + 4)
    assert cell.min() - support.min() <= radius
    assert support.max() - cell.max() <= radius
    assert model_geometry(net, 16).halo == (20, 20, 20)


def test_score_is_the_gap_classifier_over_the_box_footprint():
    # The exact identity: softmax(linear(mean of the tomogram's feature map over the box's
    # footprint)), with the tomogram padded by box // 2 zeros; grid point j is voxel 4 j.
    net, box, s = RandomGapNet(), 16, 4
    tomo = np.random.default_rng(3).normal(size=(13, 18, 30)).astype(np.float32)
    maps = score_tomogram(
        net, tomo, box=box, class_names=CLASSES, tile=8, normalize="none", progress=False,
        method="auto",
    )
    grid = maps.probabilities.shape[1:]
    hi = [s * (g - 1) + box - n - box // 2 for g, n in zip(grid, tomo.shape, strict=True)]
    padded = np.pad(tomo, [(box // 2, h) for h in hi])
    with torch.no_grad():
        feats = net.forward_features(torch.from_numpy(padded)[None, None])
        for j in [(0, 0, 0), (1, 2, 3), (3, 4, 7), tuple(g - 1 for g in grid)]:
            window = feats[(0, slice(None), *(slice(v, v + box // s) for v in j))]
            expect = torch.softmax(net.forward_head(window[None]), dim=1)[0].numpy()
            np.testing.assert_allclose(maps.probabilities[(slice(None), *j)], expect, atol=1e-5)


@pytest.mark.parametrize(
    ("net", "box", "content"),
    [
        (PlantedNet(bias=False), 16, 4),
        (RandomGapNet(bias=False), 48, 8),
    ],
)
def test_score_equals_the_classifier_on_the_box_centred_there(net, box, content):
    # Equal to the isolated box's classifier output when nothing distinguishes the box's
    # zero padding from the tomogram around it: a bias-free net (zeros in, zeros out) and
    # box content at least a receptive-field radius inside the box (see scoring docstring).
    geom = model_geometry(net, box)
    assert (box - content) // 2 >= geom.halo[0]
    rng = np.random.default_rng(2)
    tomo = np.zeros((56, 60, 64), np.float32)
    centre = (24, 28, 36)  # on the stride grid
    inner = tuple(slice(v - content // 2, v + content // 2) for v in centre)
    tomo[inner] = rng.normal(size=(content,) * 3)
    cut = tomo[tuple(slice(v - box // 2, v - box // 2 + box) for v in centre)]
    maps = score_tomogram(
        net, tomo, box=box, class_names=CLASSES, tile=32, normalize="none", progress=False,
        method="auto",
    )
    with torch.no_grad():
        logits = net.forward_head(net.forward_features(torch.from_numpy(cut.copy())[None, None]))
        expect = torch.softmax(logits, dim=1)[0].numpy()
    got = maps.probabilities[(slice(None), *(v // geom.stride[0] for v in centre))]
    np.testing.assert_allclose(got, expect, atol=1e-5)


def _maps(objectness_peaks, shape=(20, 20, 20), stride=2):
    """Score maps with Gaussian objectness bumps: (grid zyx, height, class index 1 or 2)."""
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    obj = np.zeros(shape)
    cls = np.ones(shape, int)
    for (z, y, x), h, k in objectness_peaks:
        bump = h * np.exp(-((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2) / 2.0)
        cls[bump > obj] = k
        obj = np.maximum(obj, bump)
    probs = np.zeros((3, *shape), np.float32)
    probs[0] = 1 - obj
    probs[1] = np.where(cls == 1, 0.8 * obj, 0.2 * obj)
    probs[2] = np.where(cls == 2, 0.8 * obj, 0.2 * obj)
    return ScoreMaps(
        probs, tuple(CLASSES), (stride,) * 3, tuple(stride * (n - 1) + 1 for n in shape)
    )


def test_nms_uses_per_class_radii():
    # Two bright bumps 3 grid cells = 6 voxels apart, two dark ones also 6 voxels apart.
    maps = _maps(
        [((5, 5, 5), 0.9, 1), ((5, 5, 8), 0.8, 1), ((14, 14, 5), 0.9, 2), ((14, 14, 8), 0.8, 2)]
    )
    picks = find_peaks(maps, {"bright": 4.0, "dark": 7.0}, threshold=0.5)
    # bright radius 4 < 6: both kept; dark radius 7 > 6: the weaker one is suppressed
    assert sorted(picks["class_name"]) == ["bright", "bright", "dark"]
    dark = picks[picks["class_name"] == "dark"].iloc[0]
    assert (dark.z, dark.y) == pytest.approx((28.0, 28.0), abs=0.5)
    assert dark.x < 13.0  # the stronger bump at x = 10 survives
    assert find_peaks(maps, 1.0, threshold=0.95).empty


def test_separation_scales_the_suppression_distance():
    # the same bumps: 6 voxels apart, radii 4 (bright) and 7 (dark)
    maps = _maps(
        [((5, 5, 5), 0.9, 1), ((5, 5, 8), 0.8, 1), ((14, 14, 5), 0.9, 2), ((14, 14, 8), 0.8, 2)]
    )
    radii = {"bright": 4.0, "dark": 7.0}
    # 1.25 * 4 = 5 < 6 still keeps both bright picks; 1.5 * 4 = 6 is not below 6 either
    assert sorted(find_peaks(maps, radii, separation=1.25)["class_name"]) == [
        "bright", "bright", "dark"]
    # 1.6 * 4 = 6.4 > 6: the weaker bright bump is now a second maximum of the first
    assert sorted(find_peaks(maps, radii, separation=1.6)["class_name"]) == ["bright", "dark"]
    # 0.8 * 7 = 5.6 < 6: both dark bumps are kept as touching particles
    assert sorted(find_peaks(maps, radii, separation=0.8)["class_name"]) == [
        "bright", "bright", "dark", "dark"]
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="separation"):
            find_peaks(maps, radii, separation=bad)


def test_peak_position_is_refined_between_grid_points():
    maps = _maps([((6, 7, 8), 0.9, 1), ((6, 7, 9), 0.9, 1)])  # plateau between two cells
    picks = find_peaks(maps, 5.0, threshold=0.3)
    assert len(picks) == 1
    assert picks.iloc[0][["z", "y", "x"]].tolist() == pytest.approx([12, 14, 17], abs=0.1)


def test_to_voxels_matches_the_grid():
    maps = _maps([((5, 5, 5), 0.9, 1)], shape=(8, 9, 10), stride=3)
    full = maps.to_voxels(0)
    assert full.shape == maps.shape
    np.testing.assert_allclose(full[::3, ::3, ::3], maps.probabilities[0], atol=1e-6)


def test_bad_inputs():
    maps = _maps([((5, 5, 5), 0.9, 1)])
    no_bg = ScoreMaps(maps.probabilities, ("a", "b", "c"), maps.stride, maps.shape)
    with pytest.raises(InputError, match="no 'background' class"):
        find_peaks(no_bg, 3.0)
    with pytest.raises(InputError, match="no particle radius"):
        find_peaks(maps, {"bright": 3.0})
    with pytest.raises(InputError, match="threshold"):
        find_peaks(maps, 3.0, threshold=1.5)
    tomo = np.zeros((16, 16, 16), np.float32)

    class NoGap(nn.Module):
        has_gap_head = False

    with pytest.raises(InputError, match="global-average-pooling"):
        score_tomogram(NoGap(), tomo, box=8, class_names=CLASSES, method="tiles")
    with pytest.raises(InputError, match="unknown method"):
        score_tomogram(PlantedNet(), tomo, box=8, class_names=CLASSES, method="sliding")
    with pytest.raises(InputError, match="stride"):
        score_tomogram(PlantedNet(), tomo, box=8, class_names=CLASSES, stride=0)
    with pytest.raises(InputError, match="3 outputs but 2"):
        score_tomogram(PlantedNet(), tomo, box=8, class_names=CLASSES[:2])
    with pytest.raises(InputError, match="does not divide"):
        score_tomogram(RandomGapNet(), tomo, box=10, class_names=CLASSES, method="tiles")
    assert isinstance(find_peaks(maps, 3.0), pd.DataFrame)


@pytest.mark.slow
def test_tile_seams_with_the_dilated_densenet():
    # The paper's net (narrow, random weights sharpened so probabilities move): stage-wise
    # scoring in 32-voxel tiles against one whole pass of the trunk (a single tile).
    from tomoclass.models import get_model

    torch.manual_seed(0)
    net = get_model("dilated_densenet3d", num_classes=3, growth_rate=2, bottleneck_width=2).eval()
    with torch.no_grad():
        net.get_classifier().weight.mul_(50.0)
    tomo = np.random.default_rng(4).normal(size=(4, 4, 96)).astype(np.float32)
    kw = dict(box=32, class_names=CLASSES, normalize="local", progress=False)
    whole = score_tomogram(net, tomo, tile=1000, method="tiles", **kw).probabilities
    staged = score_tomogram(net, tomo, tile=32, method="stages", **kw).probabilities
    assert np.abs(staged - whole).max() <= 1e-4
    assert np.ptp(whole) > 0.05  # the maps are not flat, so a seam would show


@pytest.mark.parametrize("normalize", ["local", "none"])
def test_box_scores_are_the_classifier_on_the_boxes_the_data_stage_cuts(normalize):
    # method="boxes" is exact: at every grid point, the softmax of the trained net on the box
    # that extract_subtomograms cuts there (border boxes padded with their in-bounds mean,
    # then z-scored per box), whatever the batch size.
    from train_support import TINY_KWARGS

    from tomoclass.data import extract_subtomograms
    from tomoclass.models import get_model

    torch.manual_seed(4)
    net = get_model("dilated_densenet3d", num_classes=3, **TINY_KWARGS)
    net.train()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for _ in range(3):
            net(torch.randn(8, 1, 12, 12, 12) * 2 + 1)
    net.eval()
    rng = np.random.default_rng(6)
    tomo = (5.0 + 2.0 * rng.normal(size=(14, 19, 23))).astype(np.float32)
    kw = dict(box=12, class_names=CLASSES, normalize=normalize, progress=False, stride=3,
              device="cpu")
    maps = score_tomogram(net, tomo, batch_size=7, **kw)
    assert maps.stride == (3, 3, 3) and maps.probabilities.shape == (3, 6, 7, 9)
    again = score_tomogram(net, tomo, batch_size=64, **kw)
    np.testing.assert_allclose(again.probabilities, maps.probabilities, atol=1e-6)
    points = [(0, 0, 0), (1, 2, 3), (2, 3, 4), (4, 6, 7), (3, 0, 7)]  # corners, border, inside
    table = pd.DataFrame({"tomogram": "t", "z": [3.0 * p[0] for p in points],
                          "y": [3.0 * p[1] for p in points], "x": [3.0 * p[2] for p in points],
                          "class_name": "a", "rot": np.nan, "tilt": np.nan, "psi": np.nan,
                          "score": np.nan, "is_protein": True})
    ext = extract_subtomograms(tomo, table, 12, border="pad",
                               normalize="zscore" if normalize == "local" else "none")
    assert len(ext.subtomograms) == len(points) and ext.n_padded >= 3
    with torch.no_grad():
        expect = torch.softmax(net(torch.from_numpy(ext.subtomograms)[:, None]), 1).numpy()
    got = np.stack([maps.probabilities[(slice(None), *p)] for p in points])
    np.testing.assert_allclose(got, expect, atol=2e-5)
