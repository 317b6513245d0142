"""prepare_tomogram: what predict and locate share, decided once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from infer_support import BOX, make_world
from train_support import one_thread

from tomoclass.errors import InputError
from tomoclass.infer import prepare_tomogram
from tomoclass.io import read_volume, write_volume
from tomoclass.io.tomonames import resolve_tomogram_name

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained tiny run, a 40^3 tomogram at 10 Å with 6 blobs, and their picks as CSV."""
    return make_world(tmp_path_factory.mktemp("predict"))


def test_a_tomogram_at_the_training_voxel_size_is_used_as_it_is(world):
    prep = prepare_tomogram(world / "run", world / "tomo.mrc", device="cpu")
    assert prep.name == resolve_tomogram_name(world / "tomo.mrc")
    assert prep.step == 1.0 and prep.device.type == "cpu"
    assert not prep.invert and prep.measured.polarity == "bright"  # the run's own polarity
    assert prep.spectrum is None and set(prep.seconds) == {"polarity"}
    assert prep.box_filter(prep.volume.data, np.array([[20, 20, 20]]), BOX, 10.0) == (None, None)
    net, dtype = prep.net("auto")
    assert dtype is None  # float32 on the CPU, by train.device.inference_net
    x = torch.randn(2, 1, BOX, BOX, BOX)
    with torch.inference_mode():
        np.testing.assert_allclose(net(x).numpy(), prep.model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_another_voxel_size_needs_rescale_and_says_what_it_resamples(world, tmp_path):
    fine = tmp_path / "fine.mrc"
    write_volume(fine, np.asarray(read_volume(world / "tomo.mrc").data), voxel_size_angstrom=5.0)
    with pytest.raises(InputError, match="pass --rescale to resample boxes"):
        prepare_tomogram(world / "run", fine, device="cpu")
    with pytest.raises(InputError, match="resample the tomogram"):
        prepare_tomogram(world / "run", fine, device="cpu", rescale_what="the tomogram")
    prep = prepare_tomogram(world / "run", fine, device="cpu", rescale=True,
                            tomogram_name="TS_7")
    assert prep.step == pytest.approx(2.0) and prep.name == "TS_7"


def test_polarity_both_is_locates_alone(world):
    with pytest.raises(InputError, match="polarity must be one of"):
        prepare_tomogram(world / "run", world / "tomo.mrc", device="cpu", polarity="both")
    prep = prepare_tomogram(world / "run", world / "tomo.mrc", device="cpu", polarity="both",
                            allow_both=True)
    assert not prep.invert and prep.measured is None
    told = prepare_tomogram(world / "run", world / "tomo.mrc", device="cpu", polarity="dark")
    assert told.invert and told.measured is None
