"""A ``SAM2ImagePredictor`` that follows the model's input size and checks prompts.

``SAM2ImagePredictor`` fixes two things at construction: ``SAM2Transforms(resolution=
model.image_size)`` (resize to a square, normalise; prompts scaled by the side) and
``_bb_feat_sizes = [(256, 256), (128, 128), (64, 64)]``, the stride-4, -8 and -16 feature
grids at 1024 px, used to unflatten the features. :class:`Sam2Predictor` rebuilds both from the
model's current side (:func:`~basam_lite.encoders.sam2_geometry.set_sam2_input_size`) at every
``set_image``, so a predictor made before a change of size stays correct. Images go through
:func:`basam_lite.predictor.to_rgb_uint8`; prompts through
:func:`basam_lite.predictor.check_prompt` (one-line errors), in the pixels of the image given.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator

import numpy as np

from ..errors import UserError
from ..predictor import check_prompt, to_rgb_uint8
from .sam2_geometry import sam2_input_size
from .sam2_models import import_sam2

_predictor = import_sam2("sam2.sam2_image_predictor")
_transforms = import_sam2("sam2.utils.transforms")


def feature_sizes(side: int) -> list[tuple[int, int]]:
    """The stride-4, -8 and -16 feature grids at input ``side`` (SAM 2's ``_bb_feat_sizes``)."""
    return [(side // s, side // s) for s in (4, 8, 16)]


@functools.lru_cache(maxsize=16)
def sam2_transforms(
    side: int,
    mask_threshold: float = 0.0,
    max_hole_area: float = 0.0,
    max_sprinkle_area: float = 0.0,
) -> object:
    """SAM 2's own ``SAM2Transforms`` for a side (cached: it scripts its resize and normalise
    with ``torch.jit`` when built, which torch 2.14 flags as deprecated; it holds no state)."""
    with _quiet_jit():
        return _transforms.SAM2Transforms(
            resolution=side,
            mask_threshold=mask_threshold,
            max_hole_area=max_hole_area,
            max_sprinkle_area=max_sprinkle_area,
        )


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence torch's ``torch.jit.script`` deprecation warning raised inside sam2's own
    ``SAM2Transforms`` (not this project's code; nothing a user can act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        yield


def follow_size(predictor: object) -> None:
    """Rebuild a ``SAM2ImagePredictor``'s transforms and feature sizes for its model's side."""
    side = sam2_input_size(predictor.model)  # type: ignore[attr-defined]
    old = predictor._transforms  # type: ignore[attr-defined]
    if old.resolution != side:
        predictor._transforms = sam2_transforms(  # type: ignore[attr-defined]
            side, old.mask_threshold, old.max_hole_area, old.max_sprinkle_area
        )
    predictor._bb_feat_sizes = feature_sizes(side)  # type: ignore[attr-defined]


def refresh_sam2_predictor(predictor: object) -> None:
    """Bring any ``SAM2ImagePredictor`` in line with its model's side; drops the set image."""
    follow_size(predictor)
    predictor.reset_predictor()  # type: ignore[attr-defined]


class Sam2Predictor(_predictor.SAM2ImagePredictor):
    """``SAM2ImagePredictor`` for any input size the model is set to."""

    follows_input_size = True

    def __init__(self, sam_model: object, **kwargs: object) -> None:
        with _quiet_jit():
            super().__init__(sam_model, **kwargs)

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:  # type: ignore[override]
        """Embed an ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` image (any common dtype), RGB or
        BGR."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        follow_size(self)
        rgb = to_rgb_uint8(image)
        if image_format == "BGR":
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        super().set_image(rgb)
        self._side = sam2_input_size(self.model)

    def reset_image(self) -> None:
        """Drop the set image (SAM's predictor interface name)."""
        self.reset_predictor()

    def predict(  # type: ignore[override]
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``SAM2ImagePredictor.predict`` (pixel prompts) after :func:`check_prompt`."""
        if not self._is_image_set:
            raise UserError("no image set: call predictor.set_image(image) before predict")
        side = sam2_input_size(self.model)
        if getattr(self, "_side", side) != side:
            raise UserError(
                f"the model moved to {side} px after set_image (at {self._side} px): "
                "call set_image again"
            )
        check_prompt(point_coords, point_labels, box, tuple(self._orig_hw[0]))
        if mask_input is not None:
            low = 4 * feature_sizes(side)[2][0]
            shape = np.asarray(mask_input).shape
            if shape[-2:] != (low, low):
                raise UserError(
                    f"mask_input of shape {shape} does not fit this size: the model at {side} px "
                    f"takes {low}x{low} low-resolution logits"
                )
        return super().predict(
            point_coords, point_labels, box, mask_input, multimask_output, return_logits
        )
