"""Class activation maps: where in a subtomogram a classifier finds evidence for a class.

Two methods, chosen from the model's structure (``model.has_gap_head``):

``"cam"`` (Zhou et al. 2016; the paper's Eq. 1)
    For a net that ends in global average pooling and one linear layer,
    ``CAM_c(z, y, x) = sum_k w_k^c f_k(z, y, x)`` with ``f = model.forward_features(x)``
    and ``w = model.get_classifier().weight``. Its spatial mean is exactly
    ``logit_c - bias_c``, so the map is a spatial decomposition of the class score.
    The map is signed; negative values are evidence against the class.
``"grad-cam"`` (Selvaraju et al. 2017)
    For nets without that structure (``shrec_cnn``: flatten + fully connected layers),
    ``ReLU(sum_k alpha_k^c f_k)`` with ``alpha_k^c`` the spatial mean of
    ``d logit_c / d f_k`` over the last convolutional feature map ``f``. The gradient is
    taken with :func:`torch.autograd.grad` on a detached copy of ``f`` through
    ``forward_head`` only: no hooks are registered and no parameter ``.grad`` is touched.

Both run the model in eval mode and restore its previous mode afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tomoclass.errors import InputError

METHODS = ("cam", "grad-cam")


@dataclass(frozen=True)
class CamResult:
    """Class activation maps of a batch of subtomograms and the predictions behind them.

    Attributes
    ----------
    cam
        float32 (N, D, H, W), (z, y, x): the map upsampled trilinearly to the input size
        (``align_corners=False``, so each feature voxel covers its receptive block).
    cam_lowres
        float32 (N, d, h, w): the map at the feature-map resolution, before upsampling.
    class_index
        int64 (N,): the class each map is for (the predicted one unless requested).
    method
        ``"cam"`` (Eq. 1, GAP + linear models) or ``"grad-cam"``.
    logits, probabilities
        float32 (N, C): the model's outputs and their softmax.
    """

    cam: np.ndarray
    cam_lowres: np.ndarray
    class_index: np.ndarray
    method: str
    logits: np.ndarray
    probabilities: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        """int64 (N,): the arg-max class of each subtomogram."""
        return self.probabilities.argmax(axis=1)

    @property
    def class_probability(self) -> np.ndarray:
        """float32 (N,): the probability of ``class_index`` for each subtomogram."""
        return self.probabilities[np.arange(len(self.class_index)), self.class_index]


def cam_method(model: nn.Module) -> str:
    """The method :func:`class_activation_maps` uses for ``model``: "cam" or "grad-cam"."""
    return "cam" if getattr(model, "has_gap_head", False) else "grad-cam"


def _as_batch(x: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim == 4:
        t = t[:, None]
    if t.ndim != 5 or t.shape[1] != 1:
        raise InputError(
            f"subtomograms must be (N, D, H, W) or (N, 1, D, H, W), got shape {tuple(t.shape)}"
        )
    return t.to(device=device, dtype=torch.float32)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def class_activation_maps(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    class_index: int | Sequence[int] | np.ndarray | None = None,
    *,
    method: str | None = None,
    batch_size: int = 16,
) -> CamResult:
    """Compute class activation maps for a batch of subtomograms.

    Parameters
    ----------
    model
        A tomoclass model (``forward_features``, ``forward_head``, ``get_classifier``,
        ``has_gap_head``). Its train/eval mode is restored on return.
    x
        Subtomograms (N, D, H, W) or (N, 1, D, H, W), (z, y, x), normalised as for training.
    class_index
        Class to explain: None for each subtomogram's predicted class, one int for all,
        or (N,) ints.
    method
        "cam" or "grad-cam"; default from :func:`cam_method`. "cam" needs a GAP head.
    batch_size
        Subtomograms per forward pass.

    Returns
    -------
    CamResult
        Maps at input and feature resolution, the class each is for, the method, and the
        model's logits and probabilities.

    Raises
    ------
    InputError
        Bad shapes, class indices out of range, or "cam" requested for a non-GAP model.
    """
    method = cam_method(model) if method is None else method
    if method not in METHODS:
        raise InputError(f"unknown CAM method {method!r}; expected one of {METHODS}")
    if method == "cam" and not getattr(model, "has_gap_head", False):
        raise InputError(
            f"model {getattr(model, 'model_name', type(model).__name__)!r} has no GAP + "
            "linear head; use method='grad-cam'"
        )
    device = _model_device(model)
    batch = _as_batch(x, device)
    n = batch.shape[0]
    classifier = model.get_classifier()
    num_classes = classifier.out_features
    if class_index is not None:
        req = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (n,)).copy()
        if req.size and (req.min() < 0 or req.max() >= num_classes):
            raise InputError(f"class_index must lie in [0, {num_classes}), got {req.tolist()}")
    else:
        req = None

    was_training = model.training
    model.eval()
    lows, ups, cls_all, logits_all = [], [], [], []
    try:
        for start in range(0, n, max(1, batch_size)):
            xb = batch[start : start + batch_size]
            with torch.no_grad():
                feats = model.forward_features(xb)
                logits = model.forward_head(feats)
            if req is None:
                cls = logits.argmax(dim=1)
            else:
                cls = torch.as_tensor(req[start : start + batch_size], device=device)
            if method == "cam":
                with torch.no_grad():
                    w = classifier.weight[cls].to(feats.dtype)  # (n, K)
                    low = torch.einsum("nk,nkdhw->ndhw", w, feats)
            else:
                low = _grad_cam(model, feats, cls)
            up = F.interpolate(
                low[:, None], size=tuple(xb.shape[2:]), mode="trilinear", align_corners=False
            )[:, 0]
            lows.append(low.float().cpu().numpy())
            ups.append(up.float().cpu().numpy())
            cls_all.append(cls.cpu().numpy())
            logits_all.append(logits.float().cpu().numpy())
    finally:
        model.train(was_training)
    logits_np = np.concatenate(logits_all).astype(np.float32)
    probs = torch.softmax(torch.from_numpy(logits_np), dim=1).numpy()
    return CamResult(
        cam=np.concatenate(ups).astype(np.float32),
        cam_lowres=np.concatenate(lows).astype(np.float32),
        class_index=np.concatenate(cls_all).astype(np.int64),
        method=method,
        logits=logits_np,
        probabilities=probs.astype(np.float32),
    )


def _grad_cam(model: nn.Module, feats: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """Grad-CAM on the feature map ``feats`` (n, K, d, h, w) for classes ``cls`` (n,)."""
    f = feats.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model.forward_head(f)
        score = logits.gather(1, cls[:, None]).sum()
        (grad,) = torch.autograd.grad(score, f)
    alpha = grad.mean(dim=(2, 3, 4))  # (n, K)
    return torch.relu(torch.einsum("nk,nkdhw->ndhw", alpha, f.detach()))
