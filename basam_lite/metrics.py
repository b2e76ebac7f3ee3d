"""Per-image segmentation metrics on probability maps at the ground truth's resolution.

``segmentation_metrics`` gives one row of ``METRIC_COLUMNS`` per image:

- ``iou``, ``dice``: of the binary mask ``prob > threshold``. When the ground truth and the
  prediction are both empty they are 1.0 (nothing to find, nothing found); when exactly one is
  empty they are 0.0.
- ``mae``: mean ``|prob - gt|`` over pixels, on the probabilities (no threshold).
- ``s_measure``: structure measure (Fan et al. 2017), alpha = 0.5.
- ``e_measure``: the *mean* E-measure (Fan et al. 2018), i.e. the E-measure of the map binarised
  at each of 256 thresholds, averaged over thresholds ("E_m^mean" / "mean E_phi" in SOD/COD
  tables), not the adaptive or the max variant.
- ``max_f``, ``mean_f``: F-beta with beta^2 = 0.3 (precision weighted more than recall, the
  salient-object convention) at each of 256 thresholds; the maximum and the mean over
  thresholds.
- ``weighted_f``: weighted F-measure (Margolin et al. 2014), beta^2 = 1.

S, E, F and weighted F come from ``py_sod_metrics``, fed one image at a time (fresh objects per
call, so the result equals the library's ``get_results()`` after a single ``step``). For an
empty ground truth the library's conventions hold: F and weighted F are 0 whatever the
prediction, S is 1 - mean(prob).

Two ways to feed the library: by default the probabilities themselves (``normalize=False``), so
the scores describe the map the model produced. ``toolbox_normalize=True`` instead reproduces
the public SOD evaluation toolboxes, which read predictions saved as 8-bit PNGs and min-max
stretch each map to [0, 1] (MATLAB's ``mapminmax``); use it to compare with published tables.
The two agree when the map already spans [0, 1] on the 8-bit grid.

``legacy_threshold_metrics`` reproduces the official BA-SAM code's protocol, for comparison only.

``grid_mask_iou`` is not a model score: it is how well a mask can be drawn at all when it is
known only cell by cell (a ViT's token grid), the ceiling of a decoder that gets every token
right and nothing finer.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

METRIC_COLUMNS = ("iou", "dice", "mae", "s_measure", "e_measure", "max_f", "mean_f", "weighted_f")
"""Keys of ``segmentation_metrics``, in table order."""

SOD_COLUMNS = ("s_measure", "e_measure", "max_f", "mean_f", "weighted_f")
"""The columns from ``py_sod_metrics``: most of a large image's scoring time. ``sod=False``
leaves them NaN (a study that reads IoU only)."""

LEGACY_COLUMNS = ("legacy_iou", "legacy_dice", "legacy_mae")
"""Keys of ``legacy_threshold_metrics``."""

LEGACY_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _to_numpy(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; no hard dependency on torch here
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x)
    while arr.ndim > 2 and arr.shape[0] == 1:  # SAM's (1, 1, H, W) outputs
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (H, W) map, got shape {arr.shape}")
    return arr


def _check_pair(pred: Any, gt: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(pred as float64, gt as bool), after checking shapes, finiteness and gt values."""
    p = _to_numpy(pred, what).astype(np.float64)
    g = _to_numpy(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(
            f"{what} has shape {p.shape} but the ground truth has {g.shape}: resize the "
            "prediction to the ground truth's size first (interpolate the probabilities or "
            "logits, then threshold), so every metric is measured at the ground truth's resolution"
        )
    if not np.isfinite(p).all():
        bad = "NaN" if np.isnan(p).any() else "infinite"
        raise ValueError(f"{what} contains {bad} values ({(~np.isfinite(p)).sum()} pixels)")
    if g.dtype != np.bool_:
        if np.issubdtype(g.dtype, np.floating) and not np.isin(g, (0.0, 1.0)).all():
            raise ValueError("a float ground truth must hold only 0 and 1; binarise it first")
        g = g != 0
    return p, g


def mask_iou(pred: Any, gt: Any) -> float:
    """IoU of two boolean masks of the same shape (numpy arrays or torch tensors, non-zero =
    object): ``|pred & gt| / |pred | gt|``, and 1.0 when both are empty (nothing to find, nothing
    found). The one IoU of the library: every table and figure computes it with this."""
    a = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred).astype(bool)
    b = np.asarray(gt.detach().cpu() if hasattr(gt, "detach") else gt).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 1.0


def _binary_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """IoU, Dice and MAE of two bool masks; empty-vs-empty scores 1.0 (see module docstring)."""
    inter = int(np.count_nonzero(pred & gt))
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(gt))
    iou = mask_iou(pred, gt)
    dice = 2.0 * inter / total if total else 1.0
    mae = float(np.count_nonzero(pred ^ gt)) / pred.size
    return iou, dice, mae


