"""Bad particle tables (issue 9, section 1): one clear InputError naming file, line and field."""

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tomoclass.errors import InputError
from tomoclass.io import read_particles


def _err(path, **kw):
    with pytest.raises(InputError) as e:
        read_particles(path, **kw)
    text = str(e.value)
    assert "\n" not in text
    assert str(path) in text
    return e.value


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".star", ".xml"])
def test_empty_file(tmp_path, suffix):
    p = tmp_path / f"empty{suffix}"
    p.write_text("")
    err = _err(p)
    assert err.path == str(p)


def test_empty_allowed_gives_schema(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("x,y,z\n")
    df = read_particles(p, allow_empty=True)
    assert len(df) == 0 and "class_name" in df.columns


def test_csv_missing_column(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("x,y,class\n1,2,a\n")
    err = _err(p)
    assert err.field == "z" and err.line == 1


def test_star_missing_column(tmp_path):
    p = tmp_path / "m.star"
    p.write_text("data_particles\n\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 2\n")
    err = _err(p)
    assert err.field == "rlnCoordinateZ"


def test_xml_missing_attribute(tmp_path):
    p = tmp_path / "m.xml"
    p.write_text('<objlist>\n<object class_label="1" x="1" y="2"/>\n</objlist>\n')
    err = _err(p)
    assert (err.field, err.line) == ("z", 2)


@pytest.mark.parametrize("name,text,line,field", [
    ("a.txt", "1bxn 1 2 3 0 0 0\n3cf3 1 two 3 0 0 0\n", 2, "y"),
    ("a.csv", "x,y,z\n1,2,3\n4,5,abc\n", 3, "z"),
    ("a.star", "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n"
               "1 2 3\n4 x5 6\n", 7, "rlnCoordinateY"),
    ("a.xml", '<objlist>\n<object class_label="1" x="1" y="2" z="3"/>\n'
              '<object class_label="1" x="1e" y="2" z="3"/>\n</objlist>', 3, "x"),
    ("b.txt", "1bxn 1 2 NaN 0 0 0\n", 1, "z"),
    ("c.txt", "1bxn 1 2 inf 0 0 0\n", 1, "z"),
])
def test_non_numeric_coordinate(tmp_path, name, text, line, field):
    p = tmp_path / name
    p.write_text(text)
    err = _err(p)
    assert (err.line, err.field) == (line, field)
    assert f"line {line}" in str(err) and f"field '{field}'" in str(err)


def test_wrong_column_count(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("1bxn 1 2 3 0 0 0\n1bxn 1 2 3 0\n")
    assert _err(p).line == 2


def test_unknown_class(tmp_path):
    p = tmp_path / "u.txt"
    p.write_text("1bxn 1 2 3 0 0 0\nvesicle 5 5 5 NaN NaN NaN\n9zzz 4 5 6 0 0 0\n")
    err = _err(p, known_classes=["1BXN", "3cf3"])
    assert (err.line, err.field) == (3, "class")
    assert "9zzz" in str(err)
    df = read_particles(p, known_classes=["1BXN", "3cf3", "9zzz"])
    assert df["class_name"].tolist() == ["1BXN", "vesicle", "9zzz"]


def test_class_label_out_of_range(tmp_path):
    p = tmp_path / "l.xml"
    p.write_text('<objlist><object class_label="13" x="1" y="2" z="3"/></objlist>')
    err = _err(p, class_names="shrec19")
    assert err.field == "class_label"


def test_duplicated_particles(tmp_path, caplog):
    p = tmp_path / "d.csv"
    p.write_text("tomogram,x,y,z\nA,1,2,3\nB,1,2,3\nA,1,2,3.0000001\nA,4,5,6\n")
    err = _err(p)
    assert err.line == 4 and "line 2" in str(err)
    with caplog.at_level(logging.WARNING):
        df = read_particles(p, duplicates="drop")
    assert len(df) == 3 and "dropped 1 duplicated" in caplog.text
    assert len(read_particles(p, duplicates="keep")) == 4


def test_coordinate_outside_tomogram(tmp_path, caplog):
    p = tmp_path / "o.txt"
    p.write_text("1bxn 10 10 10 0 0 0\n1bxn 10 70 10 0 0 0\n1bxn 1 2 -0.6 0 0 0\n")
    err = _err(p, tomogram_shape=(20, 64, 64))
    assert (err.line, err.field) == (2, "y")
    with caplog.at_level(logging.WARNING):
        df = read_particles(p, tomogram_shape=(20, 64, 64), out_of_bounds="skip")
    assert len(df) == 1 and "skipped 2 particle(s) outside" in caplog.text


def test_malformed_xml(tmp_path):
    p = tmp_path / "bad.xml"
    p.write_text("<objlist>\n<object x='1'\n</objlist>")
    assert _err(p).line is not None


def test_binary_garbage(tmp_path):
    p = tmp_path / "g.txt"
    p.write_bytes(bytes(range(256)))
    _err(p)


def test_bad_options(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("x,y,z\n1,2,3\n")
    with pytest.raises(InputError):
        read_particles(p, format="pdb")
    with pytest.raises(InputError):
        read_particles(p, duplicates="maybe")
    with pytest.raises(InputError):
        read_particles(tmp_path / "missing.csv")


# --- fuzz: every reader either parses or raises InputError ----------------------------------

_tokens = st.sampled_from(["1bxn", "vesicle", "NaN", "nan", "-1", "0", "3.5", "1e400", "x", "y",
                           "z", "_rlnCoordinateX", "_rlnCoordinateY", "_rlnCoordinateZ",
                           "_rlnCenteredCoordinateXAngst", "_rlnOriginXAngst", "_rlnTomoName",
                           "data_", "data_particles", "loop_", "#", "\"", "'", ",", "<", ">",
                           "<object", "class_label=\"1\"", "x=\"2\"", "/>", "<objlist>", "é", "\t"])
_lines = st.lists(st.lists(_tokens, max_size=8).map(" ".join), max_size=12).map("\n".join)
_texts = st.one_of(_lines, st.text(max_size=200), _lines.map(lambda s: s.replace(" ", ",")))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_texts, fmt=st.sampled_from(["shrec", "csv", "star", "deepfinder"]))
def test_fuzz_readers_parse_or_raise_input_error(tmp_path, text, fmt):
    p = tmp_path / {"shrec": "f.txt", "csv": "f.csv", "star": "f.star", "deepfinder": "f.xml"}[fmt]
    p.write_text(text, encoding="utf-8")
    try:
        df = read_particles(p, format=fmt, tomogram_shape=(10, 10, 10), voxel_size_angstrom=10.0,
                            duplicates="keep", class_names=["a", "b"])
    except InputError:
        return
    assert len(df) > 0
    assert np.isfinite(df[["x", "y", "z"]].to_numpy()).all()


_names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
                 min_size=1, max_size=12).map(str.strip).filter(
    lambda s: s and not ('"' in s and "'" in s))
_coord = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False).map(lambda v: round(v, 3))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_names, _coord, _coord, _coord, _names), min_size=1, max_size=6),
       fmt=st.sampled_from(["star", "csv"]))
