import numpy as np
import pandas as pd
import pytest
import yaml

from tomoclass.data import (
    ClassMap,
    DatasetWriter,
    assign_splits,
    export_subtomograms,
    extract_dataset,
    import_subtomograms,
    open_dataset,
    write_dataset,
)
from tomoclass.errors import InputError
from tomoclass.io import read_particles, write_particles, write_volume


def _rows(n, seed=0, tomos=("model_0", "model_9")):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "tomogram": rng.choice(list(tomos), n), "x": rng.uniform(8, 24, n),
        "y": rng.uniform(8, 24, n), "z": rng.uniform(8, 24, n),
        "class_name": rng.choice(["1bxn", "3qm1", "4b4t"], n),
        "rot": rng.uniform(-180, 180, n), "tilt": rng.uniform(0, 180, n),
        "psi": rng.uniform(-180, 180, n), "score": np.nan, "is_protein": True,
    })


def test_classmap_round_trip_and_errors():
    cm = ClassMap.from_names(["1bxn", "3qm1", "ribo"])
    assert cm.size_groups == ("medium", "tiny", "")
    assert cm.index("3qm1") == 1 and len(cm) == 3 and "ribo" in cm
    assert ClassMap.from_dict(yaml.safe_load(yaml.safe_dump(cm.to_dict()))) == cm
    with pytest.raises(InputError, match="not in the class map"):
        cm.index("nope")
    with pytest.raises(InputError, match="twice"):
        ClassMap(["a", "a"])
    with pytest.raises(InputError, match="size group"):
        ClassMap(["a"], ["huge"])


def test_write_open_round_trip(tmp_path):
    n, d = 10, 8
    rng = np.random.default_rng(0)
    vols = rng.normal(size=(n, d, d, d)).astype(np.float32)
    clean = rng.normal(size=(n, d, d, d)).astype(np.float32)
    table = _rows(n)
    table["split"] = assign_splits(table)
    cm = ClassMap.from_names(["1bxn", "3qm1", "4b4t"])
    write_dataset(tmp_path / "ds", vols, table, cm, 10.0, clean=clean, chunk=3,
                  provenance={"source": tmp_path})
    s = open_dataset(tmp_path / "ds")
    assert isinstance(s.volumes, np.memmap) and s.volumes.shape == (n, d, d, d)
    np.testing.assert_array_equal(s.volumes, vols)
    np.testing.assert_array_equal(s.clean, clean)
    assert s.box == d and s.voxel_size_angstrom == 10.0 and s.class_map == cm
    assert s.table["class_id"].tolist() == [cm.index(c) for c in table["class_name"]]
    assert s.table["index"].tolist() == list(range(n))
    assert s.table["split"].tolist() == ["test" if t == "model_9" else "train"
                                         for t in table["tomogram"]]
    np.testing.assert_allclose(s.table[["x", "y", "z"]], table[["x", "y", "z"]], atol=1e-6)
    # other tools read the parts directly
    np.testing.assert_array_equal(np.load(tmp_path / "ds" / "subtomograms.npy"), vols)
    assert yaml.safe_load((tmp_path / "ds" / "dataset.yaml").read_text())["format_version"] == 1
    info = s.summary()
    assert sum(v["total"] for v in info["per_class"].values()) == n
    assert info["per_class"]["4b4t"]["size_group"] == "large"


