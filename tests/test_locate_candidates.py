"""locate by candidates: blob proposals (difference of Gaussians), box classification, picks."""

import numpy as np
import pandas as pd
import pytest
import torch
from locate_nets import PlantedNet
from test_locate import CLASSES, _planted_tomogram, assert_planted_found

from tomoclass.errors import InputError
from tomoclass.locate import (
    candidate_scales,
    classify_boxes,
    picks_from_boxes,
    propose_candidates,
)
from tomoclass.locate import candidates as C

RADII = {"bright": 3.0, "dark": 4.0}


def _spheres(shape=(36, 44, 52), seed=0, sign=-1.0, noise=0.3):
    """Noise plus solid balls of contrast ``sign`` (radii 3 and 6), their centres."""
    rng = np.random.default_rng(seed)
    tomo = rng.normal(0.0, noise, shape).astype(np.float32)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    centres = [((9, 10, 12), 3.0), ((25, 30, 38), 6.0), ((10, 33, 40), 3.0), ((26, 12, 14), 6.0)]
    for (z, y, x), r in centres:
        tomo[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= r * r] += sign
    return tomo, np.array([c for c, _ in centres], float), [r for _, r in centres]


def test_scales_span_half_the_radii_a_factor_sqrt2_apart():
    assert candidate_scales([5.0]) == (2.5,)
    assert candidate_scales([5.0, 5.0]) == (2.5,)
    s = np.array(candidate_scales([4.2, 15.5, 9.0]))
    assert s[0] == pytest.approx(2.1)
    np.testing.assert_allclose(s[1:] / s[:-1], np.sqrt(2.0))
    assert s[-2] < 0.5 * 15.5 <= s[-1]  # the last scale is the first to reach r_max / 2
    with pytest.raises(InputError, match="positive"):
        candidate_scales([3.0, 0.0])


@pytest.mark.parametrize("polarity,sign", [("dark", -1.0), ("bright", 1.0), ("both", -1.0),
                                           ("both", 1.0)])
def test_planted_balls_are_proposed_within_a_voxel(polarity, sign):
    tomo, centres, radii = _spheres(sign=sign)
    c = propose_candidates(tomo, sorted(set(radii)), polarity=polarity, progress=False)
    assert len(c) >= len(centres)
    assert np.all(np.diff(c.response) <= 0)  # strongest first
    for centre in centres:
        d = np.linalg.norm(c.zyx - centre, axis=1)
        assert d.min() <= 1.0
    # the balls are the strongest blobs: each of them is among the first len(centres)
    top = c.zyx[: len(centres)]
    assert all(np.linalg.norm(top - centre, axis=1).min() <= 1.0 for centre in centres)
    # and each was found at a scale near its own (sigma ~ r / 2)
    for centre, r in zip(centres, radii, strict=True):
        i = int(np.linalg.norm(c.zyx - centre, axis=1).argmin())
        assert 0.3 * r <= c.sigma[i] <= 0.8 * r


def test_polarity_selects_the_sign_of_the_contrast():
    tomo, centres, radii = _spheres(sign=-1.0)
    dark = propose_candidates(tomo, radii, polarity="dark", progress=False)
    bright_of_negated = propose_candidates(-tomo, radii, polarity="bright", progress=False)
    np.testing.assert_array_equal(dark.zyx, bright_of_negated.zyx)
    np.testing.assert_allclose(dark.response, bright_of_negated.response, rtol=1e-5)
    bright = propose_candidates(tomo, radii, polarity="bright", progress=False)
    for centre in centres:  # dark balls give no bright candidate at their centres
        assert np.linalg.norm(bright.zyx - centre, axis=1).min() > 1.0


@pytest.mark.parametrize("slab", [1, 5, 13])
def test_slabs_do_not_change_the_candidates(slab):
    tomo, _, radii = _spheres()
    whole = propose_candidates(tomo, radii, polarity="both", threshold=2.0, slab=10_000,
                               progress=False)
    cut = propose_candidates(tomo, radii, polarity="both", threshold=2.0, slab=slab,
                             progress=False)
    assert len(whole) > 10
    np.testing.assert_array_equal(cut.zyx, whole.zyx)
    np.testing.assert_allclose(cut.response, whole.response, rtol=1e-5)
    np.testing.assert_array_equal(cut.sigma, whole.sigma)
    np.testing.assert_allclose(cut.offset, whole.offset, atol=1e-5)


