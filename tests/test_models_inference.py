"""optimize_for_inference gives the plain model's logits (1e-4 relative) for every model."""

from __future__ import annotations

import pytest
import torch

from tomoclass.models import get_model, list_models, optimize_for_inference
from tomoclass.models.monai_densenet import monai_available


def _trained_like(name: str, size: int) -> torch.nn.Module:
    """A model whose BN running statistics and affine parameters are not the defaults."""
    torch.manual_seed(0)
    model = get_model(name, num_classes=4)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
        model.train()
        model(torch.randn(2, 1, size, size, size, generator=g) * 2 + 0.3)
    return model.eval()


@pytest.mark.parametrize(
    "name", [n for n in list_models() if n != "monai_densenet121" or monai_available()])
def test_optimized_logits_match_the_plain_model(name):
    size = 28 if name == "shrec_cnn" else max(24, get_model(name, num_classes=2).min_input_size)
    model = _trained_like(name, size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model, batch_chunk=1)  # 2 samples: the chunked path
    x = torch.randn(2, 1, size, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
        ref_feats = model.forward_features(x)
    out = fast(x)
    scale = ref.abs().max()
    assert (out - ref).abs().max() <= 1e-4 * scale
    assert out.argmax(1).tolist() == ref.argmax(1).tolist()
    with torch.inference_mode():
        feats = fast.forward_features(x)
        torch.testing.assert_close(feats, ref_feats, rtol=1e-4, atol=1e-4 * ref_feats.abs().max())
        torch.testing.assert_close(fast.forward_head(feats), ref, rtol=1e-4, atol=1e-4 * scale)
    assert fast.get_classifier().out_features == 4
    assert fast.model_name == name and fast.has_gap_head == model.has_gap_head
    for k, v in model.state_dict().items():  # the source model is left alone
        assert torch.equal(v, before[k]), k


def test_optimized_model_checks_input_size():
    fast = optimize_for_inference(get_model("dilated_densenet3d", num_classes=2))
    with pytest.raises(ValueError, match="at least 24"):
        fast(torch.zeros(1, 1, 16, 16, 16))


def test_training_layout_does_not_change_results():
    torch.manual_seed(0)
    model = get_model("densenet3d", num_classes=3, growth_rate=4).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        fast_layout = model(x)
        model.channels_last = False
        plain_layout = model(x)
    torch.testing.assert_close(fast_layout, plain_layout, rtol=1e-5, atol=1e-5)
