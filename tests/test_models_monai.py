"""MONAI's DenseNet121 as the registered model ``monai_densenet121`` (optional extra ``bench``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from train_support import make_dataset, one_thread

from tomoclass.errors import InputError
from tomoclass.models import get_model, list_models
from tomoclass.models.monai_densenet import monai_available

one_thread = pytest.fixture(autouse=True)(one_thread)

needs_monai = pytest.mark.skipif(not monai_available(),
                                 reason="MONAI not installed (pip install 'tomoclass[bench]')")


def test_registered_and_a_missing_monai_is_one_line_naming_the_extra(monkeypatch):
    assert "monai_densenet121" in list_models()
    monkeypatch.setitem(sys.modules, "monai", None)  # makes `import monai...` fail
    monkeypatch.setitem(sys.modules, "monai.networks.nets", None)
    with pytest.raises(InputError) as err:
        get_model("monai_densenet121", num_classes=3)
    msg = str(err.value)
    assert "tomoclass[bench]" in msg and "\n" not in msg and err.value.field == "model"


@needs_monai
def test_interface_at_32_and_the_stem_limits_the_box():
    from monai.networks.nets import DenseNet121

    torch.manual_seed(0)
    model = get_model("monai_densenet121", num_classes=5).eval()
    x = torch.randn(2, 1, 32, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 1024, 1, 1, 1)  # stride 32: the stem halves the box twice
    assert (feats >= 0).all()  # post-ReLU: the map the GAP head averages (CAM Eq. 1)
    logits = model(x)
    torch.testing.assert_close(model.forward_head(feats), logits)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 1024)
    assert model.has_gap_head and model.get_classifier().out_features == 5
    # the same network MONAI builds: same parameter count
    ref = DenseNet121(spatial_dims=3, in_channels=1, out_channels=5)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    rebuilt = get_model(model.model_name, **model.model_config)
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval()(x), logits)
    assert model.min_input_size == 29 and model.max_input_size is None
    with pytest.raises(ValueError, match="at least 29"):
        model(torch.randn(1, 1, 28, 28, 28))
    model.reset_classifier(2)
    assert model(x).shape == (2, 2) and model.model_config["num_classes"] == 2


@needs_monai
def test_trains_evaluates_and_gives_cams_through_the_unchanged_pipeline(tmp_path):
    from tomoclass.cam import class_activation_maps
    from tomoclass.infer import load_run
    from tomoclass.train import fit, preset
    from tomoclass.workflows.evaluate import evaluate_run

    ds = make_dataset(tmp_path / "ds", n_per_class=(2, 2), n_val_per_class=1, box=32)
    cfg = preset("plain", model="monai_densenet121", epochs=1, batch_size=4,
                 checkpoint_every=0, device="cpu", accumulation_steps=1)
    fit(cfg, ds, tmp_path / "run")
    model, cmap, _ = load_run(tmp_path / "run", which="last")
    assert model.model_name == "monai_densenet121" and len(cmap.names) == 2
    rep = evaluate_run(tmp_path / "run", ds, split="val", which="last", cam=False,
                       device="cpu")
    assert rep.metrics.n == 2 and 0.0 <= rep.macro_f1 <= 1.0
    vols = np.random.default_rng(0).standard_normal((2, 32, 32, 32)).astype(np.float32)
    res = class_activation_maps(model, vols, np.array([0, 1]))
    assert res.method == "cam"


def test_models_summary_leaves_out_monai_when_it_is_missing(monkeypatch):
    from tomoclass.models import summarize_models

    monkeypatch.setitem(sys.modules, "monai", None)
    monkeypatch.setitem(sys.modules, "monai.networks.nets", None)
    rows = summarize_models(names=None, input_size=32)
    assert "monai_densenet121" not in {r.name for r in rows}
    assert {"densenet3d", "dilated_densenet3d", "shrec_cnn"} <= {r.name for r in rows}
    with pytest.raises(InputError, match="bench"):
        summarize_models(names=["monai_densenet121"])
