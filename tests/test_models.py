"""Tests of the model zoo: shapes, gradients, init, memory-efficient mode, dilation, sizes."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from tomoclass.cli.main import main
from tomoclass.errors import InputError
from tomoclass.models import (
    DenseLayer,
    count_flops,
    count_parameters,
    get_model,
    list_models,
    receptive_field,
    register_model,
)
from tomoclass.models.monai_densenet import monai_available

# models whose optional library is missing (monai_densenet121 without MONAI) are left out
MODELS = [n for n in list_models() if n != "monai_densenet121" or monai_available()]
# the paper's DenseNets (monai_densenet121, also a GAP head, is checked on its own)
DENSENETS = [n for n in MODELS if get_model(n, num_classes=2).has_gap_head
             and n != "monai_densenet121"]
MEMORY_EFFICIENT = [
    n for n in MODELS if "memory_efficient" in get_model(n, num_classes=2).model_config
]
NUM_CLASSES = 5


def _batch(size: int, seed: int = 0, n: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, size, generator=g)


def _model(name: str, seed: int = 0, **cfg) -> nn.Module:
    torch.manual_seed(seed)
    return get_model(name, num_classes=NUM_CLASSES, **cfg)


def test_registry_lists_the_three_models():
    assert {"dilated_densenet3d", "densenet3d", "shrec_cnn"} <= set(MODELS)
    assert set(DENSENETS) == {"dilated_densenet3d", "densenet3d"}


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register_model("densenet3d")(lambda num_classes: nn.Linear(1, num_classes))
    with pytest.raises(InputError, match="unknown model"):
        get_model("resnet50", num_classes=3)
    with pytest.raises(InputError, match="num_classes"):
        get_model("densenet3d", num_classes=0)
    with pytest.raises(TypeError):
        get_model("densenet3d", num_classes=3, no_such_option=1)


@pytest.mark.parametrize("name", MODELS)
def test_config_rebuilds_the_same_architecture(name):
    model = _model(name)
    assert model.model_name == name
    rebuilt = get_model(model.model_name, **copy.deepcopy(model.model_config))
    a = {k: v.shape for k, v in model.state_dict().items()}
    b = {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert a == b
    rebuilt.load_state_dict(model.state_dict())


@pytest.mark.parametrize("name", MODELS)
def test_logits_shape_at_32(name):
    model = _model(name).eval()
    with torch.no_grad():
        feats = model.forward_features(_batch(32))
        logits = model.forward_head(feats)
    assert feats.dim() == 5 and feats.shape[0] == 2
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    assert model.get_classifier().out_features == NUM_CLASSES


@pytest.mark.parametrize(
    "name,size",
    [("shrec_cnn", 28)] + [(n, s) for n in DENSENETS for s in (40, 64)]
    + [(n, s) for n in MODELS if n == "monai_densenet121" for s in (40, 64)],
)
def test_logits_shape_at_other_sizes(name, size):
    model = _model(name).eval()
    with torch.no_grad():
        logits = model(_batch(size))
    assert logits.shape == (2, NUM_CLASSES)


@pytest.mark.parametrize("name", MODELS)
def test_too_small_input_raises_clear_error(name):
    model = _model(name).eval()
    small = model.min_input_size - 1
    bound = f"at least {model.min_input_size}|from {model.min_input_size}"
    with pytest.raises(ValueError, match=bound):
        model(_batch(small, n=1))
    with pytest.raises(ValueError, match="expects a batch"):
        model(torch.zeros(1, 32, 32, 32))


def test_dilated_densenet_accepts_24_and_shrec_cnn_refuses_33():
    with torch.no_grad():
        assert _model("dilated_densenet3d").eval()(_batch(24, n=1)).shape == (1, NUM_CLASSES)
    with pytest.raises(ValueError, match="from 17\\^3 to 32\\^3"):
        _model("shrec_cnn")(_batch(33, n=1))


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_receives_a_gradient(name):
    model = _model(name).train()
    size = 28 if name == "shrec_cnn" else max(24, model.min_input_size)
    loss = nn.functional.cross_entropy(model(_batch(size)), torch.tensor([0, 3]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MEMORY_EFFICIENT)
def test_memory_efficient_gives_identical_outputs_and_gradients(name):
    # growth rate 6 instead of 12: the same code paths at a quarter of the cost
    plain = _model(name, seed=1, growth_rate=6).train()
    efficient = _model(name, seed=1, growth_rate=6, memory_efficient=True).train()
    efficient.load_state_dict(plain.state_dict())
    x = _batch(24, seed=2)
    target = torch.tensor([1, 4])
    outs = []
    for model in (plain, efficient):
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        nn.functional.cross_entropy(out, target).backward()
        outs.append((out.detach(), xi.grad))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-5, atol=1e-5)
    grads_plain = dict(plain.named_parameters())
    for pname, p in efficient.named_parameters():
        torch.testing.assert_close(p.grad, grads_plain[pname].grad, rtol=1e-5, atol=1e-5)
    # The recomputation in backward must not move BN running statistics a second time.
    buffers_plain = dict(plain.named_buffers())
    for bname, b in efficient.named_buffers():
        torch.testing.assert_close(b, buffers_plain[bname], rtol=1e-6, atol=1e-7)


def test_memory_efficient_switch_reaches_every_layer():
    model = _model("dilated_densenet3d")
    model.memory_efficient = True
    assert model.model_config["memory_efficient"] is True
    assert all(m.memory_efficient for m in model.modules() if isinstance(m, DenseLayer))


def test_shrec_cnn_is_he_initialised_and_keeps_its_signal():
    # no batch norm: He init keeps the activation scale through the 8 ReLU convs
    torch.manual_seed(0)
    model = _model("shrec_cnn")
    for m in (*model.features.modules(), model.fc1, model.fc2):
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            fan_in = m.weight[0].numel()
            assert abs(m.weight.std().item() / math.sqrt(2.0 / fan_in) - 1) < 0.1
            assert torch.all(m.bias == 0)
    x = torch.randn(4, 1, 32, 32, 32)
    with torch.no_grad():
        first = model.features[:2](x).pow(2).mean().sqrt()
        last = model.features(x).pow(2).mean().sqrt()
    assert 0.2 < float(last / first) < 5  # Xavier: ~0.07


def test_shrec_cnn_zero_head_starts_at_a_uniform_guess_and_its_head_gets_a_gradient():
    torch.manual_seed(0)
    model = _model("shrec_cnn", head_init="zeros")
    assert model.model_config["head_init"] == "zeros"
    x, y = torch.randn(4, 1, 32, 32, 32), torch.tensor([0, 1, 2, 0])
    logits = model(x)
    assert torch.all(logits == 0)
    loss = nn.functional.cross_entropy(logits, y)
    assert float(loss.detach()) == pytest.approx(math.log(logits.shape[1]))
    loss.backward()  # the head gets an input-dependent gradient at once
    assert model.classifier.weight.grad.abs().sum() > 0
    assert torch.count_nonzero(_model("shrec_cnn").classifier.weight) > 0  # default: Xavier
    with pytest.raises(ValueError, match="head_init"):
        _model("shrec_cnn", head_init="he")


# The paper's DenseNets (shrec_cnn: He init; monai_densenet121 keeps MONAI's own init, as a
# generic user would get it).
@pytest.mark.parametrize("name", [m for m in MODELS if m not in ("shrec_cnn", "monai_densenet121")])
def test_xavier_uniform_bounds_on_the_largest_conv(name):
    model = _model(name)
    conv = max((m for m in model.modules() if isinstance(m, nn.Conv3d)),
               key=lambda m: m.weight.numel())
    w = conv.weight.detach()
    k = math.prod(conv.kernel_size)
    bound = math.sqrt(6.0 / (conv.in_channels * k + conv.out_channels * k))
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.95 * bound  # uniform draws reach close to the bound
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    if conv.bias is not None:
        assert torch.all(conv.bias == 0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        if isinstance(m, nn.Linear):
            assert torch.all(m.bias == 0)


def _positive_(module: nn.Module) -> None:
    """Make every conv weight positive so no ReLU zeroes a path (gradient support = wiring)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv3d):
                m.weight.abs_().add_(1e-3)


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_dilated_layer_gradient_lives_exactly_on_the_dilated_lattice(dilation):
    torch.manual_seed(0)
    layer = DenseLayer(4, growth_rate=3, bottleneck_width=2, dilation=dilation).eval()
    _positive_(layer)
    size, c = 15, 7
    x = torch.rand(1, 4, size, size, size).add_(0.1).requires_grad_(True)
    out = layer([x])
    out[0, :, c, c, c].sum().backward()
    support = x.grad[0].abs().sum(0) > 0
    expected = torch.zeros(size, size, size, dtype=torch.bool)
    taps = [c - dilation, c, c + dilation]
    for z in taps:
        for y in taps:
            for xx in taps:
                expected[z, y, xx] = True
    assert torch.equal(support, expected)


