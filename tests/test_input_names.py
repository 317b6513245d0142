"""Table-side input problems: class names that do not match, class from a column or file name,
a table's tomogram named on the command line, coordinate-free subtomogram stacks."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import starfile

from tomoclass.cli.main import main
from tomoclass.data import open_dataset
from tomoclass.errors import InputError
from tomoclass.evaluate.picks import score_picks
from tomoclass.io import read_particles, write_volume


def _table(names, tomogram="t"):
    return pd.DataFrame({"tomogram": tomogram, "x": [5.0, 20.0], "y": [5.0, 20.0],
                         "z": [5.0, 20.0], "class_name": names, "score": [0.9, 0.8]})


def test_score_picks_warns_once_when_class_names_do_not_match(caplog, tmp_path, capsys):
    truth = _table(["1bxn", "3cf3"])
    with caplog.at_level(logging.WARNING):
        score_picks(truth, _table(["1BXN", "3cf3"]), 2.0)  # case does not matter
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        result = score_picks(truth, _table(["class0", "3cf3"]), 2.0)
    assert result.tp == 2 and len(caplog.records) == 1
    assert "1 of 2 picks" in caplog.text and "class0" in caplog.text
    truth.to_csv(tmp_path / "truth.csv", index=False)
    _table(["ribo", "prot"]).to_csv(tmp_path / "picks.csv", index=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["score-picks", "--truth", str(tmp_path / "truth.csv"), "--picks",
                     str(tmp_path / "picks.csv"), "--radius", "2"]) == 0
    assert len([r for r in caplog.records if "ground truth does not have" in r.message]) == 1
    assert "accuracy" in capsys.readouterr().out


def _relion3_star(path, classes):
    n = len(classes)
    starfile.write({"": pd.DataFrame({
        "rlnMicrographName": ["tomo_a.mrc"] * n,
        "rlnCoordinateX": [6.0 + 4 * i for i in range(n)], "rlnCoordinateY": [10.0] * n,
        "rlnCoordinateZ": [10.0] * n, "rlnParticleName": classes})}, path)
    return path


def test_inspect_names_the_class_column_and_reads_it(tmp_path, capsys):
    star = _relion3_star(tmp_path / "run_data.star", ["ribo", "prot", "ribo", "prot"])
    assert main(["inspect", "--table", str(star), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)[0]
    assert "--class-column rlnParticleName" in " ".join(info["notes"])
    assert main(["inspect", "--table", str(star), "--json", "--class-column",
                 "rlnParticleName"]) == 0
    info = json.loads(capsys.readouterr().out)[0]
    assert info["classes"] == {"prot": 2, "ribo": 2}
    assert main(["inspect", "--table", str(star), "--class-column", "rlnNope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rlnNope" in err[0] and "rlnParticleName" in err[0]


def test_class_from_the_file_name(tmp_path, capsys):
    a = _relion3_star(tmp_path / "ribosome.star", ["x", "y"])
    b = _relion3_star(tmp_path / "particles_class003.star", ["x", "y"])
    assert read_particles(a, class_from_filename=True)["class_name"].tolist() == ["ribosome"] * 2
    assert set(read_particles(b, class_from_filename=r"class(\d+)")["class_name"]) == {"003"}
    with pytest.raises(InputError, match="does not match"):
        read_particles(a, class_from_filename=r"class(\d+)")
    assert main(["inspect", "--table", str(a), str(b), "--json", "--class-from-filename"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["classes"] for i in infos] == [{"ribosome": 2}, {"particles_class003": 2}]
    assert main(["inspect", "--table", str(b), "--json", "--class-pattern", r"class(\d+)"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["classes"] == {"003": 2}
    assert main(["inspect", "--table", str(a), "--class-pattern", r"class(\d+)"]) == 2
    assert "--class-pattern" in capsys.readouterr().err


def _tomogram(path, seed):
    rng = np.random.default_rng(seed)
    write_volume(path, rng.standard_normal((24, 24, 24)).astype(np.float32), 10.0)
    return path


def _objlist(path, labels):
    rows = "".join(f'<object tomo_idx="0" class_label="{k}" x="{6 + 5 * i}" y="12" z="12"/>'
                   for i, k in enumerate(labels))
    path.write_text(f"<objlist>{rows}</objlist>")
    return path


def test_extract_names_each_tables_tomogram(tmp_path, capsys):
    ta, tb = _tomogram(tmp_path / "tomo_a.mrc", 1), _tomogram(tmp_path / "tomo_b.mrc", 2)
    xa, xb = _objlist(tmp_path / "objl_a.xml", [1, 2]), _objlist(tmp_path / "objl_b.xml", [2, 1])
    base = ["extract", "--tomograms", str(ta), str(tb), "--box", "8", "--split", "stratified",
            "--test-fraction", "0", "--polarity", "dark"]
    assert main([*base, "--tables", str(xa), str(xb), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tables TABLE=TOMOGRAM" in err[0]
    assert not (tmp_path / "bad").exists()
    assert main([*base, "--tables", f"{xa}=tomo_a", f"{xb}=tomo_b.mrc", "--out",
                 str(tmp_path / "ds")]) == 0
    table = open_dataset(tmp_path / "ds").table
    assert sorted(table["tomogram"].value_counts().items()) == [("tomo_a", 2), ("tomo_b", 2)]


def test_inspect_pairs_a_named_table_with_its_tomogram(tmp_path, capsys):
    ta, tb = _tomogram(tmp_path / "tomo_a.mrc", 1), _tomogram(tmp_path / "tomo_b.mrc", 2)
    xb = _objlist(tmp_path / "objl_b.xml", [2, 1])
    assert main(["inspect", "--tomogram", str(ta), str(tb), "--table", str(xb), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)[-1]
    assert info["unmatched_tomograms"] == ["0"] and "TABLE=TOMOGRAM" in " ".join(info["notes"])
    assert main(["inspect", "--tomogram", str(ta), str(tb), "--table", f"{xb}=tomo_b",
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)[-1]
    assert info["tomograms"]["tomo_b"]["tomogram_file"] == str(tb)


def test_extract_takes_the_class_from_a_star_column(tmp_path, capsys):
    ta = _tomogram(tmp_path / "tomo_a.mrc", 1)
    star = _relion3_star(tmp_path / "run_data.star", ["ribo", "prot", "ribo"])
    assert main(["extract", "--tomograms", str(ta), "--tables", str(star), "--box", "8",
                 "--split", "stratified", "--test-fraction", "0", "--polarity", "dark",
                 "--class-column", "rlnParticleName", "--out", str(tmp_path / "ds")]) == 0
    assert list(open_dataset(tmp_path / "ds").class_map.names) == ["prot", "ribo"]


def _stack(tmp_path, labels, column):
    folder = tmp_path / "Subtomograms" / "TS_01"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(len(labels)):
        write_volume(folder / f"{i:06d}.mrc", rng.standard_normal((8, 8, 8)).astype(np.float32),
                     10.0)
        names.append(f"Subtomograms/TS_01/{i:06d}.mrc")
    star = tmp_path / "subtomograms.star"
    starfile.write({"particles": pd.DataFrame({"rlnImageName": names, column: labels})}, star)
    return star


def test_dataset_import_of_a_coordinate_free_stack(tmp_path, capsys):
    star = _stack(tmp_path, ["ribo", "prot", "ribo", "prot"], "rlnParticleName")
    out = tmp_path / "ds"
    assert main(["dataset", "import", str(star), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--class-column" in err[0]
    assert main(["dataset", "import", str(star), "--out", str(out), "--class-column",
                 "rlnParticleName"]) == 0
    store = open_dataset(out)
    assert list(store.class_map.names) == ["prot", "ribo"] and len(store) == 4
    assert set(store.table["tomogram"]) == {"TS_01"}


def test_dataset_import_keeps_class_numbers_as_written(tmp_path):
    star = _stack(tmp_path, [3, 7, 3], "rlnClassNumber")
    out = tmp_path / "ds"
    assert main(["dataset", "import", str(star), "--out", str(out)]) == 0
    assert list(open_dataset(out).class_map.names) == ["3", "7"]
