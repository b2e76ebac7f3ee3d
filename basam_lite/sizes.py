"""Input sizes as the user gives them: an int or (height, width), checked against a family's
size rule (a multiple of its patch size) with one clear line for anything else."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .errors import UserError

Size = int | Sequence[int]


def _pixels(value: object, size: object) -> int:
    """One side in pixels: a Python or numpy integer; floats and bools are refused."""
    if isinstance(value, (bool, np.bool_)):
        raise UserError(f"input size {size!r} contains a bool: give whole pixels as integers")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        example = f" such as {round(value)}" if np.isfinite(value) else ""
        raise UserError(
            f"input size {size!r} contains the float {value!r}: give whole pixels as integers"
            f"{example}, not floats (int(...) or round(...) first)"
        )
    raise UserError(f"size must be an int or (height, width) of ints, got {size!r}")


def parse_size(size: Size, patch: int = 16) -> tuple[int, int]:
    """``size`` (an int or (height, width); Python or numpy integers) as a checked pair of
    multiples of ``patch``. Floats, bools and anything else are refused with a UserError."""
    if isinstance(size, np.ndarray) and size.ndim == 0:
        size = size.item()
    if isinstance(size, (numbers.Number, np.bool_)):
        side = _pixels(size, size)
        hw: tuple[int, ...] = (side, side)
    elif isinstance(size, (str, bytes)) or not isinstance(size, (Sequence, np.ndarray)):
        raise UserError(f"size must be an int or (height, width) of ints, got {size!r}")
    else:
        if len(size) != 2:
            raise UserError(f"size must be an int or (height, width) of ints, got {size!r}")
        hw = tuple(_pixels(s, size) for s in size)
    for s in hw:
        if s < patch:
            raise UserError(f"input size {s} is smaller than one {patch} px patch")
        if s % patch:
            lo, hi = s // patch * patch, (s // patch + 1) * patch
            raise UserError(
                f"input size {s} is not a multiple of the patch size {patch}: use {lo} or {hi} "
                f"(basam_lite refuses to pad or crop silently, since that would shift prompts)"
            )
    return int(hw[0]), int(hw[1])


def fit_shape(old_hw: tuple[int, int], target_hw: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) an image of ``old_hw`` takes when resized to fit inside ``target_hw``
    keeping its aspect ratio (rounded half up; SAM's ``ResizeLongestSide`` for a square
    target)."""
    (oldh, oldw), (th, tw) = old_hw, target_hw
    scale = min(th / oldh, tw / oldw)
    return min(th, int(oldh * scale + 0.5)), min(tw, int(oldw * scale + 0.5))


def fit_image(image: np.ndarray, target_hw: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 ``image`` resized (bilinear, PIL) to :func:`fit_shape`."""
    h, w = fit_shape(image.shape[:2], target_hw)
    return np.array(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
