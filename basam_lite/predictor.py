"""Predictors that follow the model's input size and accept any common image format, for every
family: :func:`predictor_for` (``segment_anything``'s is
:class:`~basam_lite.encoders.sam1.BASAMPredictor`, public as ``basam_lite.BASAMPredictor``).

Image policy of :func:`to_rgb_uint8` (used by :class:`BASAMPredictor.set_image`):

- grayscale ``(H, W)`` or ``(H, W, 1)``: replicated to three channels;
- RGBA ``(H, W, 4)``: the alpha channel is dropped (no compositing);
- 16-bit integers: scaled to 8 bit (``x / 257``); booleans: 0/255;
- floats: taken as [0, 1] when their maximum is at most 1, else as [0, 255];
- anything else (other channel counts, NaN, values out of range) is refused with a ``ValueError``.

Prompt policy of :func:`check_prompt` (used by :class:`BASAMPredictor.predict`), in the pixel
coordinates of the image given to ``set_image`` (H rows, W columns): points are ``(N, 2)``
finite ``(x, y)`` in ``[0, W] x [0, H]`` with ``N`` labels each 0 (background) or 1
(foreground); a box is four finite numbers ``x0, y0, x1, y1`` with ``x0 <= x1``, ``y0 <= y1``,
inside the same bounds. Anything else is refused with a :class:`~basam_lite.errors.UserError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    from .encoders import Predictor


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any grayscale / RGB / RGBA image array as ``(H, W, 3)`` uint8 RGB (see module policy)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}"
        )
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 4:
        a = a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return np.round(a / 257.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError("image contains NaN or infinite values")
        top = 1.0 if a.max(initial=0.0) <= 1.0 else 255.0
        if a.min(initial=0.0) < 0 or a.max(initial=0.0) > 255:
            raise ValueError(
                f"float image values span [{a.min():.3g}, {a.max():.3g}]: "
                f"expected [0, 1] or [0, 255]"
            )
        return np.round(a * (255.0 / top)).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if a.min(initial=0) < 0 or a.max(initial=0) > 255:
            raise ValueError(
                f"integer image of dtype {a.dtype} spans [{a.min()}, {a.max()}]: convert it to "
                f"uint8 (0-255) or uint16 first"
            )
        return a.astype(np.uint8)
    raise ValueError(f"unsupported image dtype {a.dtype}: give uint8, uint16, bool or float")


def check_prompt(
    point_coords: np.ndarray | None,
    point_labels: np.ndarray | None,
    box: np.ndarray | None,
    image_hw: tuple[int, int],
) -> None:
    """Refuse a prompt that SAM would silently misread (policy in the module docstring).

    Args:
        point_coords: ``(N, 2)`` ``(x, y)`` pixels, or None.
        point_labels: ``(N,)`` of 0/1, or None (exactly when ``point_coords`` is None).
        box: ``(4,)`` or ``(1, 4)`` ``x0, y0, x1, y1`` pixels, or None.
        image_hw: (H, W) of the image the prompt refers to.
    """
    h, w = image_hw
    if (point_coords is None) != (point_labels is None):
        given, missing = ("point_coords", "point_labels")
        if point_coords is None:
            given, missing = missing, given
        raise UserError(f"{given} given without {missing}: pass both (labels 1 = object, 0 = not)")
    if point_coords is not None:
        coords = np.asarray(point_coords, dtype=float)
        labels = np.asarray(point_labels)
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise UserError(f"point_coords must be (N, 2) (x, y) pixels, got shape {coords.shape}")
        if labels.ndim != 1 or len(labels) != len(coords):
            raise UserError(
                f"{len(coords)} point(s) but point_labels of shape {labels.shape}: give one label "
                "(1 = object, 0 = not) per point"
            )
        if not np.isfinite(coords).all():
            raise UserError(f"point_coords contain NaN or infinite values: {coords.tolist()}")
        bad = sorted({v for v in labels.tolist() if v not in (0, 1)}, key=str)
        if bad:
            raise UserError(f"point labels must be 0 (background) or 1 (foreground), got {bad}")
        outside = (coords[:, 0] < 0) | (coords[:, 0] > w) | (coords[:, 1] < 0) | (coords[:, 1] > h)
        if outside.any():
            raise UserError(
                f"point {coords[outside][0].tolist()} (x, y) lies outside the {w}x{h} (WxH) "
                "image: coordinates are (x, y) pixels of the image given to set_image"
            )
    if box is not None:
        b = np.asarray(box, dtype=float)
        if b.shape not in ((4,), (1, 4)):
            raise UserError(
                f"box must be four numbers x0, y0, x1, y1 (shape (4,) or (1, 4)), got shape "
                f"{b.shape}: {b.tolist()}"
            )
        x0, y0, x1, y1 = b.reshape(4).tolist()
        if not np.isfinite(b).all():
            raise UserError(f"box {b.reshape(4).tolist()} contains NaN or infinite values")
        if x1 < x0 or y1 < y0:
            raise UserError(
                f"box {[x0, y0, x1, y1]} has x1 < x0 or y1 < y0: give x0, y0, x1, y1 (top-left "
                "corner, then bottom-right), not x, y, width, height"
            )
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise UserError(
                f"box {[x0, y0, x1, y1]} reaches outside the {w}x{h} (WxH) image: clip it to "
                f"[0, {w}] x [0, {h}]"
            )


def predictor_for(model: object) -> Predictor:
    """A predictor on ``model`` (any family) that follows its input size: ``set_image`` then
    ``predict(point_coords=, point_labels=, box=)``, prompts checked by :func:`check_prompt`."""
    from .encoders import adapter_for

    return adapter_for(model).make_predictor()
