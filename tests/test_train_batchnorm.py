"""train/batchnorm.py: precise BN (batch-norm statistics recomputed with final weights)."""

from __future__ import annotations

import torch

from tomoclass.train import preset
from tomoclass.train.batchnorm import recalibrate_batchnorm


def test_batchnorm_recalibration_gives_the_statistics_of_the_calibration_data():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2))
    model[1].running_mean.fill_(5.0)  # stale statistics, as after fast-moving weights
    x = torch.randn(8, 1, 4, 4, 4) * 3 + 1
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(8)),
                                         batch_size=4)
    weights = {k: v.clone() for k, v in model.state_dict().items()
               if "running" not in k and "num_batches" not in k}
    model.eval()
    recalibrate_batchnorm(model, loader, torch.device("cpu"), None, False)
    with torch.no_grad():
        feats = model[0](x)
    torch.testing.assert_close(model[1].running_mean, feats.mean(dim=(0, 2, 3, 4)))
    assert model[1].momentum == 0.1 and not model.training  # restored
    for k, v in weights.items():
        torch.testing.assert_close(model.state_dict()[k], v)  # weights untouched
    assert preset("default").bn_recalibration_samples > 0
    assert preset("paper").bn_recalibration_samples == 0  # the published protocol, unchanged


def test_a_last_batch_of_one_sample_is_dropped_so_batch_norm_can_train(tmp_path):
    """7 samples in batches of 6 left MONAI's DenseNet121 a batch of one whose features are one
    voxel: batch norm refused it ("Expected more than 1 value per channel when training")."""
    import contextlib
    import json

    import pytest
    from train_support import make_dataset, one_thread

    from tomoclass.train import fit
    from tomoclass.train.loaders import drops_last

    pytest.importorskip("monai", reason="monai not installed (pip install '.[bench]')")
    assert drops_last(7, 6) and drops_last(13, 6) and not drops_last(12, 6)
    assert not drops_last(8, 6) and not drops_last(1, 1)
    with contextlib.contextmanager(one_thread)():
        ds = make_dataset(tmp_path / "ds", n_per_class=(3, 2, 2), n_val_per_class=1, box=32)
        cfg = preset("default", model="monai_densenet121", batch_size=6, epochs=1,
                     lr_reference_batch=6, augment=False, checkpoint_every=0,
                     bn_recalibration_samples=7)
        fit(cfg, ds, tmp_path / "run", progress=False, check_resources=False)
    (rec,) = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text()
              .splitlines() if ln.strip()]
    assert rec["epoch"] == 1 and torch.isfinite(torch.tensor(rec["train_loss"]))
