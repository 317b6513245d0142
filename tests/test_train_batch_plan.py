"""The default batch plan: fit the batch of 64 into the memory there is (pure planner),
gradient accumulation equal to one big batch, and fit() using the plan."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml
from torch import nn
from train_support import TINY_KWARGS, TINY_MODEL, make_dataset, one_thread

from tomoclass.errors import ResourceError
from tomoclass.models import get_model
from tomoclass.train import fit, preset
from tomoclass.train.batch_plan import forward_backward, plan_batch
from tomoclass.train.resources import estimate_training

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)
GIB = 1024**3


@pytest.fixture(scope="module")
def densenet():
    return get_model("dilated_densenet3d", num_classes=12)


def test_paper_batch_on_a_24_gib_machine_with_10_in_use(densenet):
    # the case: as it is, training needs ~19.3 GiB (box 32, batch 64)
    need = estimate_training(densenet, 32, 64, 2).memory_bytes
    assert 19 * GIB < need < 20 * GIB
    plan = plan_batch(14 * GIB, densenet, 32, 64)
    assert plan.fits and plan.chosen and plan.memory_efficient
    assert plan.accumulation_steps == 1 and plan.batch_size == 64
    assert plan.memory_bytes <= 14 * GIB and "memory-efficient" in plan.message
    assert densenet.memory_efficient is False  # the planner does not change the model


def test_less_memory_adds_accumulation_keeping_the_effective_batch(densenet):
    plan = plan_batch(2 * GIB, densenet, 32, 64)
    assert plan.fits and plan.memory_efficient and plan.accumulation_steps > 1
    assert plan.batch_size == 64 and plan.memory_bytes <= 2 * GIB
    # the fewest steps that fit: one step fewer would not
    fewer = plan_batch(1000 * GIB, densenet, 32, 64, memory_efficient=True,
                       accumulation_steps=plan.accumulation_steps - 1)
    assert fewer.memory_bytes > 2 * GIB
    assert f"{plan.accumulation_steps} accumulated micro-batches" in plan.message


def test_enough_memory_changes_nothing_and_user_settings_are_honoured(densenet):
    plan = plan_batch(64 * GIB, densenet, 32, 64)
    assert plan.fits and not plan.chosen
    assert (plan.accumulation_steps, plan.memory_efficient) == (1, False)
    # explicit settings are used even when they do not fit (the caller then refuses)
    plan = plan_batch(1 * GIB, densenet, 32, 64, accumulation_steps=2, memory_efficient=False)
    assert (plan.accumulation_steps, plan.memory_efficient, plan.fits) == (2, False, False)
    # nothing fits: the smallest plan, marked as not fitting
    plan = plan_batch(1024, densenet, 32, 64)
    assert not plan.fits and plan.micro_batch == 1


def test_model_without_memory_efficient_mode_only_accumulates():
    model = get_model("shrec_cnn", num_classes=3)
    big = estimate_training(model, 32, 64, 2).memory_bytes
    plan = plan_batch(big // 2, model, 32, 64)
    assert plan.fits and not plan.memory_efficient and plan.accumulation_steps >= 2


def test_accumulated_gradient_equals_the_big_batch_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(27, 4))
    xb, yb = torch.randn(7, 1, 3, 3, 3), torch.randint(0, 4, (7,))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    grads, losses = [], []
    for steps in (1, 3):
        model.zero_grad()
        loss, logits = forward_backward(model, xb, yb, steps, scaler, torch.enable_grad)
        assert logits.shape == (7, 4)
        losses.append(float(loss))
        grads.append([p.grad.clone() for p in model.parameters()])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fit_plans_the_batch_and_says_so(tmp_path, caplog):
    ds = make_dataset(tmp_path / "ds")
    cfg = preset("default", model=TINY_MODEL, model_kwargs=TINY_KWARGS, batch_size=6, epochs=1,
                 lr_reference_batch=6, checkpoint_every=0, augment=False)
    model = get_model(TINY_MODEL, num_classes=3, **TINY_KWARGS)
    plain = estimate_training(model, 12, 6, 2).memory_bytes
    model.memory_efficient = True
    lean = estimate_training(model, 12, 6, 2).memory_bytes
    assert lean < plain
    # a limit between the two: memory-efficient mode is chosen instead of a refusal
    with caplog.at_level(logging.INFO):
        fit(cfg, ds, tmp_path / "run", progress=False, max_memory_bytes=(lean + plain) // 2)
    assert "training plan" in caplog.text and "memory-efficient" in caplog.text
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["batch_plan"]
    assert recorded["memory_efficient"] and recorded["chosen"] and recorded["batch_size"] == 6
    # explicit settings that do not fit are still refused, naming the way out
    with pytest.raises(ResourceError, match="accumulation-steps"):
        fit(cfg.model_copy(update={"accumulation_steps": 1,
                                   "model_kwargs": {**TINY_KWARGS, "memory_efficient": False}}),
            ds, tmp_path / "run2", progress=False, max_memory_bytes=lean)
    # accumulation given by the user runs (same effective batch)
    res = fit(cfg.model_copy(update={"accumulation_steps": 3}), ds, tmp_path / "run3",
              progress=False)
    assert res.epochs_done == 1
