import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tomoclass.errors import InputError
from tomoclass.evaluate.picks import score_picks


def _table(rows, tomogram="t0"):
    df = pd.DataFrame(rows, columns=["class_name", "x", "y", "z", "score"])
    df.insert(0, "tomogram", tomogram)
    return df


@pytest.fixture
def truth():
    return _table(
        [
            ("A", 10, 10, 10, np.nan),  # T0
            ("A", 30, 10, 10, np.nan),  # T1
            ("B", 10, 40, 10, np.nan),  # T2
            ("B", 50, 50, 50, np.nan),  # T3: nobody picks it
        ]
    )


@pytest.fixture
def picks():
    return _table(
        [
            ("A", 11, 10, 10, 0.9),  # hits T0, right class
            ("a", 10, 11, 10, 0.8),  # inside T0 again: duplicate -> FP
            ("B", 30, 12, 10, 0.7),  # hits T1 (distance 2 <= 3), wrong class
            ("B", 10, 43, 10, 0.6),  # hits T2 (distance 3 <= 5), right class
            ("A", 80, 80, 80, 0.5),  # nowhere -> FP
            ("background", 50, 50, 50, 0.99),  # not scored
        ]
    )


RADII = {"a": 3.0, "B": 5.0}


def test_hand_computed_counts(truth, picks):
    s = score_picks(truth, picks, RADII)
    assert (s.n_true, s.n_picks) == (4, 5)
    assert (s.tp, s.fp, s.fn, s.n_duplicates) == (3, 2, 1, 1)
    assert s.precision == pytest.approx(3 / 5)
    assert s.recall == pytest.approx(3 / 4)
    assert s.f1 == pytest.approx(6 / 9)
    assert s.classification_accuracy == pytest.approx(2 / 3)
    assert s.confusion.loc["A"].tolist() == [1, 1]
    assert s.confusion.loc["B"].tolist() == [0, 1]
    pc = s.per_class
    # classification among hits
    assert pc.loc["A", ["cls_tp", "cls_fp", "cls_fn"]].tolist() == [1, 0, 1]
    assert pc.loc["B", ["cls_tp", "cls_fp", "cls_fn"]].tolist() == [1, 1, 0]
    assert pc.loc["A", "cls_f1"] == pytest.approx(2 / 3)
    assert pc.loc["B", "cls_precision"] == pytest.approx(1 / 2)
    # localization per true class, and end-to-end detection per class
    assert pc.loc["A", "loc_recall"] == 1.0 and pc.loc["B", "loc_recall"] == 0.5
    assert pc.loc["A", "det_f1"] == pytest.approx(2 / 5)
    assert pc.loc["B", "det_f1"] == pytest.approx(2 / 4)
    assert sorted(s.matches["distance"].tolist()) == [1.0, 2.0, 3.0]
    d = s.to_dict()
    assert d["tp"] == 3 and d["confusion"]["counts"] == [[1, 1], [0, 1]]
    assert "precision 0.600" in s.to_markdown()


def test_single_radius_and_score_order(truth, picks):
    # With radius 1 the B pick at distance 3 and the A pick at distance 2 miss.
    s = score_picks(truth, picks, 1.0)
    assert (s.tp, s.fp, s.fn) == (1, 4, 3)
    # The higher-scored of the two picks on T0 is the hit.
    assert s.matches["pick"].tolist() == [0]


def test_sphere_versus_box():
    truth = _table([("A", 0, 0, 0, np.nan)])
    pick = _table([("A", 2, 2, 2, 1.0)])  # |d| = 3.46, max |d_i| = 2
    assert score_picks(truth, pick, 3.0, region="sphere").tp == 0
    assert score_picks(truth, pick, 3.0, region="box").tp == 1
    # the boundary is inside
    assert score_picks(truth, _table([("A", 3, 0, 0, 1.0)]), 3.0).tp == 1


def test_hungarian_finds_more_hits_than_greedy_in_crowds():
    truth = _table([("A", 0, 0, 0, np.nan), ("A", 4, 0, 0, np.nan)])
    picks = _table([("A", 2.5, 0, 0, 0.9), ("A", 5, 0, 0, 0.5)])
    greedy = score_picks(truth, picks, 3.0)
    assert (greedy.tp, greedy.n_duplicates) == (1, 1)
    hung = score_picks(truth, picks, 3.0, matching="hungarian")
    assert (hung.tp, hung.n_duplicates) == (2, 0)
    assert sorted(hung.matches["distance"]) == [1.0, 2.5]


