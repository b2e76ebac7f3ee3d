"""The two ways the sweep changes the input size: ``zoom`` (more pixels) and ``extent`` (more
canvas).

- ``zoom``: the image at input side S. Procedural scenes are rendered at S (the same scene with
  more pixels: more detail per object *and* more tokens); file images stay native and the
  predictor resizes them to S. Metrics are computed on the whole image.
- ``extent``: the image at the model's base size B, inside an S x S canvas
  (:mod:`basam_lite.datasets.extent`: a seeded mosaic of other images of the dataset above B, a
  window that keeps the target whole below it). The target's pixels do not change, only the
  number of tokens around it. Metrics are computed on the target's region (the ``iou``, ``dice``,
  ... columns), with the IoU over the whole canvas beside it (``canvas_iou``).

Each row records the axis, the token count of the input (``tokens``), the extent factor S / B
(``extent``; on the zoom axis the zoom factor S / B), the target object's area in tokens
(``target_tokens``: it grows as (S / B)^2 on the zoom axis and stays put on the extent axis) and
the token-grid ceiling of the scored region (``grid_iou``: :func:`basam_lite.metrics.grid_mask_iou`
of the ground truth with cells of one patch, the IoU a mask right at every token reaches).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .datasets import ProceduralScenes, Sample
from .datasets.extent import ExtentSample, ExtentView, TargetDoesNotFit
from .errors import UserError
from .metrics import (
    LEGACY_COLUMNS,
    METRIC_COLUMNS,
    grid_mask_iou,
    legacy_threshold_metrics,
    segmentation_metrics,
)

Axis = Literal["zoom", "extent"]
AXES: tuple[str, ...] = get_args(Axis)

AXIS_COLUMNS = ("axis", "tokens", "extent", "target_tokens", "grid_iou", "canvas_iou")
"""Columns every sweep row carries beside its metrics (see the module docstring)."""

__all__ = [
    "AXES",
    "AXIS_COLUMNS",
    "Axis",
    "AxisSampler",
    "axis_columns",
    "check_axis",
    "geometry_table",
    "scored",
]


def check_axis(axis: str) -> str:
    """``axis`` if it is one of :data:`AXES`, else a UserError naming them."""
    if axis not in AXES:
        raise UserError(f"unknown axis {axis!r}: choose {' or '.join(AXES)}")
    return axis


class AxisSampler:
    """Image ``i`` of a dataset for a run at input side ``size`` on one axis.

    ``sample(i, size, base)``: on ``zoom``, procedural scenes rendered at ``size`` and file
    images native (``base`` unused); on ``extent``, an :class:`ExtentSample` with the image at
    ``base`` inside a ``size`` canvas (one :class:`ExtentView` per base size, so models of
    different base sizes share the sampler). Raises :class:`TargetDoesNotFit` for a window that
    cannot hold the target.
    """

    def __init__(
        self, dataset: Sequence[Sample], axis: Axis = "zoom", seed: int = 0, patch: int = 16
    ) -> None:
        self.dataset = dataset
        self.axis = check_axis(axis)
        self.seed = int(seed)
        self.patch = int(patch)
        self._views: dict[int, ExtentView] = {}

    def name(self, index: int) -> str | None:
        """The image's name when it is known without loading it (procedural scenes), else None."""
        if isinstance(self.dataset, ProceduralScenes):
            return self.dataset.name(index)
        return None

    def view(self, base: int) -> ExtentView:
        if base not in self._views:
            self._views[base] = ExtentView(self.dataset, base, seed=self.seed, patch=self.patch)
        return self._views[base]

    def sample(self, index: int, size: int, base: int) -> Sample:
        if self.axis == "extent":
            return self.view(base).sample(index, size)
        if isinstance(self.dataset, ProceduralScenes):
            return self.dataset.sample(index, size=(size, size))
        return self.dataset[index]


def _region_of(sample: Sample) -> tuple[int, int, int, int]:
    if isinstance(sample, ExtentSample):
        return sample.region
    h, w = sample.hw
    return 0, 0, h, w


def scored(logits: torch.Tensor, sample: Sample, sod: bool = True) -> dict[str, float]:
    """Metrics of ``(H, W)`` logits on the sample's grid: every metric column on the target's
    region (the whole image for a plain sample), ``canvas_iou`` on the whole image; ``sod=False``
    leaves ``metrics.SOD_COLUMNS`` NaN."""
    t, lft, b, r = _region_of(sample)
    x = logits.numpy()
    prob = torch.sigmoid(logits).clamp(0, 1).double().numpy()
    gt = sample.mask
    out = {
        **segmentation_metrics(prob[t:b, lft:r], gt[t:b, lft:r], sod=sod),
        **legacy_threshold_metrics(x[t:b, lft:r], gt[t:b, lft:r]),
    }
    if (t, lft, b, r) == (0, 0, *sample.hw):
        out["canvas_iou"] = out["iou"]
    else:
        pred = prob > 0.5
        union = int((pred | gt).sum())
        out["canvas_iou"] = int((pred & gt).sum()) / union if union else 1.0
    return out


def _padded(mask: np.ndarray, patch: int) -> np.ndarray:
    h, w = mask.shape
    return np.pad(mask, ((0, -h % patch), (0, -w % patch)))


def _fit(mask: np.ndarray, size: int) -> np.ndarray:
    """``mask`` resized to fit ``size`` (its longest side), as the predictor resizes images."""
    h, w = mask.shape
    scale = size / max(h, w)
    new_hw = (max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)))
    grey = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(grey.resize(new_hw[::-1], Image.Resampling.BILINEAR)) > 127


def axis_columns(sample: Sample, axis: str, size: int, base: int, patch: int) -> dict[str, object]:
    """The axis columns of a row (all but ``canvas_iou``, which :func:`scored` gives).

    ``target_tokens`` and ``grid_iou`` are measured in the model's input frame: a file image
    on the zoom axis is first resized to fit ``size``, as the predictor resizes it."""
    t, lft, b, r = _region_of(sample)
    region_mask = sample.mask[t:b, lft:r]
    if not isinstance(sample, ExtentSample) and max(sample.hw) != size:
        region_mask = _fit(region_mask, size)
    target_px = float(region_mask.sum())
    return {
        "axis": axis,
        "tokens": (size // patch) ** 2,
        "extent": size / base,
        "target_tokens": target_px / patch**2,
        "grid_iou": grid_mask_iou(_padded(region_mask, patch), patch),
    }


def nan_scores() -> dict[str, float]:
    """Every metric column NaN (a row that did not run)."""
    return dict.fromkeys((*METRIC_COLUMNS, *LEGACY_COLUMNS, "canvas_iou"), float("nan"))


def geometry_table(
    dataset: Sequence[Sample], index: int, base: int, sizes: Sequence[int], patch: int = 16
) -> pd.DataFrame:
    """What each axis does to image ``index`` at each input side: one row per (axis, side) with
    the token count, the factor S / B, the target's area in tokens and its token-grid ceiling
    (no model involved). Windows that cannot hold the target are left out."""
    rows = []
    for axis in AXES:
        sampler = AxisSampler(dataset, axis, patch=patch)  # type: ignore[arg-type]
        for size in sizes:
            try:
                sample = sampler.sample(index, size, base)
            except TargetDoesNotFit:
                continue
            rows.append({"side": size, **axis_columns(sample, axis, size, base, patch)})
    return pd.DataFrame(rows)
