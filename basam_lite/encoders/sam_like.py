"""What SAM 1 and MobileSAM share: ``mobile_sam`` keeps ``segment_anything``'s ``Sam``,
``SamPredictor``, ``PromptEncoder`` and ``MaskDecoder``, so one predictor behaviour, one mask
post-processing and one decoding serve both adapters.

- :class:`SizedPredictorMixin`: a ``SamPredictor`` that follows the model's current input size
  (square or not), converts images and checks prompts (one-line :class:`UserError`).
- :func:`sized_preprocess`: SAM's normalise-and-pad at any (height, width) input (the Hugging
  Face adapter uses it too);
- :func:`sized_postprocess_masks`: SAM's mask post-processing at any (height, width) input.
- :class:`SamDecoding`: the adapters' ``embed_prompts`` / ``image_rows`` / ``decode_masks``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from ..predictor import check_prompt, to_rgb_uint8
from . import sam_decoder
from .base import Grid


def sized_preprocess(x: Tensor, mean: Tensor, std: Tensor, input_hw: Grid, hint: str) -> Tensor:
    """``[B, 3, h, w]`` (or ``[3, h, w]``) images in 0-255 that fit inside ``input_hw`` ->
    ``(x - mean) / std`` (``mean``, ``std``: ``[3, 1, 1]``) padded with zeros at the bottom and
    right to ``input_hw``. A ValueError in one line, ending with ``hint``, for an image that
    does not fit."""
    h, w = input_hw
    if x.shape[-2] > h or x.shape[-1] > w:
        raise ValueError(
            f"image of {x.shape[-2]}x{x.shape[-1]} does not fit the model's input size "
            f"{h}x{w}: resize it first{hint}"
        )
    x = (x - mean) / std
    return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))


def sized_postprocess_masks(
    masks: Tensor, input_hw: Grid, input_size: tuple[int, ...], original_size: tuple[int, ...]
) -> Tensor:
    """Low-res logits ``[B, K, h, w]`` -> ``[B, K, H0, W0]``: upsample to the padded input
    ``input_hw``, crop the resized image's ``input_size``, then resize to ``original_size``."""
    masks = F.interpolate(masks, tuple(input_hw), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)


class SizedPredictorMixin:
    """Put before a family's ``SamPredictor`` in the bases. The subclass says how to read the
    model's current input size (:meth:`model_input_hw`) and which resize fits it
    (:meth:`fresh_transform`); the transform is rebuilt on every ``set_image``, so a predictor
    made before :func:`basam_lite.set_input_size` stays correct."""

    follows_input_size = True
    model: nn.Module
    transform: Any

    def model_input_hw(self) -> Grid:
        raise NotImplementedError

    def fresh_transform(self) -> Any:
        raise NotImplementedError

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        if image_format not in ("RGB", "BGR"):
            raise UserError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        rgb = to_rgb_uint8(image)
        self.transform = self.fresh_transform()
        super().set_image(rgb, image_format)  # type: ignore[misc]

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The family's ``SamPredictor.predict`` after :func:`check_prompt` (UserError on a bad
        prompt)."""
        if not self.is_image_set:  # type: ignore[attr-defined]
            raise UserError("no image set: call predictor.set_image(image) before predict")
        check_prompt(point_coords, point_labels, box, tuple(self.original_size))  # type: ignore[attr-defined]
        return super().predict(  # type: ignore[misc]
            point_coords, point_labels, box, mask_input, multimask_output, return_logits
        )

    @torch.no_grad()
    def set_torch_image(
        self, transformed_image: Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Features of a ``[1, 3, h, w]`` image already resized to fit the input (one side
        equal to it)."""
        h, w = self.model_input_hw()
        shape = tuple(transformed_image.shape)
        fits = len(shape) == 4 and shape[1] == 3 and shape[2] <= h and shape[3] <= w
        if not fits or (shape[2] != h and shape[3] != w):
            raise ValueError(
                f"set_torch_image expects a 1x3xHxW image resized to fit {h}x{w} (one side equal), "
                f"got {shape}: use set_image, or transform it with predictor.transform"
            )
        self.reset_image()  # type: ignore[attr-defined]
        self.original_size = tuple(original_image_size)
        self.input_size = tuple(shape[-2:])
        self.features = self.model.image_encoder(self.model.preprocess(transformed_image))
        self.is_image_set = True


class SamDecoding:
    """Decoding for adapters whose model holds ``segment_anything``'s prompt encoder and mask
    decoder (see :mod:`.sam_decoder`). Put before ``EncoderAdapter`` in the bases."""

    model: nn.Module | None

    def embed_prompts(
        self, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        assert self.model is not None, "decoding needs the whole Sam"
        return sam_decoder.embed_prompts(self.model, points, boxes)

    def image_rows(self, features: Tensor, index: Tensor) -> Tensor:
        return features[index]

    def decode_masks(
        self, features: Tensor, sparse: Tensor, dense: Tensor, multimask: bool = False
    ) -> tuple[Tensor, Tensor]:
        assert self.model is not None, "decoding needs the whole Sam"
        return sam_decoder.decode_masks(self.model, features, sparse, dense, multimask)