def test_streaming_writer_appends_and_is_atomic(tmp_path):
    cm = ClassMap(["1bxn", "3qm1", "4b4t"])
    target = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with DatasetWriter(target, box=4, class_map=cm, voxel_size_angstrom=5.0) as w:
            w.append(np.zeros((2, 4, 4, 4), np.float32), _rows(2))
            raise RuntimeError("killed mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with DatasetWriter(target, box=4, class_map=cm, voxel_size_angstrom=5.0) as w:
        for k in range(5):
            w.append(np.full((3, 4, 4, 4), k, np.float32), _rows(3, seed=k))
    s = open_dataset(target)
    assert len(s) == 15 and s.volumes[14, 0, 0, 0] == 4 and s.volumes[0, 0, 0, 0] == 0
    with pytest.raises(InputError, match="empty"):
        with DatasetWriter(tmp_path / "e", box=4, class_map=cm, voxel_size_angstrom=5.0):
            pass
    assert not (tmp_path / "e").exists()


def test_unknown_class_rejected(tmp_path):
    t = _rows(3)
    t.loc[1, "class_name"] = "zzzz"
    with pytest.raises(InputError, match="zzzz"):
        write_dataset(tmp_path / "ds", np.zeros((3, 4, 4, 4)), t, ClassMap(["1bxn", "3qm1",
                                                                              "4b4t"]), 5.0)


def test_splits():
    t = _rows(300, tomos=("model_0", "model_3", "model_8", "model_9", "7"))
    sp = assign_splits(t)
    assert set(sp[t["tomogram"] == "model_9"]) == {"test"}
    assert set(sp[t["tomogram"] != "model_9"]) == {"train"}
    sp = assign_splits(t, test_tomograms=["7"], val_tomograms=["model_8"])
    assert set(sp[t["tomogram"] == "7"]) == {"test"} and set(sp[t["tomogram"] == "model_8"]) == {
        "val"}
    a = assign_splits(t, "stratified", test_fraction=0.2, val_fraction=0.1, seed=3)
    b = assign_splits(t, "stratified", test_fraction=0.2, val_fraction=0.1, seed=3)
    c = assign_splits(t, "stratified", test_fraction=0.2, val_fraction=0.1, seed=4)
    assert (a == b).all() and not (a == c).all()
    for cls in t["class_name"].unique():
        m = (t["class_name"] == cls).to_numpy()
        assert abs((a[m] == "test").sum() - 0.2 * m.sum()) <= 1
        assert abs((a[m] == "val").sum() - 0.1 * m.sum()) <= 1
    with pytest.raises(InputError):
        assign_splits(t, "random")
    with pytest.raises(InputError):
        assign_splits(t, "stratified", test_fraction=0.6, val_fraction=0.5)


def test_open_rejects_inconsistent(tmp_path):
    cm = ClassMap(["1bxn", "3qm1", "4b4t"])
    write_dataset(tmp_path / "ds", np.zeros((4, 4, 4, 4)), _rows(4), cm, 5.0)
    with pytest.raises(InputError, match="not a dataset"):
        open_dataset(tmp_path / "nothing")
    np.save(tmp_path / "ds" / "subtomograms.npy", np.zeros((3, 4, 4, 4), np.float32))
    with pytest.raises(InputError, match="4 table rows for 3"):
        open_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "classes.yaml").write_text("classes: [{name: 1bxn}]\n")
    np.save(tmp_path / "ds" / "subtomograms.npy", np.zeros((4, 4, 4, 4), np.float32))
    with pytest.raises(InputError, match="class ids outside"):
        open_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "dataset.yaml").write_text("format_version: 99\n")
    with pytest.raises(InputError, match="version"):
        open_dataset(tmp_path / "ds")


def test_export_import_round_trip(tmp_path):
    n, d = 6, 8
    rng = np.random.default_rng(1)
    vols = rng.normal(size=(n, d, d, d)).astype(np.float32)
    table = _rows(n)
    table["split"] = assign_splits(table)
    cm = ClassMap.from_names(["1bxn", "3qm1", "4b4t"])
    write_dataset(tmp_path / "ds", vols, table, cm, 10.0, normalization="none")
    exp = export_subtomograms(tmp_path / "ds", tmp_path / "relion")
    star = read_particles(exp / "particles.star")
    assert len(star) == n and star["image_name"].str.endswith(".mrc").all()
    back = import_subtomograms(exp / "particles.star", tmp_path / "ds2", class_map=cm,
                               normalize="none")
    s = open_dataset(back)
    np.testing.assert_allclose(s.volumes, vols, atol=1e-6)
    assert s.table["class_name"].tolist() == table["class_name"].tolist()
    assert s.table["split"].tolist() == table["split"].tolist()
    assert s.voxel_size_angstrom == 10.0


def test_import_relion_numbers_and_missing_file(tmp_path):
    d = 6
    rng = np.random.default_rng(2)
    names = []
    for i in range(3):
        write_volume(tmp_path / "Sub" / f"p{i}.mrc", rng.normal(size=(d, d, d)).astype(np.float32),
                     8.0)
        names.append(f"Sub/p{i}.mrc")
    (tmp_path / "job").mkdir()
    star = tmp_path / "job" / "particles.star"  # paths relative to the project dir above
    star.write_text("data_particles\nloop_\n_rlnTomoName\n_rlnCoordinateX\n_rlnCoordinateY\n"
                    "_rlnCoordinateZ\n_rlnClassNumber\n_rlnImageName\n"
                    + "".join(f"TS_{i} {i} 2 3 {i % 2 + 1} {n}\n" for i, n in enumerate(names)))
    s = open_dataset(import_subtomograms(star, tmp_path / "ds", class_names=["ribo", "prot"],
                                         split_method="stratified",
                                         split_options={"test_fraction": 0.0}))
    assert s.table["class_name"].tolist() == ["ribo", "prot", "ribo"]
    assert s.class_map.names == ("prot", "ribo")
    assert abs(float(s.volumes[0].std()) - 1) < 1e-4  # z-scored on import
    (tmp_path / "Sub" / "p1.mrc").unlink()
    with pytest.raises(InputError, match="p1.mrc"):
        import_subtomograms(star, tmp_path / "ds3", class_names=["ribo", "prot"])
    assert not (tmp_path / "ds3").exists()