def test_tomograms_are_kept_apart():
    truth = pd.concat([_table([("A", 0, 0, 0, np.nan)], "t0"), _table([("A", 9, 9, 9, 0)], "t1")])
    picks = _table([("A", 0, 0, 0, 1.0)], "t1")
    s = score_picks(truth, picks, 2.0)
    assert (s.tp, s.fp, s.fn) == (0, 1, 2)


def test_non_protein_truth_rows_are_dropped():
    truth = _table([("A", 0, 0, 0, np.nan), ("vesicle", 20, 20, 20, np.nan)])
    truth["is_protein"] = [True, False]
    s = score_picks(truth, _table([("A", 0, 0, 0, 1.0)]), {"A": 2.0})
    assert (s.n_true, s.tp, s.fn) == (1, 1, 0)


def test_no_picks_gives_nan_precision(truth):
    s = score_picks(truth, _table([]), RADII)
    assert (s.tp, s.fn) == (0, 4)
    assert math.isnan(s.precision) and s.recall == 0.0
    assert s.to_dict()["precision"] is None


def test_bad_inputs(truth, picks):
    with pytest.raises(InputError, match="no hit radius for class"):
        score_picks(truth, picks, {"A": 3.0})
    with pytest.raises(InputError, match="column 'z'"):
        score_picks(truth, picks.drop(columns="z"), RADII)
    bad = picks.copy()
    bad.loc[2, "x"] = np.nan
    with pytest.raises(InputError, match="finite"):
        score_picks(truth, bad, RADII)
    with pytest.raises(InputError, match="positive"):
        score_picks(truth, picks, -1.0)
    with pytest.raises(InputError, match="hit region"):
        score_picks(truth, picks, 3.0, region="cube")