def test_fuzz_write_read_round_trip(tmp_path, rows, fmt):
    import pandas as pd

    from tomoclass.io import write_particles

    df = pd.DataFrame(rows, columns=["class_name", "x", "y", "z", "tomogram"])
    p = tmp_path / f"r.{fmt}"
    try:
        write_particles(p, df, format=fmt)
    except InputError:
        return  # e.g. a name STAR cannot quote
    back = read_particles(p, duplicates="keep")
    assert back["class_name"].tolist() == df["class_name"].tolist()
    assert back["tomogram"].tolist() == df["tomogram"].tolist()
    np.testing.assert_allclose(back[["x", "y", "z"]], df[["x", "y", "z"]], atol=1e-9)


@pytest.mark.parametrize("text,line,message", [
    # starfile parses the values; the line index names the row pandas refused
    ("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n\n1 2 3\n# c\n\n"
     "4 5 6 7\n", 10, "4 values for 3 columns"),
    ("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n1 2 3\nloop_\n_foo\n1\n",
     7, "a second loop_ in one data_ block"),
    ("# header\n1 2 3\ndata_\nloop_\n_rlnCoordinateX\n", 2, "text before the first data_"),
    ("data_\n_rlnCoordinateX\n", 2, "has no value"),
])
def test_star_structure_errors_name_the_line(tmp_path, text, line, message):
    p = tmp_path / "s.star"
    p.write_text(text)
    err = _err(p)
    assert err.line == line and message in str(err)
