"""io.naming: tomogram names from file paths."""

import pytest

from tomoclass.errors import InputError
from tomoclass.io.naming import distinct_tomogram_names, tomogram_name


@pytest.mark.parametrize("path,name", [
    ("TS_01.mrc", "TS_01"),
    ("TS_01.rec.gz", "TS_01"),
    ("TS_1.5.mrc", "TS_1.5"),
    ("gt/particle_locations_model_9.txt", "model_9"),
    ("tomo_3_gt.txt", "tomo_3"),
    ("model_3/reconstruction.mrc", "model_3"),
    ("model_3/particle_locations.txt", "model_3"),
    ("reconstruction.mrc", "reconstruction"),
])
def test_tomogram_name(path, name):
    assert tomogram_name(path) == name


def test_distinct_tomogram_names_refuses_two_files_of_one_name():
    assert distinct_tomogram_names(["a/TS_01.mrc", "b/TS_02.mrc"]) == ["TS_01", "TS_02"]
    with pytest.raises(InputError, match="several tomograms are named 'TS_01'"):
        distinct_tomogram_names(["a/TS_01.mrc", "b/TS_01.rec"])
