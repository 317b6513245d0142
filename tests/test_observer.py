"""The signal-known-exactly observer: how much class identity simulated boxes hold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tomoclass.errors import InputError
from tomoclass.evaluate.observer import (
    estimate_transfer,
    leave_one_out_transfer,
    observe_dataset,
    rfft_weights,
    ske_scores,
    transfer_bins,
)
from tomoclass.simulate.phantoms import phantom
from tomoclass.simulate.rotation import random_euler
from tomoclass.simulate.tomogram import PlacedParticle, render_density

# two tiny look-alikes and one small class
CLASSES = [("globule", "tiny"), ("dimer", "tiny"), ("trimer", "small")]
BOX = 24


def test_rfft_half_space_weights_give_the_full_sum():
    v = np.random.default_rng(0).standard_normal((6, 5, 8))
    full = (np.abs(np.fft.fftn(v)) ** 2).sum()
    half = (rfft_weights(v.shape) * np.abs(np.fft.rfftn(v)) ** 2).sum()
    assert half == pytest.approx(full)
    odd = np.random.default_rng(1).standard_normal((4, 4, 7))
    assert (rfft_weights(odd.shape) * np.abs(np.fft.rfftn(odd)) ** 2).sum() == pytest.approx(
        (np.abs(np.fft.fftn(odd)) ** 2).sum())


def test_transfer_and_its_leave_one_out_estimate():
    rng = np.random.default_rng(2)
    clean = rng.standard_normal((5, 8, 8, 8))
    t = estimate_transfer(-2.0 * clean, clean)
    np.testing.assert_allclose(t, -2.0, atol=1e-12)  # a pure scale is recovered everywhere
    noisy = -2.0 * clean + rng.standard_normal(clean.shape)
    loo = leave_one_out_transfer(noisy, clean)
    np.testing.assert_allclose(loo[3], estimate_transfer(np.delete(noisy, 3, 0),
                                                         np.delete(clean, 3, 0)))
    with pytest.raises(InputError, match="two boxes"):
        leave_one_out_transfer(noisy[:1], clean[:1])
    with pytest.raises(InputError, match="must be equal"):
        estimate_transfer(noisy, clean[:, :4])


def test_binned_transfer_pools_a_bin_and_beats_the_per_component_estimate_with_few_boxes():
    bins = transfer_bins(8, angle_bins=6)
    assert bins.shape == (8, 8, 5)
    # k and -k in the kx = 0 plane are one line: the same bin
    assert bins[1, 2, 0] == bins[-1, -2, 0] and bins[3, 0, 0] == bins[-3, 0, 0]
    # a smooth truth: T = -2 exp(-|k|^2 / 0.05); few noisy boxes
    rng = np.random.default_rng(5)
    k2 = sum(np.meshgrid(*(np.fft.fftfreq(8) ** 2,) * 2, np.fft.rfftfreq(8) ** 2, indexing="ij"))
    truth = -2.0 * np.exp(-k2 / 0.05)
    clean = rng.standard_normal((6, 8, 8, 8))
    noisy = np.fft.irfftn(truth * np.fft.rfftn(clean, axes=(1, 2, 3)), s=(8, 8, 8),
                          axes=(1, 2, 3)) + 0.5 * rng.standard_normal(clean.shape)
    low = k2 < 0.1
    per_component = np.abs(leave_one_out_transfer(noisy, clean) - truth)[:, low].mean()
    binned = np.abs(leave_one_out_transfer(noisy, clean, bins) - truth)[:, low].mean()
    assert binned < 0.8 * per_component


def test_the_observer_picks_the_signal_in_the_noise_and_fails_when_drowned():
    rng = np.random.default_rng(3)
    sig = rng.standard_normal((2, 8, 8, 8))
    truth = rng.integers(0, 2, 40)
    hyp = np.broadcast_to(sig, (40, 2, 8, 8, 8))
    power = np.full((8, 8, 5), 512.0)  # white noise of s.d. 1: |rfft|^2 has mean 8^3
    clear = sig[truth] + 0.5 * rng.standard_normal((40, 8, 8, 8))
    assert (ske_scores(clear, hyp, np.ones((8, 8, 5)), power).argmax(1) == truth).all()
    drowned = sig[truth] + 200.0 * rng.standard_normal((40, 8, 8, 8))
    acc = (ske_scores(drowned, hyp, np.ones((8, 8, 5)), 200.0**2 * power).argmax(1)
           == truth).mean()
    assert 0.2 < acc < 0.8


def _store(noise: float, n_per_class: int = 20, seed: int = 4):
    """Boxes cut from a density the simulator rendered (render_density), two 'tomograms' with
    different transfers, white noise; poses, classes and splits in a table."""
    rng = np.random.default_rng(seed)
    templates = [phantom(name) for name, _ in CLASSES]
    rows, clean = [], []
    angles = random_euler(rng, n_per_class * len(CLASSES) * 2)
    for i, (rot, tilt, psi) in enumerate(angles):
        k = i % len(CLASSES)
        p = PlacedParticle(k, CLASSES[k][0], BOX // 2, BOX // 2, BOX // 2, rot, tilt, psi)
        dens, _ = render_density(templates, [p], (BOX, BOX, BOX))
        clean.append(dens)
        tomo = "t0" if i < len(angles) // 2 else "t1"
        rows.append({"tomogram": tomo, "rot": rot, "tilt": tilt, "psi": psi, "class_id": k,
                     "split": "train" if tomo == "t0" else "test"})
    clean = np.stack(clean)
    k2 = sum(np.meshgrid(*(np.fft.fftfreq(BOX) ** 2,) * 2, np.fft.rfftfreq(BOX) ** 2,
                         indexing="ij"))
    noisy = np.empty_like(clean)
    for i, r in enumerate(rows):  # a low-pass of another width per tomogram, sign flipped
        t = -np.exp(-k2 / (0.02 if r["tomogram"] == "t0" else 0.03))
        noisy[i] = np.fft.irfftn(t * np.fft.rfftn(clean[i]), s=clean.shape[1:], axes=(0, 1, 2))
    noisy += noise * rng.standard_normal(noisy.shape)
    table = pd.DataFrame(rows)
    store = SimpleNamespace(
        path="synthetic", volumes=noisy.astype(np.float32), clean=clean, table=table, box=BOX,
        class_map=SimpleNamespace(names=[n for n, _ in CLASSES],
                                  size_groups=[g for _, g in CLASSES]),
        split_indices=lambda s: np.flatnonzero(table["split"].to_numpy() == s))
    return store, templates


def test_observer_on_simulator_boxes_knows_the_placement_and_the_classes():
    store, templates = _store(noise=0.05)
    res = observe_dataset(store, templates, rotations=400)
    # render_at_pose places a template exactly as the simulator's render_density does
    assert res["render_check"] > 0.999
    assert res["metrics"].macro_f1 == 1.0 and res["within_group"]["tiny"]["accuracy"] == 1.0
    assert res["within_group"]["tiny"]["chance"] == 0.5 and res["n_boxes"] == 60
    # told no pose: the more poses it may try, the nearer the told-everything observer
    assert res["pose_unknown"]["rotations"] == 400
    assert res["pose_unknown"]["metrics"].macro_f1 > 0.95
    one = observe_dataset(store, templates, rotations=1)["pose_unknown"]
    assert one["metrics"].macro_f1 < 0.8
    # drowned in noise, even the told-everything observer is at chance (1/3)
    store, templates = _store(noise=5.0)
    assert observe_dataset(store, templates)["metrics"].accuracy < 0.6


def test_observer_refusals_name_the_problem():
    store, templates = _store(noise=0.05, n_per_class=2)
    with pytest.raises(InputError, match="are not the dataset's classes"):
        observe_dataset(store, templates[::-1])
    no_clean = SimpleNamespace(**{**vars(store), "clean": None})
    with pytest.raises(InputError, match="no noise-free boxes"):
        observe_dataset(no_clean, templates)
    no_pose = SimpleNamespace(**{**vars(store), "table": store.table.drop(columns="psi")})
    with pytest.raises(InputError, match="lacks psi"):
        observe_dataset(no_pose, templates)


def test_ideal_observer_script_rebuilds_the_templates_from_the_dataset(tmp_path, capsys):
    from bench_support import load_script

    from tomoclass.data.classmap import ClassMap
    from tomoclass.data.store import write_dataset
    from tomoclass.simulate import load_class_templates
    from tomoclass.simulate.config import SimulationConfig

    cfg = SimulationConfig(classes=[{"source": n} for n, _ in CLASSES], seed=0)
    templates = load_class_templates(cfg)
    store, _ = _store(noise=0.05)
    boxes = []  # the same poses, the config's templates
    for _, r in store.table.iterrows():
        p = PlacedParticle(int(r.class_id), "", BOX // 2, BOX // 2, BOX // 2, r.rot, r.tilt, r.psi)
        boxes.append(render_density(templates, [p], (BOX, BOX, BOX))[0])
    clean = np.stack(boxes)
    noisy = -clean + 0.05 * np.random.default_rng(0).standard_normal(clean.shape)
    table = store.table.assign(class_name=[CLASSES[k][0] for k in store.table.class_id],
                               x=BOX // 2, y=BOX // 2, z=BOX // 2)
    cmap = ClassMap([n for n, _ in CLASSES], [g for _, g in CLASSES])
    ds = write_dataset(tmp_path / "ds", noisy, table, cmap, 10.0, clean,
                       provenance={"simulation": cfg.model_dump(mode="json")})
    io = load_script("ideal_observer")
    out = tmp_path / "obs.json"
    assert io.main([str(ds), "--rotations", "20", "--out", str(out)]) == 0
    assert "/ds | " in capsys.readouterr().out
    rec = __import__("json").loads(out.read_text())["records"][0]
    assert rec["render_check"] > 0.999 and rec["pose_known"]["summary"]["macro_f1"] == 1.0
    assert rec["pose_unknown"]["rotations"] == 20
    # a dataset without a simulation record: one line naming it, exit 2
    bare = write_dataset(tmp_path / "bare", noisy, table, cmap, 10.0, clean)
    assert io.main([str(bare)]) == 2
    err = capsys.readouterr().err
    assert "provenance.simulation" in err and "bare" in err
