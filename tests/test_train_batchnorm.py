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
