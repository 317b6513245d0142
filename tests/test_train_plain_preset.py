"""The ``plain`` preset: a constant-lr Adam loop, the floor the defaults must beat (issue 18)."""

from __future__ import annotations

import pytest

from tomoclass.errors import InputError
from tomoclass.train import preset
from tomoclass.train.schedule import lr_at


def test_plain_preset_is_a_constant_lr_adam_loop_without_extras():
    cfg = preset("plain", model="dilated_densenet3d")
    assert (cfg.optimizer, cfg.base_lr, cfg.batch_size) == ("adam", 1e-3, 16)
    assert not cfg.augment
    assert cfg.bn_recalibration_samples == 0
    assert cfg.warmup_epochs == 0
    # the lr of the first step, mid-run and on the last step of 30 epochs is the same 1e-3
    lrs = [lr_at(step, 10, cfg) for step in (0, 1, 95, 150, 299)]
    assert lrs == pytest.approx([1e-3] * 5)


def test_plain_lr_does_not_scale_with_the_batch_unless_told():
    assert preset("plain", batch_size=64).peak_lr == pytest.approx(1e-3)
    assert preset("plain", batch_size=64, lr_reference_batch=16).peak_lr == pytest.approx(4e-3)
    # the default preset does follow the linear scaling rule
    assert preset("default", batch_size=16).peak_lr == pytest.approx(1e-3)


def test_plain_gives_shrec_cnn_the_rate_it_learns_at_and_round_trips():
    cfg = preset("plain", model="shrec_cnn")
    assert cfg.peak_lr == pytest.approx(1e-4)
    assert preset("plain", model="shrec_cnn", base_lr=5e-4).base_lr == 5e-4
    again = type(cfg).from_yaml(cfg.to_yaml())
    assert again == cfg and again.preset == "plain"


def test_unknown_preset_still_refused():
    with pytest.raises(InputError, match="plain"):
        preset("plane")
