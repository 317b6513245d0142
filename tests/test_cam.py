from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from tomoclass.cam import (
    cam_score,
    class_activation_maps,
    energy_fraction,
    particle_mask,
)
from tomoclass.errors import InputError

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


class TinyGapNet(nn.Module):
    """GAP + one linear layer, the structure Eq. 1 needs."""

    has_gap_head = True
    model_name = "tiny_gap"

    def __init__(self, num_classes=3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(),
            nn.AvgPool3d(2), nn.Conv3d(4, 6, 3, padding=1),
        )
        self.fc = nn.Linear(6, num_classes)

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, f):
        return self.fc(f.mean(dim=(2, 3, 4)))

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class TinyFcNet(TinyGapNet):
    """Flatten + fully connected head (like shrec_cnn): Grad-CAM."""

    has_gap_head = False
    model_name = "tiny_fc"

    def __init__(self, num_classes=3, box=16):
        super().__init__(num_classes)
        self.hidden = nn.Linear(6 * (box // 2) ** 3, 8)
        self.fc = nn.Linear(8, num_classes)

    def forward_head(self, f):
        return self.fc(torch.relu(self.hidden(f.flatten(1))))


class PlantedNet(nn.Module):
    """Features = the input itself, average-pooled by 2: they respond only where x != 0."""

    has_gap_head = True
    model_name = "planted"

    def __init__(self, uniform=False):
        super().__init__()
        self.uniform = uniform
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [0.5]]))
            self.fc.bias.zero_()

    def forward_features(self, x):
        f = F.avg_pool3d(x, 2)
        return torch.ones_like(f) if self.uniform else f

    def forward_head(self, f):
        return self.fc(f.mean(dim=(2, 3, 4)))

    def get_classifier(self):
        return self.fc


