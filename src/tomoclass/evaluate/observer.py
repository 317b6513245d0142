"""An observer that knows every answer's shape: how much class identity the boxes hold.

A classifier that fails on a class may lack the information or fail to use it. For simulated
data the two can be told apart: the *signal-known-exactly* (SKE) ideal observer is told, for
every box, the particle's pose and position, each candidate class's density and the imaging,
and only has to say which class's signal is in the noise. Under Gaussian noise with a known
spectrum its likelihood-ratio decision is optimal; no classifier that must also find the pose
does better. If it, too, confuses two classes, the data (dose, voxel size, resolution) do not
separate them and no network will; if it separates them and a network does not, the network
leaves information unused.

Model, per Fourier component ``k`` of a box (rfft layout): ``X = T S_h + N``, with ``S_h`` the
noise-free density of hypothesis ``h`` rendered at the box's pose (the simulator's own
rotation and placement, :meth:`tomoclass.simulate.Template.rotated`), ``T`` the imaging
transfer (CTF, missing wedge, reconstruction, normalisation) and ``N`` noise of power ``P(k)``
(independent components; everything the observer is not told, neighbours included, counts as
noise). The observer picks ``argmax_h sum_k w_k [Re(X* T S_h) - |T S_h|^2 / 2] / P(k)``
(``w_k``: the rfft half-space multiplicity), which is the log-likelihood of ``h`` up to a
constant.

``T`` is estimated per tomogram from the noisy and noise-free boxes of that tomogram,
``T = sum X C* / sum |C|^2`` (the imaging is known; no label is used), leaving the box scored
out (its own noise would otherwise sit in ``T``), and ``P`` from the residuals ``X - T S_true``
of the training boxes (labels of the training split only). Both are estimates: with few boxes
per tomogram (tens) the error of ``T`` costs the observer accuracy, so what it scores is what
the data hold *at least* (on 3 classes with 23 boxes per tomogram it fell from 1.0 with the
true ``T`` to 0.79; with 60 boxes it was back at 1.0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tomoclass.errors import InputError
from tomoclass.metrics import ClassificationMetrics, metrics_from_labels
from tomoclass.simulate.rotation import particle_matrix, paste_add, random_euler
from tomoclass.simulate.template import Template

__all__ = ["describe", "estimate_transfer", "leave_one_out_transfer", "noise_power",
           "observe_dataset", "pose_search_scores", "render_at_pose", "rfft_weights",
           "ske_scores", "transfer_bins"]

#: Boxes transformed at a time.
CHUNK = 64


def rfft_weights(shape: Sequence[int]) -> np.ndarray:
    """Multiplicity of each component of an ``rfftn`` half-space (1 or 2), broadcastable."""
    n = int(shape[-1])
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w.reshape((1,) * (len(shape) - 1) + (-1,))


def _rfft(boxes: np.ndarray) -> np.ndarray:
    return np.fft.rfftn(np.asarray(boxes, dtype=np.float64), axes=(-3, -2, -1))


def _check_pairs(noisy: np.ndarray, clean: np.ndarray) -> None:
    if noisy.shape != clean.shape or noisy.ndim != 4:
        raise InputError(f"noisy {noisy.shape} and clean {clean.shape} must be equal (n, D, D, D)",
                         field="boxes")


def estimate_transfer(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """``T(k) = sum X C* / sum |C|^2`` over boxes (complex, rfft layout); 0 where C is 0."""
    _check_pairs(noisy, clean)
    num = 0.0
    den = 0.0
    for s in range(0, len(noisy), CHUNK):
        x, c = _rfft(noisy[s:s + CHUNK]), _rfft(clean[s:s + CHUNK])
        num = num + (x * np.conj(c)).sum(axis=0)
        den = den + (np.abs(c) ** 2).sum(axis=0)
    den = np.asarray(den)
    return np.divide(num, den, out=np.zeros_like(np.asarray(num)), where=den > 0)


def transfer_bins(box: int, angle_bins: int = 18) -> np.ndarray:
    """Bin label of every rfft component of a ``box`` cube, for a smooth transfer estimate.

    The imaging transfer of a single-axis tilt series about y (the simulator's geometry) is a
    function of ``|k|`` (the CTF) and of the angle of ``k`` in the x-z plane (which tilt
    measured it: the missing wedge and the dose each tilt had). Components are binned by
    shell (``round(|k| * box)``) and by that angle (``angle_bins`` equal bins over 180°, ``k``
    and ``-k`` together), so that a transfer estimated per bin pools tens of components.
    """
    kz, ky, kx = np.meshgrid(np.fft.fftfreq(box), np.fft.fftfreq(box), np.fft.rfftfreq(box),
                             indexing="ij")
    shell = np.rint(np.sqrt(kz**2 + ky**2 + kx**2) * box).astype(np.int64)
    alpha = np.degrees(np.arctan2(kz, kx))  # kx >= 0 in the rfft half: [-90, 90]
    alpha = np.where(alpha <= -90.0, 90.0, alpha)  # kx = 0: k and -k are one line
    ang = np.clip(np.floor((alpha + 90.0) / 180.0 * angle_bins), 0, angle_bins - 1)
    return shell * angle_bins + ang.astype(np.int64)


def _bin_sum(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    v = values.reshape(-1)
    lab = labels.reshape(-1)
    out = np.bincount(lab, weights=v.real, minlength=n).astype(complex)
    if np.iscomplexobj(v):
        out += 1j * np.bincount(lab, weights=v.imag, minlength=n)
    return out


def leave_one_out_transfer(noisy: np.ndarray, clean: np.ndarray,
                           bins: np.ndarray | None = None) -> np.ndarray:
    """``(n, ...)``: for every box the :func:`estimate_transfer` of the *other* boxes.

    A transfer estimated with a box inside holds that box's own noise (``N_i C_i* / sum|C|^2``),
    which correlates with the box's true signal and would favour the true class. With
    ``bins`` (:func:`transfer_bins`), the sums run over each bin's components as well, so the
    estimate is smooth and holds with few boxes; without, every component is its own.
    """
    _check_pairs(noisy, clean)
    if len(noisy) < 2:
        raise InputError("a leave-one-out transfer needs two boxes or more", field="boxes")
    w = rfft_weights(noisy.shape[1:])
    xc, cc = [], []
    for s in range(0, len(noisy), CHUNK):
        x, c = _rfft(noisy[s:s + CHUNK]), _rfft(clean[s:s + CHUNK])
        xc.append(x * np.conj(c) * w)
        cc.append(np.abs(c) ** 2 * w)
    xc_all, cc_all = np.concatenate(xc), np.concatenate(cc)
    if bins is None:
        num, den = xc_all.sum(axis=0), cc_all.sum(axis=0)
        d = den[None] - cc_all
        return np.divide(num[None] - xc_all, d, out=np.zeros_like(xc_all),
                         where=d > 1e-12 * den.max())
    nb = int(bins.max()) + 1
    num, den = _bin_sum(xc_all.sum(axis=0), bins, nb), _bin_sum(cc_all.sum(axis=0), bins, nb)
    out = np.empty_like(xc_all)
    for i in range(len(noisy)):
        d = (den - _bin_sum(cc_all[i], bins, nb)).real
        t = np.divide(num - _bin_sum(xc_all[i], bins, nb), d, out=np.zeros(nb, complex),
                      where=d > 1e-12 * den.real.max())
        out[i] = t[bins]
    return out


def render_at_pose(template: Template, rot: float, tilt: float, psi: float,
                   box: int) -> np.ndarray:
    """The template at a pose in a ``box``-sized cube, centred at voxel ``box // 2``.

    As the simulator places it in a tomogram (:func:`tomoclass.simulate.render_density`),
    cubic interpolation, clipped to the box.
    """
    out = np.zeros((box, box, box), dtype=np.float32)
    cube = template.rotated(particle_matrix(rot, tilt, psi), order=3)
    m = template.box
    paste_add(out, cube, (box // 2 - m // 2,) * 3)
    return out


def noise_power(noisy: np.ndarray, signal: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    """Mean ``|X - T S|^2`` over boxes (rfft layout): the power the observer is not told.

    ``transfer``: one ``T`` for all boxes, or one per box (``(n, ...)``, e.g. per tomogram).
    """
    per_box = np.ndim(transfer) == 4
    acc = 0.0
    for s in range(0, len(noisy), CHUNK):
        t = transfer[s:s + CHUNK] if per_box else transfer
        r = _rfft(noisy[s:s + CHUNK]) - t * _rfft(signal[s:s + CHUNK])
        acc = acc + (np.abs(r) ** 2).sum(axis=0)
    return np.asarray(acc) / max(len(noisy), 1)


def _weighted_inverse(power: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``w_k / P(k)`` (0 where ``P`` is 0): the weight of each component in the likelihood."""
    w = rfft_weights(shape)
    return np.divide(w, power, out=np.zeros(np.broadcast_shapes(w.shape, power.shape)),
                     where=power > 0)


def ske_scores(noisy: np.ndarray, hypotheses: np.ndarray, transfer: np.ndarray,
               power: np.ndarray) -> np.ndarray:
    """Log-likelihood (up to a constant) of each hypothesis for each box.

    Parameters
    ----------
    noisy
        ``(n, D, D, D)`` boxes.
    hypotheses
        ``(n, H, D, D, D)`` noise-free signal of every hypothesis at each box's pose.
    transfer, power
        ``T`` and ``P`` in the rfft layout of a ``D`` cube (per box: ``(n, ...)``, or shared).

    Returns
    -------
    numpy.ndarray
        ``(n, H)``; the observer's choice is the argmax along axis 1.
    """
    n, h = hypotheses.shape[:2]
    if len(noisy) != n:
        raise InputError(f"{len(noisy)} boxes for {n} hypothesis sets", field="hypotheses")
    inv_p = _weighted_inverse(power, noisy.shape[1:])
    t = np.broadcast_to(transfer, (n, *np.shape(transfer)[-3:]))
    inv_p = np.broadcast_to(inv_p, (n, *inv_p.shape[-3:]))
    out = np.empty((n, h))
    for i in range(n):
        x = _rfft(noisy[i])
        ts = t[i] * _rfft(hypotheses[i])  # (H, ...)
        out[i] = ((np.real(np.conj(x) * ts) - 0.5 * np.abs(ts) ** 2) * inv_p[i]).sum(
            axis=(-3, -2, -1))
    return out


def pose_search_scores(noisy: np.ndarray, templates: Sequence[Template], transfer: np.ndarray,
                       power: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """The SKE log-likelihood maximised over a set of poses, per box and template.

    The observer is told the position (the box centre) but not the pose: for each template
    it takes the best of ``rotations`` (``(R, 3)`` RELION angles, e.g. Haar-uniform from
    :func:`tomoclass.simulate.random_euler`; the true pose is generally not among them, so
    every class pays the same sampling loss). ``transfer``: ``(n, ...)`` or shared.

    Returns
    -------
    numpy.ndarray
        ``(n, len(templates))``.
    """
    n = len(noisy)
    box = int(noisy.shape[-1])
    inv_p = _weighted_inverse(power, noisy.shape[1:]).reshape(-1)
    t = np.broadcast_to(transfer, (n, *np.shape(transfer)[-3:])).reshape(n, -1)
    x = np.stack([_rfft(v).reshape(-1) for v in noisy])
    a = np.conj(x) * t * inv_p          # Re(F . a) is the cross term
    b = (np.abs(t) ** 2 * inv_p).T      # |F|^2 . b is the energy term, (K, n)
    out = np.empty((n, len(templates)))
    for j, tpl in enumerate(templates):
        best = np.full(n, -np.inf)
        for s in range(0, len(rotations), 512):
            f = np.stack([_rfft(render_at_pose(tpl, *r, box)).reshape(-1)
                          for r in rotations[s:s + 512]])
            score = (f.real @ a.real.T - f.imag @ a.imag.T) - 0.5 * ((np.abs(f) ** 2) @ b)
            best = np.maximum(best, score.max(axis=0))
        out[:, j] = best
    return out


def describe() -> dict[str, Any]:
    """What the observer is told, for result records."""
    return {"observer": "signal-known-exactly ideal observer (pose, position, every class's "
                        "density and the imaging known; Gaussian noise of known spectrum)",
            "transfer": "per tomogram, sum X C* / sum |C|^2 over its noisy and noise-free "
                        "boxes, pooled over (|k| shell, x-z angle) bins, the box scored left "
                        "out",
            "noise_power": "mean |X - T S_true|^2 over the training boxes"}


def _render_rows(templates: Sequence[Template], table: Any, rows: np.ndarray, box: int,
                 classes: np.ndarray | None = None) -> np.ndarray:
    """``(n, H, D, D, D)``: hypotheses ``classes`` (default all) at each row's pose."""
    ids = np.arange(len(templates)) if classes is None else np.asarray(classes)
    out = np.empty((len(rows), len(ids), box, box, box), dtype=np.float32)
    for i, r in enumerate(rows):
        rot, tilt, psi = (float(table[c].iloc[r]) for c in ("rot", "tilt", "psi"))
        for j, k in enumerate(ids):
            out[i, j] = render_at_pose(templates[k], rot, tilt, psi, box)
    return out


def _support_correlation(rendered: np.ndarray, clean: np.ndarray) -> float:
    """Pearson correlation of a rendering with the recorded noise-free box, on its support."""
    m = rendered > 0.05 * float(rendered.max()) if rendered.max() > 0 else rendered != 0
    a, b = rendered[m].astype(np.float64), np.asarray(clean, np.float64)[m]
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def observe_dataset(store: Any, templates: Sequence[Template], *, split: str = "test",
                    train_split: str = "train", rotations: int = 0,
                    seed: int = 0) -> dict[str, Any]:
    """The SKE ideal observer's classification of a simulated dataset's split.

    Parameters
    ----------
    store
        An opened dataset (:func:`tomoclass.data.open_dataset`) with noise-free boxes
        (``clean.npy``) and the poses (``rot``, ``tilt``, ``psi``) of a tomoclass simulation.
    templates
        The simulation's class templates, in the dataset's class order
        (:func:`tomoclass.simulate.load_class_templates` of its recorded configuration).
    split, train_split
        The split classified, and the split whose residuals give the noise power.
    rotations, seed
        With ``rotations`` > 0, also the observer that is not told the pose: the best of
        that many Haar-uniform poses (drawn with ``seed``) per class
        (:func:`pose_search_scores`); its results under ``pose_unknown``.

    Returns
    -------
    dict
        ``metrics`` (:class:`~tomoclass.metrics.ClassificationMetrics` over all classes),
        ``within_group`` ({group: accuracy when only the true group's classes are
        hypotheses}), ``render_check`` (median correlation of the rendered true class with the
        recorded noise-free box on its support: the placement is the simulator's when ~1),
        ``n_boxes`` and, with ``rotations``, ``pose_unknown`` ({"metrics", "within_group",
        "rotations"}).

    Raises
    ------
    InputError
        No noise-free boxes or poses, templates that do not match the classes, an empty split.
    """
    names, groups = list(store.class_map.names), list(store.class_map.size_groups)
    if store.clean is None:
        raise InputError("the dataset has no noise-free boxes (clean.npy); the observer needs "
                         "a simulated dataset", path=store.path, field="clean")
    missing = [c for c in ("rot", "tilt", "psi", "tomogram") if c not in store.table]
    if missing:
        raise InputError(f"the particle table lacks {', '.join(missing)}", path=store.path,
                         field=missing[0])
    if [t.name for t in templates] != names:
        raise InputError(f"templates {[t.name for t in templates]} are not the dataset's "
                         f"classes {names}", path=store.path, field="classes")
    test, train = store.split_indices(split), store.split_indices(train_split)
    for nm, rows in ((split, test), (train_split, train)):
        if not len(rows):
            raise InputError(f"the dataset has no boxes in split {nm!r}", path=store.path,
                             field="split")
    table, box = store.table, int(store.box)
    labels = table["class_id"].to_numpy(np.int64)
    tomo = table["tomogram"].to_numpy()
    bins = transfer_bins(box)
    transfer: dict[int, np.ndarray] = {}  # row -> T of its tomogram without the row
    for t in np.unique(tomo[np.concatenate([test, train])]):
        rows = np.flatnonzero(tomo == t)
        loo = leave_one_out_transfer(np.asarray(store.volumes[rows]),
                                     np.asarray(store.clean[rows]), bins)
        transfer.update(zip(rows.tolist(), loo, strict=True))
    # the noise power from the training boxes' residuals (their labels only)
    s_train = np.stack([_render_rows(templates, table, [r], box, [labels[r]])[0, 0]
                        for r in train])
    t_train = np.stack([transfer[r] for r in train])
    power = noise_power(np.asarray(store.volumes[train]), s_train, t_train)
    del s_train, t_train
    hyp = _render_rows(templates, table, test, box)
    t_test = np.stack([transfer[r] for r in test])
    x_test = np.asarray(store.volumes[test])
    scores = ske_scores(x_test, hyp, t_test, power)
    truth = labels[test]
    check = [_support_correlation(hyp[i, truth[i]], store.clean[r]) for i, r in enumerate(test)]
    del hyp
    out = {**_decisions(scores, truth, names, groups),
           "render_check": float(np.nanmedian(check)), "n_boxes": int(len(test))}
    if rotations > 0:
        poses = random_euler(np.random.default_rng(seed), int(rotations))
        unknown = pose_search_scores(x_test, templates, t_test, power, poses)
        out["pose_unknown"] = {**_decisions(unknown, truth, names, groups),
                               "rotations": int(rotations), "seed": int(seed)}
    return out


def _decisions(scores: np.ndarray, truth: np.ndarray, names: Sequence[str],
               groups: Sequence[str]) -> dict[str, Any]:
    """Metrics of the argmax over all classes, and accuracy within each true group."""
    metrics: ClassificationMetrics = metrics_from_labels(truth, scores.argmax(axis=1), names,
                                                         groups)
    within = {}
    g_arr = np.asarray(groups)
    for g in dict.fromkeys(groups):
        if not g:
            continue
        members = np.flatnonzero(g_arr == g)
        rows = np.flatnonzero(np.isin(truth, members))
        if len(rows):
            pick = members[scores[np.ix_(rows, members)].argmax(axis=1)]
            within[g] = {"accuracy": float(np.mean(pick == truth[rows])), "n": int(len(rows)),
                         "chance": 1.0 / len(members)}
    return {"metrics": metrics, "within_group": within}