@pytest.mark.parametrize("dilations", [[1, 1], [1, 2], [2, 3]])
def test_receptive_field_matches_gradient_extent(dilations):
    torch.manual_seed(0)
    model = get_model("dilated_densenet3d", num_classes=2, num_blocks=2, layers_per_block=2,
                      dilations=dilations, growth_rate=2).eval()
    _positive_(model)
    size = 48
    x = torch.rand(1, 1, size, size, size).add_(0.1).requires_grad_(True)
    feats = model.forward_features(x)
    c = feats.shape[-1] // 2
    feats[0, :, c, c, c].sum().backward()
    support = x.grad[0, 0].abs() > 0
    rf = receptive_field(model)
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = support.any(dim=other).nonzero().flatten()
        assert 0 < idx.min() and idx.max() < size - 1  # not clipped by the border
        assert int(idx.max() - idx.min() + 1) == rf[axis]


def test_receptive_field_of_the_paper_nets():
    # stem 3 + block (1+2+3+1)*2 = 14 per block at jumps 1, 2, 4, pools +1 and +2
    assert receptive_field("dilated_densenet3d") == (104, 104, 104)
    assert receptive_field("densenet3d") == (62, 62, 62)
    z, y, x = receptive_field("shrec_cnn")
    assert y == x and z < y  # the first pool spares z