def _ball(box, radius, centre=None):
    c = np.array(centre if centre is not None else [box // 2] * 3)
    z, y, x = np.indices((box,) * 3)
    return ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= radius**2


def _no_hooks(model):
    for m in model.modules():
        for name in HOOK_DICTS:
            d = getattr(m, name, None)
            if d is not None:
                assert len(d) == 0, f"{type(m).__name__}.{name} not empty"
    for p in model.parameters():
        assert p.grad is None


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((3, 1, 16, 16, 16)).astype(np.float32)


def test_cam_mean_is_logit_minus_bias(batch):
    torch.manual_seed(0)
    model = TinyGapNet()
    for c in range(3):
        res = class_activation_maps(model, batch, c)
        assert res.method == "cam"
        expected = res.logits[:, c] - model.fc.bias.detach().numpy()[c]
        np.testing.assert_allclose(res.cam_lowres.mean(axis=(1, 2, 3)), expected, atol=1e-5)


@pytest.mark.parametrize("net", [TinyGapNet, TinyFcNet])
def test_shapes_determinism_and_no_side_effects(net, batch):
    torch.manual_seed(0)
    model = net()
    model.train()
    res = class_activation_maps(model, batch, batch_size=2)
    again = class_activation_maps(model, torch.from_numpy(batch[:, 0]), batch_size=2)
    one_pass = class_activation_maps(model, batch, batch_size=8)
    assert res.method == ("cam" if net is TinyGapNet else "grad-cam")
    assert res.cam.shape == (3, 16, 16, 16) and res.cam.dtype == np.float32
    assert res.cam_lowres.shape == (3, 8, 8, 8)
    assert res.probabilities.shape == (3, 3)
    np.testing.assert_allclose(res.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(res.class_index, res.predicted)
    np.testing.assert_array_equal(res.cam, again.cam)  # same call, same bits
    np.testing.assert_allclose(res.cam, one_pass.cam, atol=1e-5)  # batching changes nothing
    assert model.training  # mode restored
    _no_hooks(model)
    # eval-mode outputs: the logits match a plain eval forward pass
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(res.logits, model(torch.from_numpy(batch)).numpy(), atol=1e-5)


def test_grad_cam_matches_autograd_definition(batch):
    torch.manual_seed(1)
    model = TinyFcNet().eval()
    x = torch.from_numpy(batch)
    f = model.forward_features(x).detach().requires_grad_(True)
    logit = model.forward_head(f)[:, 2].sum()
    logit.backward()
    alpha = f.grad.mean(dim=(2, 3, 4))
    expected = torch.relu((alpha[:, :, None, None, None] * f).sum(1)).detach().numpy()
    res = class_activation_maps(model, batch, 2)
    np.testing.assert_allclose(res.cam_lowres, expected, atol=1e-6)
    assert (res.cam >= 0).all()


def test_requested_class_bad_inputs():
    model = TinyGapNet()
    with pytest.raises(InputError):
        class_activation_maps(model, np.zeros((1, 16, 16, 16), np.float32), 3)
    with pytest.raises(InputError):
        class_activation_maps(model, np.zeros((16, 16, 16), np.float32))
    with pytest.raises(InputError):
        class_activation_maps(TinyFcNet(), np.zeros((1, 16, 16, 16), np.float32), method="cam")


def test_particle_mask_inverted_contrast_and_neighbour():
    box = 24
    particle = ndimage.gaussian_filter(_ball(box, 5).astype(float), 1.0)
    neighbour = ndimage.gaussian_filter(_ball(box, 4, (3, 3, 3)).astype(float), 1.0) * 3
    clean = 7.0 - (particle + neighbour)  # dark particles on an offset background
    mask = particle_mask(clean, level=0.2)
    assert mask[12, 12, 12] and not mask[3, 3, 3]
    # the mask is the smoothed ball cut at 20% of its peak: close to the ball itself
    ball = _ball(box, 5)
    assert (mask & ball).sum() / ball.sum() > 0.95
    assert mask.sum() < _ball(box, 7).sum()
    assert not particle_mask(np.full((box,) * 3, 2.0)).any()
    # a lower level keeps more of the blurred edge, still not the neighbour
    low = particle_mask(clean, level=0.025)
    assert low.sum() > mask.sum() and not low[3, 3, 3]


def test_particle_mask_hollow_particle_keeps_nearest_shell():
    box = 24
    shell = _ball(box, 7) & ~_ball(box, 4)
    mask = particle_mask(shell.astype(float) + 0.1 * _ball(box, 2, (2, 2, 2)), level=0.2)
    np.testing.assert_array_equal(mask, shell)


def test_planted_features_score_near_one_and_uniform_scores_mask_fraction():
    box = 32
    region = _ball(box, 9)
    clean = -ndimage.gaussian_filter(region.astype(float), 0.7)
    mask = particle_mask(clean)
    inputs = np.stack([region.astype(np.float32)] * 2)
    cleans = np.stack([clean] * 2)
    labels = np.array([0, 1])
    planted = cam_score(PlantedNet(), inputs, cleans, labels, ["a", "b"])
    assert planted.method == "cam"
    assert planted.mean > 0.9, planted.per_particle
    uniform = cam_score(PlantedNet(uniform=True), inputs, cleans, labels, ["a", "b"])
    np.testing.assert_allclose(uniform.per_particle, mask.mean(), rtol=1e-6)
    np.testing.assert_allclose(uniform.mean_mask_fraction, mask.mean())
    d = planted.to_dict()
    assert set(d["per_class"]) == {"a", "b"} and d["n_scored"] == 2


def test_energy_fraction_edge_cases():
    m = np.zeros((4, 4, 4), bool)
    m[:2] = True
    a = np.zeros((4, 4, 4))
    assert np.isnan(energy_fraction(a - 1.0, m))  # no positive energy
    a[0] = 1.0
    a[3] = -5.0  # negative evidence does not count
    assert energy_fraction(a, m) == 1.0
    with pytest.raises(InputError):
        energy_fraction(a, m[:3])


@pytest.mark.parametrize("orthogonal", [False, True])
def test_cam_figure_writes_png(tmp_path, orthogonal):
    import matplotlib.image as mpimg

    from tomoclass.cam.figure import CamPanel, cam_figure

    rng = np.random.default_rng(3)
    box = 16
    clean = np.stack([_ball(box, 4).astype(np.float32)] * 2)
    inputs = (clean + rng.standard_normal(clean.shape)).astype(np.float32)
    torch.manual_seed(0)
    panels = [
        CamPanel(lbl, class_activation_maps(net(), inputs), ["a", "b", "c"])
        for lbl, net in (("gap", TinyGapNet), ("fc", TinyFcNet))
    ]
    out = cam_figure(tmp_path / "fig.png", inputs, panels, ["a", "b"], clean=clean,
                     orthogonal=orthogonal, title="t")
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 100
    # more columns with orthogonal slices: the figure is wider
    assert (img.shape[1] > 2.5 * img.shape[0]) == orthogonal
    assert list(tmp_path.iterdir()) == [out]  # nothing half-written left beside it
    with pytest.raises(InputError):
        cam_figure(tmp_path / "bad.png", inputs[:1], panels, ["a"])


def test_cam_volumes_are_mrc_with_input_voxel_size(tmp_path):
    import mrcfile

    from tomoclass.cam.volumes import write_cam_volumes

    x = np.random.default_rng(0).standard_normal((2, 16, 16, 16)).astype(np.float32)
    torch.manual_seed(0)
    res = class_activation_maps(TinyGapNet(), x)
    paths = write_cam_volumes(tmp_path / "mrc", res, ["p0 a", "p1/b"], 13.5)
    assert [p.name for p in paths] == ["p0_a.mrc", "p1_b.mrc"]
    for p, vol in zip(paths, res.cam, strict=True):
        with mrcfile.open(p, permissive=False) as m:
            np.testing.assert_array_equal(m.data, vol)
            assert float(m.voxel_size.x) == pytest.approx(13.5)


def test_choose_particles_spreads_over_classes_and_is_seeded():
    from tomoclass.workflows.cam import choose_particles

    labels = np.array([0] * 10 + [1] * 2 + [2] * 5)
    picks = choose_particles(labels, 7, seed=4)
    np.testing.assert_array_equal(picks, choose_particles(labels, 7, seed=4))
    counts = np.bincount(labels[picks], minlength=3)
    np.testing.assert_array_equal(counts, [3, 2, 2])  # class 1 runs out after two
    assert list(labels[picks]) == sorted(labels[picks])
    assert len(set(picks.tolist())) == 7
    assert len(choose_particles(labels, 100)) == len(labels)
    with pytest.raises(InputError):
        choose_particles(labels, 0)


DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "structures"


@pytest.mark.realdata
@pytest.mark.skipif(not (DATA / "masks_shrec19").is_dir(),
                    reason="../shared/data/structures (SHREC'19 maps and masks) not present")
def test_default_mask_matches_shrec19_reference_mask_volumes():
    import warnings

    import mrcfile

    names = [p.stem for p in sorted((DATA / "masks_shrec19").glob("*.mrc"))
             if (DATA / "maps_10A" / p.name).is_file()]
    assert names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the maps carry no machine stamp
        for n in names:
            dens = mrcfile.read(DATA / "maps_10A" / f"{n}.mrc")
            ref = mrcfile.read(DATA / "masks_shrec19" / f"{n}.mrc") > 0.5
            ratio = particle_mask(dens).sum() / ref.sum()
            assert 0.9 < ratio < 1.1, (n, ratio)
