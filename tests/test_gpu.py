"""The CUDA paths: mixed-precision training with channels-last memory, the inference
shortcuts, whole-tomogram scoring and NCCL DDP give the same answers as the CPU paths.

Every test here needs a CUDA device and is skipped without one (``make test`` on the CPU
machines skips them all; ``benchmarks/gpu_session.sh`` runs them on the GPU machine).
Comparisons against the CPU switch TF32 off so that float32 means float32 on both sides.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch
import yaml
from test_train import tiny_cfg
from train_support import PY, SRC_DIR, TINY_KWARGS, TINY_MODEL, make_dataset, tiny_model_args

from tomoclass.infer import load_run
from tomoclass.locate import score_tomogram
from tomoclass.models import get_model, list_models, optimize_for_inference
from tomoclass.models.monai_densenet import monai_available
from tomoclass.train import fit

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

# models whose optional library is missing (monai_densenet121 without MONAI) are left out
MODELS = [n for n in list_models() if n != "monai_densenet121" or monai_available()]


@pytest.fixture
def strict_fp32():
    """float32 convolutions and matmuls without TF32 for the duration of a test."""
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("gpu_ds") / "ds", n_per_class=(10, 10, 10))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_fit_on_cuda_with_amp_and_channels_last_gives_a_run_the_cpu_can_use(
        dataset, tmp_path, amp, strict_fp32):
    cfg = tiny_cfg(device="cuda", amp=amp, channels_last=True, epochs=3, deterministic=False)
    res = fit(cfg, dataset, tmp_path / "run", progress=False)
    losses = [h["train_loss"] for h in res.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    rec = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert rec["amp"] == {"bf16": "bfloat16", "fp16": "float16"}[amp]
    assert rec["channels_last_3d"] is True and rec["device"].startswith("cuda")

    # the checkpoint loads on the CPU and gives the CUDA model's float32 logits
    cpu_model, _, _ = load_run(tmp_path / "run", which="last", map_location="cpu")
    gpu_model, _, _ = load_run(tmp_path / "run", which="last", map_location="cuda")
    x = torch.randn(4, 1, 12, 12, 12)
    with torch.inference_mode():
        a = cpu_model.eval()(x)
        b = gpu_model.eval()(x.cuda()).cpu()
    assert _rel(b, a) < 1e-4


def test_deterministic_fit_runs_on_cuda(dataset, tmp_path):
    # 3D average pooling has no deterministic CUDA backward: the run must warn, not stop
    cfg = tiny_cfg(device="cuda", epochs=1, deterministic=True)
    try:
        with pytest.warns(UserWarning, match="deterministic"):
            res = fit(cfg, dataset, tmp_path / "det", progress=False)
    finally:  # the switch is process-wide: leave it as the other tests expect
        torch.use_deterministic_algorithms(False)
    assert res.epochs_done == 1 and np.isfinite(res.history[0]["train_loss"])


@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast_forward_and_backward_track_float32(name, strict_fp32):
    torch.manual_seed(0)
    # eval mode: dropout (shrec_cnn) would draw other masks in the two passes; batch norm
    # then uses its running statistics, and the backward pass still reaches every weight
    model = get_model(name, num_classes=12).cuda().eval()
    x = torch.randn(4, 1, 32, 32, 32, device="cuda")
    ref = model(x)
    ref.float().logsumexp(1).sum().backward()
    g_ref = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    xl = x.contiguous(memory_format=torch.channels_last_3d)
    model_cl = model.to(memory_format=torch.channels_last_3d)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model_cl(xl)
    out.float().logsumexp(1).sum().backward()
    g = [p.grad.detach() for p in model_cl.parameters() if p.grad is not None]
    assert len(g) == len(g_ref)
    assert _rel(out.float(), ref.float()) < 5e-2
    # whole-model gradient direction: bf16 keeps ~3 significant digits per op
    flat, flat_ref = torch.cat([t.flatten() for t in g]), torch.cat([t.flatten() for t in g_ref])
    assert torch.isfinite(flat).all()
    assert float(torch.nn.functional.cosine_similarity(flat.double(), flat_ref.double(),
                                                       dim=0)) > 0.98


@pytest.mark.parametrize("name", MODELS)
def test_optimize_for_inference_on_cuda_keeps_the_logits(name, strict_fp32):
    torch.manual_seed(1)
    model = get_model(name, num_classes=12).cuda()
    # non-trivial batch-norm statistics, so folding them into the convolutions matters
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 1, 32, 32, 32, device="cuda") * 2 + 0.5)
    model.eval()
    x = torch.randn(6, 1, 32, 32, 32, device="cuda")
    with torch.inference_mode():
        ref = model(x)
        out = optimize_for_inference(model)(x)
    assert _rel(out.float(), ref.float()) < 1e-4


@pytest.mark.parametrize("method,tol", [("stages", 1e-4), ("boxes", 2e-2)])
def test_score_tomogram_on_cuda_matches_cpu(method, tol, strict_fp32):
    # stages runs in float32 on both; boxes runs under bf16 autocast on CUDA
    torch.manual_seed(2)
    model = get_model(TINY_MODEL, num_classes=3, **TINY_KWARGS).eval()
    tomo = np.random.default_rng(0).normal(size=(24, 40, 36)).astype(np.float32)
    names = ["background", "a", "b"]
    kw = dict(box=12, class_names=names, progress=False, method=method)
    cpu = score_tomogram(model, tomo, device="cpu", **kw)
    gpu = score_tomogram(model, tomo, device="cuda", **kw)
    assert np.abs(gpu.probabilities - cpu.probabilities).max() < tol


def test_candidates_on_cuda_match_cpu(strict_fp32):
    # torch filters on the GPU, scipy on the CPU: the same proposals
    from tomoclass.locate import classify_boxes, propose_candidates

    rng = np.random.default_rng(3)
    tomo = rng.normal(0.0, 0.3, size=(40, 56, 48)).astype(np.float32)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in tomo.shape), indexing="ij")
    for (z, y, x), r in (((10, 12, 14), 3.0), ((28, 40, 30), 6.0)):
        tomo[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= r * r] -= 1.0
    cpu = propose_candidates(tomo, [3.0, 6.0], device="cpu", progress=False, slab=7)
    gpu = propose_candidates(tomo, [3.0, 6.0], device="cuda", progress=False, slab=7)
    np.testing.assert_array_equal(gpu.zyx, cpu.zyx)
    np.testing.assert_allclose(gpu.response, cpu.response, rtol=1e-4)
    np.testing.assert_allclose(gpu.offset, cpu.offset, atol=1e-3)
    torch.manual_seed(2)
    model = get_model(TINY_MODEL, num_classes=3, **TINY_KWARGS).eval()
    pc = classify_boxes(model, tomo, cpu.zyx, box=12, device="cpu", progress=False)
    pg = classify_boxes(model, tomo, cpu.zyx, box=12, device="cuda", progress=False)
    assert np.abs(pg - pc).max() < 2e-2  # bf16 autocast on CUDA
    # spectrum matching: the per-box filter runs on the GPU the same way
    gain = np.linspace(0.5, 2.0, 7)
    from tomoclass.data.spectrum import gain_grid

    fc = classify_boxes(model, tomo, cpu.zyx, box=12, device="cpu", progress=False,
                        box_filter=gain_grid(gain, 12))
    fg = classify_boxes(model, tomo, cpu.zyx, box=12, device="cuda", progress=False,
                        box_filter=gain_grid(gain, 12))
    assert np.abs(fg - fc).max() < 2e-2


def test_torchrun_on_one_gpu_uses_nccl_and_writes_one_run(dataset, tmp_path):
    out = tmp_path / "ddp"
    argv = ["train", "--no-progress", "--data", str(dataset), "--out", str(out),
            "--model", TINY_MODEL, *tiny_model_args(), "--epochs", "1", "--batch-size", "6",
            "--device", "cuda", "--no-augment"]
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(SRC_DIR), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([PY, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "1", "-m", "tomoclass", *argv],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "checkpoints" / "last.pt").is_file()
    rec = yaml.safe_load((out / "config.yaml").read_text())
    assert rec["world_size"] == 1 and rec["device"].startswith("cuda")
