"""A ``SamPredictor`` that follows the model's input size and accepts any common image format.

Image policy of :func:`to_rgb_uint8` (used by :class:`BASAMPredictor.set_image`):

- grayscale ``(H, W)`` or ``(H, W, 1)``: replicated to three channels;
- RGBA ``(H, W, 4)``: the alpha channel is dropped (no compositing);
- 16-bit integers: scaled to 8 bit (``x / 257``); booleans: 0/255;
- floats: taken as [0, 1] when their maximum is at most 1, else as [0, 255];
- anything else (other channel counts, NaN, values out of range) is refused with a ``ValueError``.
"""

from __future__ import annotations

import numpy as np
import torch
from segment_anything import SamPredictor

from .resolution import input_size, transform_for


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


class BASAMPredictor(SamPredictor):
    """``SamPredictor`` that follows ``set_input_size`` (square or not) and converts images.

    Its transform is rebuilt from the model's current input size on every ``set_image``, so a
    predictor made before :func:`basam_lite.set_input_size` stays correct.
    """

    follows_input_size = True

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        rgb = to_rgb_uint8(image)
        self.transform = transform_for(self.model)
        super().set_image(rgb, image_format)

    @torch.no_grad()
    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        h, w = input_size(self.model)
        shape = tuple(transformed_image.shape)
        fits = len(shape) == 4 and shape[1] == 3 and shape[2] <= h and shape[3] <= w
        if not fits or (shape[2] != h and shape[3] != w):
            raise ValueError(
                f"set_torch_image expects a 1x3xHxW image resized to fit {h}x{w} (one side equal), "
                f"got {shape}: use set_image, or transform it with predictor.transform"
            )
        self.reset_image()
        self.original_size = tuple(original_image_size)
        self.input_size = tuple(shape[-2:])
        self.features = self.model.image_encoder(self.model.preprocess(transformed_image))
        self.is_image_set = True