# ../shared/data beside the checkout; TOMOCLASS_SHARED_DATA overrides it (e.g. from a worktree).
DATA = (
    Path(
        os.environ.get(
            "TOMOCLASS_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
        )
    )
    / "ground_truth"
)


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real ground truth absent ({DATA})")
def test_real_shrec19_table_scored_against_jittered_copy_of_itself():
    from tomoclass.io import read_particles

    truth = read_particles(DATA / "shrec19" / "particle_locations_model_9.txt")
    assert len(truth) == 2540
    rng = np.random.default_rng(0)
    picks = truth.copy()
    picks[["x", "y", "z"]] += rng.uniform(-1, 1, size=(len(picks), 3))
    picks["score"] = rng.uniform(size=len(picks))
    # every tenth pick gets the next class in the list: a known confusion
    classes = sorted(truth["class_name"].unique())
    wrong = np.arange(len(picks)) % 10 == 0
    picks.loc[wrong, "class_name"] = [
        classes[(classes.index(c) + 1) % len(classes)] for c in picks.loc[wrong, "class_name"]
    ]
    s = score_picks(truth, picks, 4.0)
    assert (s.tp, s.fp, s.fn) == (2540, 0, 0)
    assert s.classification_accuracy == pytest.approx(1 - wrong.mean())
    assert int(np.trace(s.confusion.to_numpy())) == int((~wrong).sum())


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real ground truth absent ({DATA})")
def test_shrec21_sizes_give_per_class_radii_for_score_picks(tmp_path, capsys):
    from tomoclass.cli.main import main
    from tomoclass.io import read_class_sizes, read_particles

    sizes = DATA / "shrec21" / "sizes.txt"
    radii = read_class_sizes(sizes)
    assert len(radii) == 13 and radii["1S3X"] == 4.0 and radii["5MRC"] == 17.5
    assert read_class_sizes(sizes, voxel_size_angstrom=5.0)["1S3X"] == 8.0
    truth = DATA / "shrec21" / "particle_locations_bin2.txt"
    table = read_particles(truth)
    picks = table[table["is_protein"]].copy()
    picks[["x", "y", "z"]] += 4.5  # |shift| 7.8 voxels: inside 5MRC's 17.5, outside 1S3X's 4.0
    picks["score"] = 1.0
    write = tmp_path / "picks.csv"
    picks.to_csv(write, index=False)
    out = tmp_path / "s.json"
    assert main(["score-picks", "--truth", str(truth), "--picks", str(write),
                 "--sizes", str(sizes), "--json", str(out)]) == 0
    import json

    per = json.loads(out.read_text())["per_class"]
    # (a shifted pick can still land on a neighbouring particle: a few per cent)
    assert per["5MRC"]["loc_recall"] == 1.0 and per["1S3X"]["loc_recall"] < 0.05
    # --radius overrides the file
    assert main(["score-picks", "--truth", str(truth), "--picks", str(write), "--sizes",
                 str(sizes), "--radius", "1S3X=9", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["per_class"]["1S3X"]["loc_recall"] > 0.9


def test_bad_sizes_file_is_one_line_error_naming_file_and_line(tmp_path):
    from tomoclass.io import read_class_sizes

    f = tmp_path / "sizes.txt"
    f.write_text("id box(px) radius(nm) maskradius(px)\n1S3X 12 four 4.0\n")
    with pytest.raises(InputError, match=r"sizes.txt.*line 2.*radius\(nm\)|radius\(nm\).*line 2"):
        read_class_sizes(f)
    f.write_text("name radius\n1S3X 4\n")
    with pytest.raises(InputError, match="header"):
        read_class_sizes(f)
    f.write_text("id box(px) radius(nm) maskradius(px)\n1S3X 12 4.0 4.0\n1s3x 12 4.0 4.0\n")
    with pytest.raises(InputError, match="twice"):
        read_class_sizes(f)


def test_threshold_sweep_scores_the_picks_above_each_threshold(truth, picks, tmp_path, capsys):
    from tomoclass.cli.main import main
    from tomoclass.evaluate import threshold_sweep

    sweep = threshold_sweep(truth, picks, RADII, [0.0, 0.65, 0.85, 0.95])
    # scores 0.9 (hit T0), 0.8 (duplicate of T0), 0.7 (hit T1), 0.6 (hit T2), 0.5 (nowhere);
    # the background pick is never scored
    assert sweep["n_picks"].tolist() == [5, 3, 1, 0]
    assert sweep["tp"].tolist() == [3, 2, 1, 0]
    assert sweep["fp"].tolist() == [2, 1, 0, 0]
    assert sweep["fn"].tolist() == [1, 2, 3, 4]
    assert sweep["f1"].iloc[0] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    with pytest.raises(InputError, match="no thresholds"):
        threshold_sweep(truth, picks, RADII, [])
    from tomoclass.io import write_particles

    t = write_particles(tmp_path / "t.csv", truth)
    p = write_particles(tmp_path / "p.csv", picks)
    assert main(["score-picks", "--truth", str(t), "--picks", str(p), "--radius", "a=3",
                 "--radius", "B=5", "--sweep", "0.65,0.85", "--json",
                 str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "| 0.65 | 3 | 2 | 1 | 2 |" in out
    import json

    rows = json.loads((tmp_path / "s.json").read_text())["threshold_sweep"]
    assert [r["threshold"] for r in rows] == [0.65, 0.85]
    assert main(["score-picks", "--truth", str(t), "--picks", str(p), "--radius", "3",
                 "--sweep", "0.5,high"]) == 2


def test_choose_threshold_takes_the_best_f1_hand_computed(truth, picks):
    from tomoclass.evaluate import choose_threshold

    # F1 = 2 TP / (picks + 4 particles) at each pick score:
    # 0.5: 3 hits of 5 picks -> 6/9; 0.6: 3 of 4 -> 6/8; 0.7: 2 of 3 -> 4/7; 0.8: 1 of 2 -> 2/6;
    # 0.9: 1 of 1 -> 2/5. The background pick (0.99) is no threshold and never counted.
    for matching in ("greedy", "hungarian"):
        c = choose_threshold(truth, picks, RADII, matching=matching)
        assert c.threshold == pytest.approx(0.6)
        assert (c.n_picks, c.tp, c.n_true) == (4, 3, 4)
        assert c.f1 == pytest.approx(6 / 8)
        assert (c.precision, c.recall) == (pytest.approx(3 / 4), pytest.approx(3 / 4))
        assert c.sweep["threshold"].tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
        assert c.sweep["f1"].tolist() == pytest.approx([6 / 9, 6 / 8, 4 / 7, 2 / 6, 2 / 5])
    with pytest.raises(InputError, match="finite score"):
        choose_threshold(truth, picks.assign(score=np.nan), RADII)
    with pytest.raises(InputError, match="score"):
        choose_threshold(truth, picks.drop(columns="score"), RADII)


def test_choose_threshold_from_one_matching_equals_scoring_each_threshold():
    """Greedy matching in score order: the picks above t match as they would alone."""
    from tomoclass.evaluate import choose_threshold, threshold_sweep

    rng = np.random.default_rng(3)
    centres = rng.uniform(0, 60, size=(40, 3))
    truth = _table([("A" if i % 2 else "B", *c, np.nan) for i, c in enumerate(centres)])
    # picks near particles (several per particle: duplicates), plus scattered false ones,
    # with tied scores, over two tomograms
    near = centres[rng.integers(0, 40, 70)] + rng.normal(0, 2.0, (70, 3))
    far = rng.uniform(0, 60, size=(30, 3))
    xyz = np.concatenate([near, far])
    scores = np.round(rng.uniform(0, 1, len(xyz)), 2)
    picks = _table([("A", *c, s) for c, s in zip(xyz, scores, strict=True)])
    for region in ("sphere", "box"):
        c = choose_threshold(truth, picks, 3.0, region=region)
        ref = threshold_sweep(truth, picks, 3.0, c.sweep["threshold"].tolist(), region=region)
        for col in ("n_picks", "tp", "fp", "fn"):
            assert c.sweep[col].tolist() == ref[col].tolist(), (region, col)
        np.testing.assert_allclose(c.sweep["f1"], ref["f1"])
        assert c.f1 == pytest.approx(ref["f1"].max())
        assert c.threshold == ref["threshold"][ref["f1"] == ref["f1"].max()].min()


def test_score_picks_against_a_polnet_motif_list(tmp_path, capsys):
    # PolNet's truth is in Å (--voxel-size converts it); picks in voxels of tomo_rec_0/1
    from test_io_particles import POLNET

    from tomoclass.cli.main import main

    (tmp_path / "tomos_motif_list.csv").write_text(POLNET)
    (tmp_path / "picks.csv").write_text(
        "tomogram,x,y,z,class_name\ntomo_rec_0,101,250,80,pdb_4v4r\n"
        "tomo_rec_0,200,31,120,pdb_3j9i\ntomo_rec_1,64,64,64,pdb_4v4r\n")
    assert main(["score-picks", "--truth", str(tmp_path / "tomos_motif_list.csv"), "--picks",
                 str(tmp_path / "picks.csv"), "--radius", "3", "--voxel-size", "10",
                 "--json", str(tmp_path / "s.json")]) == 0
    import json

    got = json.loads((tmp_path / "s.json").read_text())
    assert got["tp"] == 3 and got["f1"] == pytest.approx(1.0)
    assert got["classification_accuracy"] == pytest.approx(1.0)


def test_neighbour_separation_is_the_nearest_distance_over_the_larger_radius():
    from tomoclass.evaluate import neighbour_separation

    truth = pd.DataFrame({
        "tomogram": ["t1", "t1", "t1", "t2", "t1"],
        "x": [0.0, 6.0, 30.0, 6.0, 7.0], "y": 0.0, "z": 0.0,
        "class_name": ["big", "SMALL", "small", "small", "vesicle"],
        "is_protein": [True, True, True, True, False],
    })
    sep = neighbour_separation(truth, {"big": 4.0, "small": 2.0})
    # 0 and 1 are 6 apart (larger radius 4): 1.5; 2's nearest is 1, 24 apart (radius 2): 12;
    # 3 is alone in t2; the vesicle is not a particle
    assert sep.index.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(sep.to_numpy(), [1.5, 1.5, 12.0, np.nan])
    # one tomogram: the t2 particle now coincides with particle 1
    np.testing.assert_allclose(neighbour_separation(truth.drop(columns="tomogram"), 3.0),
                               [2.0, 0.0, 8.0, 0.0])
    with pytest.raises(InputError, match="radius"):
        neighbour_separation(truth, {"big": 4.0})
    with pytest.raises(InputError, match="radii"):
        neighbour_separation(truth, 0.0)