def test_extract_dataset_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("model_0", "model_9"):
        write_volume(tmp_path / f"{name}.mrc", rng.normal(size=(24, 32, 32)).astype(np.float32),
                     10.0)
    t = _rows(40, seed=5)
    t.loc[0, "x"] = 100.0  # outside
    ves = _rows(2, seed=6).assign(class_name="vesicle", is_protein=False)
    bg = _rows(3, seed=7).assign(class_name="background", is_protein=False)
    t = pd.concat([t, ves, bg], ignore_index=True)
    write_particles(tmp_path / "gt.csv", t)
    table = read_particles(tmp_path / "gt.csv")
    rep = extract_dataset(tmp_path / "ds", [tmp_path / "model_0.mrc", tmp_path / "model_9.mrc"],
                          table, box=16)
    s = open_dataset(rep.path)
    # vesicles are left out; background boxes (added to train a detector) are kept
    assert rep.n_outside == 1 and rep.n_nonprotein == 2 and rep.n_written == 42 == len(s)
    assert "background" in s.class_map.names and "vesicle" not in s.class_map.names
    assert set(s.table.loc[s.table["tomogram"] == "model_9", "split"]) == {"test"}
    assert s.table["padded"].sum() == rep.n_padded
    assert np.allclose(s.volumes[:].reshape(len(s), -1).std(1), 1.0, atol=1e-3)


def test_streaming_writer_memory_stays_flat(tmp_path):
    import tracemalloc

    cm = ClassMap(["1bxn", "3qm1", "4b4t"])
    chunk = np.zeros((16, 16, 16, 16), np.float32)  # 256 KiB per chunk
    rows = _rows(16)
    tracemalloc.start()
    with DatasetWriter(tmp_path / "ds", box=16, class_map=cm, voxel_size_angstrom=5.0) as w:
        for _ in range(40):  # 10 MiB written in all
            w.append(chunk, rows)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(open_dataset(tmp_path / "ds")) == 640
    assert peak < 4 * chunk.nbytes + 2 * 1024**2  # a few chunks + the tables, not 10 MiB


def test_extract_refuses_when_disk_too_small(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from tomoclass.errors import ResourceError

    write_volume(tmp_path / "model_0.mrc",
                 np.random.default_rng(0).normal(size=(24, 32, 32)).astype(np.float32), 10.0)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ResourceError, match="GiB are free"):
        extract_dataset(tmp_path / "ds", [tmp_path / "model_0.mrc"],
                        _rows(5, tomos=("model_0",)), box=16)
    assert not (tmp_path / "ds").exists()


def test_extract_dataset_with_clean_tomograms(tmp_path):
    rng = np.random.default_rng(3)
    clean = rng.normal(size=(24, 32, 32)).astype(np.float32) * 3 + 5
    write_volume(tmp_path / "model_0.mrc", clean + rng.normal(size=clean.shape).astype(np.float32),
                 10.0)
    write_volume(tmp_path / "model_0_density.mrc", clean, 10.0)
    t = _rows(6, seed=2, tomos=("model_0",))
    t["x"], t["y"], t["z"] = [5, 9, 20, 26, 13, 17], [6, 10, 14, 25, 12, 8], [4, 8, 12, 19, 6, 15]
    rep = extract_dataset(tmp_path / "ds", [tmp_path / "model_0.mrc"], t, box=8,
                          clean_tomograms=[tmp_path / "model_0_density.mrc"])
    s = open_dataset(rep.path)
    assert s.clean is not None and s.clean.shape == s.volumes.shape
    for i in range(len(s)):
        x, y, z = (int(s.table[a][i]) for a in ("x", "y", "z"))
        np.testing.assert_array_equal(s.clean[i], clean[z - 4:z + 4, y - 4:y + 4, x - 4:x + 4])
    with pytest.raises(InputError, match="clean volumes"):
        extract_dataset(tmp_path / "ds2", [tmp_path / "model_0.mrc"], t, box=8,
                        clean_tomograms=[])