def segmentation_metrics(
    prob: Any,
    gt: Any,
    threshold: float = 0.5,
    *,
    toolbox_normalize: bool = False,
    sod: bool = True,
) -> dict[str, float]:
    """All ``METRIC_COLUMNS`` for one image (definitions and conventions in the module docstring).

    Args:
        prob: (H, W) probabilities in [0, 1] (numpy array or torch tensor; leading singleton
            dimensions such as SAM's (1, 1, H, W) are dropped). Not logits.
        gt: (H, W) ground truth, bool (or integers / 0-1 floats, non-zero = object).
        threshold: binarisation threshold of ``prob`` for IoU and Dice.
        toolbox_normalize: score S/E/F/weighted F and MAE the way the public SOD toolboxes
            do (8-bit quantisation and per-map min-max stretch).
        sod: compute ``SOD_COLUMNS``; False leaves them NaN (IoU, Dice and MAE only; the
            S/E/F measures were about 40% of a 1024 px sweep row's time).

    Raises:
        ValueError: shapes differ, NaN/inf in ``prob``, or ``prob`` outside [0, 1].
    """
    from py_sod_metrics import MAE, Emeasure, Fmeasure, Smeasure, WeightedFmeasure

    p, g = _check_pair(prob, gt, "prob")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(
            f"prob must hold probabilities in [0, 1], got values in [{p.min():.3g}, "
            f"{p.max():.3g}]; apply a sigmoid to logits first"
        )
    iou, dice, _ = _binary_scores(p > threshold, g)
    if not sod:
        if toolbox_normalize:
            raise ValueError("toolbox_normalize applies to the SOD columns: leave sod=True")
        return {
            "iou": float(iou),
            "dice": float(dice),
            "mae": float(np.abs(p - g).mean()),
            **dict.fromkeys(SOD_COLUMNS, float("nan")),
        }

    if toolbox_normalize:
        pred_in: np.ndarray = np.rint(p * 255.0).astype(np.uint8)
        gt_in: np.ndarray = g.astype(np.uint8) * 255
    else:
        pred_in, gt_in = p, g
    normalize = toolbox_normalize

    sm = Smeasure()
    em = Emeasure()
    with warnings.catch_warnings():  # Fmeasure announces its future replacement on every init
        warnings.filterwarnings("ignore", message=".*FmeasureV2.*")
        fm = Fmeasure(beta=0.3)
    wfm = WeightedFmeasure()
    metrics: list[Any] = [sm, em, fm, wfm]
    if toolbox_normalize:
        metrics.append(MAE())
    for metric in metrics:
        metric.step(pred_in, gt_in, normalize=normalize)
    f_curve = np.asarray(fm.get_results()["fm"]["curve"], dtype=np.float64)
    mae = (
        float(metrics[-1].get_results()["mae"])
        if toolbox_normalize
        else float(np.abs(p - g).mean())
    )
    return {
        "iou": float(iou),
        "dice": float(dice),
        "mae": mae,
        "s_measure": float(sm.get_results()["sm"]),
        "e_measure": float(np.mean(em.get_results()["em"]["curve"])),
        "max_f": float(f_curve.max()),
        "mean_f": float(f_curve.mean()),
        "weighted_f": float(wfm.get_results()["wfm"]),
    }


def legacy_threshold_metrics(
    logits: Any, gt: Any, thresholds: Sequence[float] = LEGACY_THRESHOLDS
) -> dict[str, float]:
    """The official BA-SAM code's protocol: binarise the raw LOGITS at each threshold, average.

    For each t in ``thresholds`` the mask ``logits > t`` is scored by binary IoU, Dice and MAE
    (empty-vs-empty scores 1.0, as in ``segmentation_metrics``); the three are averaged over
    thresholds and returned as ``legacy_iou``, ``legacy_dice``, ``legacy_mae``.

    Kept only to compare with numbers produced by that code. It is questionable: the thresholds
    0.1..0.9 read like probabilities but are applied to logits, where they mean probabilities of
    0.52..0.71, so the "sweep" is a narrow band just above 0.5 rather than a spread over the
    probability range; and its MAE is that of binary masks, not of the predicted probabilities.
    """
    x, g = _check_pair(logits, gt, "logits")
    if len(thresholds) == 0:
        raise ValueError("thresholds must not be empty")
    scores = np.array([_binary_scores(x > t, g) for t in thresholds])
    iou, dice, mae = scores.mean(axis=0)
    return {"legacy_iou": float(iou), "legacy_dice": float(dice), "legacy_mae": float(mae)}


def _bilinear_weights(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix of 1-D bilinear upsampling with half-pixel centres (PyTorch's
    ``align_corners=False``): output pixel x samples input coordinate (x + 1/2) n_in / n_out - 1/2,
    clamped at the edges."""
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), i0), 1.0 - frac)
    np.add.at(weights, (np.arange(n_out), i1), frac)
    return weights


def grid_mask_iou(mask: Any, cell: int) -> float:
    r"""IoU of an (H, W) boolean ``mask`` with itself redrawn from a grid of ``cell`` px cells.

    Each cell keeps only its coverage :math:`c` (the mask's share of its pixels); the map
    :math:`c - 1/2` is upsampled bilinearly to (H, W), as SAM upsamples its low-res logits, and
    thresholded at 0:

    .. math:: \hat m = \operatorname{bilinear}\big(\operatorname{avgpool}_{cell}(m) - 1/2\big) > 0

    With ``cell`` = the patch size this is the IoU a SAM would reach if its mask were right at
    every token and knew nothing finer: 16 px cells lose most of a stroke one token wide. An
    empty mask scores 1.0 (as in :func:`segmentation_metrics`).
    """
    m = _to_numpy(mask, "mask").astype(bool)
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) or cell < 1:
        raise ValueError(f"cell must be a positive integer number of pixels, got {cell!r}")
    h, w = m.shape
    if h % cell or w % cell:
        raise ValueError(
            f"cell {cell} px does not divide the mask's {h} x {w} px: crop or pad the mask to a "
            f"multiple of {cell}, as SAM pads its input to whole patches"
        )
    coverage = m.reshape(h // cell, cell, w // cell, cell).mean(axis=(1, 3))
    rows, cols = _bilinear_weights(h, h // cell), _bilinear_weights(w, w // cell)
    drawn = rows @ (coverage - 0.5) @ cols.T > 0
    return mask_iou(drawn, m)
