"""CAM on every registered model: the Eq. 1 identity, the method used, no side effects."""

import numpy as np
import pytest
import torch

from tomoclass.cam import class_activation_maps
from tomoclass.models import get_model, list_models
from tomoclass.models.monai_densenet import monai_available

NUM_CLASSES = 4
HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _model(name):
    torch.manual_seed(0)
    return get_model(name, num_classes=NUM_CLASSES)


def _size(model):
    size = max(24, model.min_input_size)
    if model.max_input_size is not None and size > model.max_input_size:
        size = model.max_input_size
    return size


def _inputs(size, n=2):
    return np.random.default_rng(0).standard_normal((n, size, size, size)).astype(np.float32)


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs CUDA")]),
]
# models whose optional library is missing (monai_densenet121 without MONAI) are left out
MODELS = [n for n in list_models() if n != "monai_densenet121" or monai_available()]
GAP_MODELS = [n for n in MODELS if get_model(n, num_classes=2).has_gap_head]


def test_registry_has_gap_models():
    assert {"dilated_densenet3d", "densenet3d"} <= set(GAP_MODELS)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", GAP_MODELS)
def test_spatial_mean_of_cam_is_logit_minus_bias(name, device):
    model = _model(name).to(device)
    x = _inputs(_size(model), n=NUM_CLASSES)
    bias = model.get_classifier().bias.detach().cpu().numpy()
    cls = np.arange(NUM_CLASSES)  # every class, each on its own subtomogram, one pass
    res = class_activation_maps(model, x, cls)
    assert res.method == "cam"
    np.testing.assert_array_equal(res.class_index, cls)
    np.testing.assert_allclose(
        res.cam_lowres.mean(axis=(1, 2, 3)), res.logits[cls, cls] - bias[cls], atol=1e-5
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MODELS)
def test_every_model_shapes_method_and_no_hooks_left(name, device):
    model = _model(name).to(device)
    size = _size(model)
    x = _inputs(size)
    model.train()
    res = class_activation_maps(model, x)
    again = class_activation_maps(model, x)
    assert res.method == ("cam" if model.has_gap_head else "grad-cam")
    assert res.cam.shape == (2, size, size, size)
    assert res.cam_lowres.ndim == 4 and res.cam_lowres.shape[0] == 2
    np.testing.assert_array_equal(res.cam, again.cam)
    np.testing.assert_array_equal(res.class_index, res.logits.argmax(axis=1))
    assert model.training
    for m in model.modules():
        for attr in HOOK_DICTS:
            assert len(getattr(m, attr, {})) == 0, (type(m).__name__, attr)
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        model.eval()
        ref = model(torch.from_numpy(x)[:, None].to(device)).cpu().numpy()
    np.testing.assert_allclose(res.logits, ref, atol=1e-4 if device == "cuda" else 1e-5)