def test_subvoxel_centres_find_blobs_between_voxels():
    """Gaussian blobs at fractional positions: the parabola vertex of the response lands
    within 0.15 voxel of each centre, where the voxel maximum is up to 0.87 off."""
    rng = np.random.default_rng(1)
    shape = (40, 48, 56)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    centres = np.array([[10.3, 12.6, 14.45], [28.7, 30.2, 40.5], [12.5, 34.85, 41.1],
                        [27.2, 13.35, 15.6]])
    tomo = rng.normal(0.0, 0.02, shape).astype(np.float32)
    for z, y, x in centres:
        tomo -= np.exp(-((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2) / (2 * 2.5**2)
                       ).astype(np.float32)
    c = propose_candidates(tomo, [5.0], polarity="dark", progress=False)
    assert np.all(np.abs(c.offset) <= 0.5)
    np.testing.assert_allclose(c.centres, c.zyx + c.offset)
    for centre in centres:
        i = int(np.linalg.norm(c.zyx - centre, axis=1).argmin())
        assert np.abs(c.centres[i] - centre).max() <= 0.15
        assert np.abs(c.zyx[i] - centre).max() >= 0.3  # rounding alone is worse
    # a maximum on the tomogram's edge has no neighbour beyond it: no offset along that axis
    edge = np.zeros((20, 20, 20), np.float32)
    edge -= np.exp(-((zz[:20, :20, :20] - 0.0) ** 2 + (yy[:20, :20, :20] - 10.3) ** 2
                     + (xx[:20, :20, :20] - 9.8) ** 2) / (2 * 2.5**2)).astype(np.float32)
    e = propose_candidates(edge, [5.0], polarity="dark", threshold=0.5, progress=False)
    i = int(np.linalg.norm(e.zyx - [0, 10, 10], axis=1).argmin())
    assert e.zyx[i, 0] == 0 and e.offset[i, 0] == 0.0
    assert abs(e.centres[i, 1] - 10.3) <= 0.15 and abs(e.centres[i, 2] - 9.8) <= 0.15


def test_threshold_and_cap_keep_the_strongest():
    tomo, _, radii = _spheres()
    low = propose_candidates(tomo, radii, threshold=1.0, progress=False)
    high = propose_candidates(tomo, radii, threshold=4.0, progress=False)
    assert len(high) < len(low)
    assert np.all(low.response >= 1.0) and np.all(high.response >= 4.0)
    np.testing.assert_array_equal(low.zyx[: len(high)], high.zyx)
    capped = propose_candidates(tomo, radii, threshold=1.0, max_candidates=3, progress=False)
    np.testing.assert_array_equal(capped.zyx, low.zyx[:3])
    none = propose_candidates(tomo, radii, threshold=1e9, progress=False)
    assert len(none) == 0 and none.zyx.shape == (0, 3)


def test_torch_filters_match_scipy():
    # the CUDA path (torch) and the CPU path (scipy) compute the same filters
    rng = np.random.default_rng(1)
    region = rng.normal(size=(17, 23, 29)).astype(np.float32)
    cpu = torch.device("cpu")
    for sigma in (1.0, 2.5, 4.0):
        np.testing.assert_allclose(C._gaussian_torch(torch.from_numpy(region), sigma).numpy(),
                                   C._gaussian(region, sigma), atol=1e-5)
    np.testing.assert_array_equal(C._local_max_torch(region, 2, cpu),
                                  C._local_max(region, 2, cpu))


def test_bad_proposal_inputs():
    tomo, _, radii = _spheres()
    with pytest.raises(InputError, match="polarity"):
        propose_candidates(tomo, radii, polarity="grey")
    with pytest.raises(InputError, match="3-D"):
        propose_candidates(tomo[0], radii)
    with pytest.raises(InputError, match="max_candidates"):
        propose_candidates(tomo, radii, max_candidates=0)
    with pytest.raises(InputError, match="radii"):
        propose_candidates(tomo, [])


@pytest.mark.parametrize("normalize", ["local", "none"])
def test_classified_boxes_are_the_classifier_on_the_boxes_the_data_stage_cuts(normalize):
    # any centres, border and half-outside ones included, in any order and batch size
    from train_support import TINY_KWARGS

    from tomoclass.data import extract_subtomograms
    from tomoclass.models import get_model

    torch.manual_seed(4)
    net = get_model("dilated_densenet3d", num_classes=3, **TINY_KWARGS)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 1, 12, 12, 12) * 2 + 1)
    net.eval()
    rng = np.random.default_rng(6)
    tomo = (5.0 + 2.0 * rng.normal(size=(14, 19, 23))).astype(np.float32)
    centres = np.array([(0, 0, 0), (7, 9, 11), (13, 18, 22), (-5, 3, 25), (2, 20, 0),
                        (7, 9, 11)])
    probs = classify_boxes(net, tomo, centres, box=12, normalize=normalize, batch_size=4,
                           progress=False, device="cpu")
    assert probs.shape == (6, 3)
    np.testing.assert_allclose(probs[1], probs[5], atol=1e-6)
    inside = centres[:3]
    table = pd.DataFrame({"tomogram": "t", "z": inside[:, 0].astype(float),
                          "y": inside[:, 1].astype(float), "x": inside[:, 2].astype(float),
                          "class_name": "a", "rot": np.nan, "tilt": np.nan, "psi": np.nan,
                          "score": np.nan, "is_protein": True})
    ext = extract_subtomograms(tomo, table, 12, border="pad",
                               normalize="zscore" if normalize == "local" else "none")
    with torch.no_grad():
        expect = torch.softmax(net(torch.from_numpy(ext.subtomograms)[:, None]), 1).numpy()
    np.testing.assert_allclose(probs[:3], expect, atol=2e-5)
    # a centre outside the tomogram: the box is padded with its in-bounds voxels' mean
    c = np.array([-5, 3, 25])
    lo = c - 6
    box = np.full((12, 12, 12), np.nan, np.float32)
    a, b = np.maximum(lo, 0), np.minimum(lo + 12, tomo.shape)
    inner = tomo[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
    box[tuple(slice(p, p + n) for p, n in zip(a - lo, inner.shape, strict=True))] = inner
    box = np.where(np.isnan(box), inner.mean(dtype=np.float64), box).astype(np.float32)
    if normalize == "local":
        box = (box - box.mean()) / box.std()
    with torch.no_grad():
        want = torch.softmax(net(torch.from_numpy(box)[None, None]), 1).numpy()[0]
    np.testing.assert_allclose(probs[3], want, atol=2e-5)
    assert classify_boxes(net, tomo, np.empty((0, 3), int), box=12, device="cpu",
                          progress=False).shape == (0, 3)
    with pytest.raises(InputError, match="outside"):
        classify_boxes(net, tomo, np.array([[0, 0, -7]]), box=12, device="cpu")
    with pytest.raises(InputError, match="integer"):
        classify_boxes(net, tomo, np.array([[0.5, 0, 0]]), box=12, device="cpu")


def test_picks_from_boxes_by_hand():
    names = ("a", "background", "b")
    zyx = np.array([[10, 10, 10], [10, 10, 13], [10, 10, 20], [30, 30, 30], [40, 40, 40]])
    probs = np.array([
        [0.70, 0.10, 0.20],  # objectness 0.9, class a (r 4)
        [0.05, 0.05, 0.90],  # 0.95, class b (r 2): 3 voxels from the first, < max(4, 2)
        [0.60, 0.30, 0.10],  # 0.7, a: 7 and 10 voxels from the two above -> kept
        [0.20, 0.60, 0.20],  # 0.4 < threshold
        [0.10, 0.45, 0.45],  # 0.55, b
    ])
    picks = picks_from_boxes(zyx, probs, names, {"a": 4.0, "b": 2.0}, threshold=0.5,
                             tomogram_name="t")
    assert picks["class_name"].tolist() == ["b", "a", "b"]
    np.testing.assert_allclose(picks["score"], [0.95, 0.7, 0.55])
    np.testing.assert_allclose(picks["class_score"], [0.90, 0.60, 0.45])
    np.testing.assert_allclose(picks[["z", "y", "x"]].to_numpy(),
                               [[10, 10, 13], [10, 10, 20], [40, 40, 40]])
    assert (picks["tomogram"] == "t").all() and picks["rot"].isna().all()
    none = picks_from_boxes(zyx, probs, names, 3.0, threshold=0.99)
    assert len(none) == 0 and "class_score" in none.columns
    with pytest.raises(InputError, match="background"):
        picks_from_boxes(zyx, probs, ("a", "c", "b"), 3.0)
    # the a at x = 20 lies 7 voxels from the stronger b at x = 13: kept at the default
    # (7 > max(4, 2)), dropped at separation 2 (7 < 2 * 4)
    wide = picks_from_boxes(zyx, probs, names, {"a": 4.0, "b": 2.0}, threshold=0.5,
                            separation=2.0)
    assert wide["class_name"].tolist() == ["b", "b"]
    np.testing.assert_allclose(wide[["z", "y", "x"]].to_numpy(), [[10, 10, 13], [40, 40, 40]])


def test_planted_particles_are_found_by_candidates_and_nothing_else():
    tomo = _planted_tomogram()
    cands = propose_candidates(tomo, sorted(RADII.values()), polarity="both", progress=False)
    probs = classify_boxes(PlantedNet(), tomo, cands.zyx, box=8, normalize="none",
                           progress=False, device="cpu")
    assert_planted_found(picks_from_boxes(cands.zyx, probs, CLASSES, RADII, threshold=0.5))


def test_bf16_classification_where_the_hardware_has_it():
    """precision='bf16' on the CPU: the same classifier within bf16 rounding, or, on a CPU
    without native bf16, a one-line error rather than a slow emulation."""
    from tomoclass.train.device import cpu_has_bf16

    tomo, centres, radii = _spheres()
    torch.manual_seed(0)
    from tomoclass.models import get_model

    model = get_model("dilated_densenet3d", num_classes=3, growth_rate=4, layers_per_block=2,
                      dilations=[1, 2]).eval()
    with torch.no_grad():  # peaked outputs, so that bf16 rounding shows in the probabilities
        model.get_classifier().weight.mul_(30.0)
    zyx = np.array(centres, dtype=np.int64)
    fp32 = classify_boxes(model, tomo, zyx, box=24, device="cpu", progress=False,
                          precision="fp32")
    assert fp32.max() - fp32.min() > 0.3
    np.testing.assert_allclose(
        classify_boxes(model, tomo, zyx, box=24, device="cpu", progress=False), fp32)
    if cpu_has_bf16():
        bf16 = classify_boxes(model, tomo, zyx, box=24, device="cpu", progress=False,
                              precision="bf16")
        assert bf16.dtype == np.float32 and 0 < np.abs(bf16 - fp32).max() < 2e-2
        np.testing.assert_allclose(bf16.sum(axis=1), 1.0, rtol=1e-5)
    else:
        with pytest.raises(InputError, match="bf16"):
            classify_boxes(model, tomo, zyx, box=24, device="cpu", progress=False,
                           precision="bf16")
    with pytest.raises(InputError, match="precision"):
        classify_boxes(model, tomo, zyx, box=24, device="cpu", progress=False,
                       precision="fp8")


def test_suppress_picks_applies_the_separation_to_a_table_per_tomogram():
    from tomoclass.locate import suppress_picks

    picks = pd.DataFrame({
        "tomogram": ["t1", "t1", "t1", "t2", "t1"],
        "x": [10.0, 17.0, 30.0, 17.0, 40.0], "y": 10.0, "z": 10.0,
        "class_name": ["A", "a", "b", "a", "background"],
        "score": [0.9, 0.8, 0.7, 0.6, 0.99],
    })
    radii = {"a": 5.0, "b": 2.0}
    # 7 voxels apart, radius 5: both kept at 1, the weaker dropped at 1.5 (7 < 7.5); the
    # t2 pick has no neighbour in its own tomogram; background rows are left out
    same = suppress_picks(picks, radii)
    assert same.index.tolist() == [0, 1, 2, 3]
    wide = suppress_picks(picks, radii, separation=1.5)
    assert wide.index.tolist() == [0, 2, 3]
    assert suppress_picks(picks.iloc[:0], radii).empty
    with pytest.raises(InputError, match="radius"):
        suppress_picks(picks, {"a": 5.0})
    with pytest.raises(InputError, match="separation"):
        suppress_picks(picks, radii, separation=0)
    with pytest.raises(InputError, match="score"):
        suppress_picks(picks.drop(columns="score"), radii)