@pytest.mark.parametrize("name", MODELS)
def test_flop_count_matches_the_layer_arithmetic(name):
    model = _model(name).eval()
    expected = 0
    hooks = []

    def conv_hook(m, inp, out):
        nonlocal expected
        expected += 2 * out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(m, inp, out):
        nonlocal expected
        expected += 2 * out.numel() * m.in_features

    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    size = 32 if name != "shrec_cnn" else 28
    try:
        with torch.no_grad():
            model(_batch(size, n=1))
    finally:
        for h in hooks:
            h.remove()
    assert count_flops(model, input_size=size) == expected
    assert model.training is False


def test_reset_classifier():
    model = _model("dilated_densenet3d")
    model.reset_classifier(7)
    assert model.get_classifier().out_features == 7
    assert model.model_config["num_classes"] == 7
    with torch.no_grad():
        assert model.eval()(_batch(24, n=1)).shape == (1, 7)
    shrec = _model("shrec_cnn")
    shrec.reset_classifier(3)
    assert shrec.model_config["num_classes"] == 3


def test_parameter_count_of_the_paper_net():
    # growth 12: 227k parameters with 5 classes -> independent of dilation
    assert count_parameters(_model("dilated_densenet3d")) == count_parameters(_model("densenet3d"))


def test_paper_net_has_226_691_parameters():
    # the 3D-Dilated-DenseNet of Gao et al. (growth 12, blocks of 6, 5 classes)
    assert count_parameters(_model("dilated_densenet3d")) == 226_691


def test_bad_options_raise():
    with pytest.raises(ValueError, match="layers_per_block"):
        get_model("dilated_densenet3d", num_classes=2, dilations=[1, 2, 3])
    with pytest.raises(ValueError, match="compression"):
        get_model("densenet3d", num_classes=2, compression=0)
    with pytest.raises(TypeError, match="dilations"):
        get_model("densenet3d", num_classes=2, dilations=[1, 1, 1, 1])


def test_cli_lists_the_three_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("dilated_densenet3d", "densenet3d", "shrec_cnn"):
        assert name in out
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(MODELS)
    assert by_name["dilated_densenet3d"]["receptive_field"] == [104, 104, 104]
    assert by_name["dilated_densenet3d"]["gflops_per_sample"] > 1.0
