import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomoclass.errors import InputError
from tomoclass.evaluate.metrics import (
    ClassificationMetrics,
    classification_metrics,
    confusion_matrix,
    metrics_from_labels,
)

NAMES = ["a", "b", "c", "d", "e"]
GROUPS = ["tiny", "tiny", "small", "large", ""]
# rows: true class, columns: predicted class.
# c has support but is never predicted; d has no support but is predicted once;
# e has neither support nor predictions.
CM = np.array(
    [
        [3, 1, 0, 1, 0],
        [1, 2, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
)


def test_confusion_matrix_counts_pairs():
    y_true = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 3, 0, 1, 1, 0, 1]
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 5), CM)


def test_hand_computed_per_class_values():
    m = classification_metrics(CM, NAMES, GROUPS)
    np.testing.assert_array_equal(m.tp, [3, 2, 0, 0, 0])
    np.testing.assert_array_equal(m.fn, [2, 1, 2, 0, 0])
    np.testing.assert_array_equal(m.fp, [2, 2, 0, 1, 0])
    np.testing.assert_array_equal(m.support, [5, 3, 2, 0, 0])
    np.testing.assert_allclose(m.precision[:2], [3 / 5, 2 / 4])
    assert math.isnan(m.precision[2])  # never predicted
    assert m.precision[3] == 0.0  # predicted, never right
    np.testing.assert_allclose(m.recall[:3], [3 / 5, 2 / 3, 0.0])
    assert math.isnan(m.recall[3])  # no support
    # Eq. 2: 2TP / (2TP + FN + FP)
    np.testing.assert_allclose(m.f1[:4], [6 / 10, 4 / 7, 0.0, 0.0])
    assert math.isnan(m.f1[4])  # no support and no predictions: undefined


def test_hand_computed_means_leave_out_undefined():
    m = classification_metrics(CM, NAMES, GROUPS)
    assert m.n == 10
    assert m.accuracy == pytest.approx(5 / 10)
    assert m.macro_f1 == pytest.approx((0.6 + 4 / 7 + 0 + 0) / 4)
    assert m.macro_precision == pytest.approx((0.6 + 0.5 + 0.0) / 3)
    assert m.macro_recall == pytest.approx((0.6 + 2 / 3 + 0.0) / 3)
    assert m.weighted_f1 == pytest.approx((0.6 * 5 + 4 / 7 * 3 + 0 * 2) / 10)
    assert m.weighted_recall == pytest.approx(m.accuracy)
    groups = m.group_f1()
    assert list(groups) == ["tiny", "small", "large"]  # canonical order, only present groups
    assert groups["tiny"] == pytest.approx((0.6 + 4 / 7) / 2)
    assert groups["small"] == 0.0 and groups["large"] == 0.0


def test_group_confusion_separates_a_missed_size_from_a_missed_identity():
    gc = classification_metrics(CM, NAMES, GROUPS).group_confusion()
    assert list(gc) == ["tiny", "small"]  # large (d) has no true particle, "" is no group
    # tiny = a, b: 8 particles, 7 predicted a or b, 5 of those right; a guess between 2: 0.5
    assert gc["tiny"] == {"n": 8, "classes": 2, "in_group": pytest.approx(7 / 8),
                          "within": pytest.approx(5 / 7), "chance": 0.5}
    # small = c alone: both its particles called tiny, nothing inside to be right about
    assert gc["small"]["in_group"] == 0.0 and gc["small"]["within"] is None
    # size found, identity a coin flip: every tiny particle called some tiny class, half right
    flip = classification_metrics(np.array([[5, 5], [5, 5]]), ["x", "y"], ["tiny", "tiny"])
    assert flip.group_confusion()["tiny"]["in_group"] == 1.0
    assert flip.group_confusion()["tiny"]["within"] == pytest.approx(0.5)


def test_dict_round_trip_is_json_and_nan_free():
    m = classification_metrics(CM, NAMES, GROUPS)
    d = json.loads(json.dumps(m.to_dict(), allow_nan=False))
    assert d["per_class"][4]["f1"] is None and d["per_class"][2]["precision"] is None
    back = ClassificationMetrics.from_dict(d)
    np.testing.assert_array_equal(back.confusion, CM)
    assert back.macro_f1 == pytest.approx(m.macro_f1)


def test_perfect_classifier():
    m = metrics_from_labels([0, 1, 2, 2], [0, 1, 2, 2], ["x", "y", "z"])
    assert m.macro_f1 == 1.0 and m.accuracy == 1.0 and m.group_f1() == {}


@pytest.mark.parametrize(
    "y_true,y_pred,n",
    [([0, 1], [0], 2), ([0, 2], [0, 1], 2), ([0, -1], [0, 1], 2), ([0.5, 1], [0, 1], 2)],
)
def test_bad_labels_raise_input_error(y_true, y_pred, n):
    with pytest.raises(InputError):
        confusion_matrix(np.asarray(y_true), np.asarray(y_pred), n)


def test_bad_matrix_or_names_raise_input_error():
    with pytest.raises(InputError):
        classification_metrics(np.zeros((2, 3), dtype=int), ["a", "b"])
    with pytest.raises(InputError):
        classification_metrics(np.zeros((2, 2), dtype=int), ["a"])
    with pytest.raises(InputError):
        classification_metrics(np.zeros((2, 2), dtype=int), ["a", "b"], ["tiny", "huge"])


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda c: st.tuples(
            st.just(c),
            st.lists(st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)), max_size=40),
        )
    )
)
def test_f1_is_harmonic_mean_and_counts_add_up(case):
    c, pairs = case
    t = np.array([p[0] for p in pairs], dtype=int)
    p = np.array([p[1] for p in pairs], dtype=int)
    m = metrics_from_labels(t, p, [str(i) for i in range(c)])
    assert m.support.sum() == len(pairs) == m.tp.sum() + m.fn.sum() == m.tp.sum() + m.fp.sum()
    for i in range(c):
        pr, rc, f1 = m.precision[i], m.recall[i], m.f1[i]
        if np.isfinite(pr) and np.isfinite(rc) and pr + rc > 0:
            assert f1 == pytest.approx(2 * pr * rc / (pr + rc))
        assert math.isnan(f1) == (m.support[i] == 0 and m.tp[i] + m.fp[i] == 0)


def test_json_number_makes_undefined_ratios_null_and_numpy_scalars_plain():
    from tomoclass.metrics import json_number

    values = [np.float32("nan"), float("nan"), np.int64(3), np.float64(0.25), np.bool_(True),
              "1qvr", None]
    out = [json_number(v) for v in values]
    assert out == [None, None, 3, 0.25, True, "1qvr", None]
    assert [type(v) for v in out[2:5]] == [int, float, bool]
    json.dumps(out)  # numpy scalars would raise here
