r"""The Hugging Face family: ``transformers``' ``SamModel`` (SAM 1 ViT-B/L/H as HF stores it).

``SamVisionEncoder``: a 16 px patch embedding (``SamPatchEmbeddings``, which refuses any size but
``config.image_size``), an absolute position embedding over the base grid, then layers of
windowed or global attention (``window_size == 0``: ``config.vision_config.global_attn_indexes``)
with SAM's decomposed rel-pos terms (HF's ``get_rel_pos`` interpolates the tables linearly, as
SAM). The patched modules:

- :class:`HFBASAMAttention` (``SamVisionAttention``, the eager class and the parent of the SDPA
  one): q, k, v and HF's own rel-pos terms, then
  :func:`~basam_lite.encoders.attend.basam_attend`; returns ``(out, None)`` as HF's layer expects;
- :class:`SizedSamVisionEncoder` (``SamVisionEncoder``): any square multiple of 16 px, the
  absolute position embedding resampled bicubically at every forward (the parameter is never
  modified), left out when the config says ``use_abs_pos=False``; HF's ``output_hidden_states``
  recording is kept;
- :class:`SizedSamModel` (``SamModel``, away from the base size): the prompt encoder's
  ``image_embedding_size`` and ``input_image_size`` follow the size and the mask decoder's
  image-wide positional embedding reads the prompt encoder's grid instead of the config's;
  its ``save_pretrained`` writes ``SamModel`` as the architecture;
- :class:`HFSamPredictor`: SAM's predictor interface on a ``SamModel`` and a ``SamProcessor``
  whose resize, padding, prompt rescaling and ``post_process_masks`` follow the input size
  (:func:`processor_for_size`).

Sizes: square sides that are multiples of 16 px. HF's processor resizes the longest side and
pads to a square, and its prompt encoder normalises points by one side, so a non-square size is
refused in one line. The config is never changed: ``save_pretrained`` / ``from_pretrained`` and
``state_dict`` round trips keep the checkpoint's own size.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import UserError
from ..predictor import check_prompt, to_rgb_uint8
from ..sizes import Size, parse_size
from .attend import basam_attend
from .base import AttentionBlock, EncoderAdapter, Grid, Predictor
from .hf_weights import require_transformers
from .sam_like import sized_preprocess
from .vit_like import PlainViTAdapter, add_abs_pos, interpolated_tables, rel_pos_position

require_transformers()

from transformers import SamImageProcessor, SamModel, SamProcessor  # noqa: E402
from transformers.models.sam.modeling_sam import (  # noqa: E402
    SamVisionAttention,
    SamVisionEncoder,
    SamVisionEncoderOutput,
)
from transformers.utils.generic import merge_with_config_defaults  # noqa: E402
from transformers.utils.output_capturing import capture_outputs  # noqa: E402

# ImageNet statistics in 0-255 (SamImageProcessor's defaults = segment_anything's pixel_mean/std).
_MEAN = torch.tensor([0.485, 0.456, 0.406]) * 255
_STD = torch.tensor([0.229, 0.224, 0.225]) * 255


class HFBASAMAttention(SamVisionAttention):
    """``SamVisionAttention`` (eager or SDPA) with BA-SAM: ``[B, rows, cols, C]`` in,
    ``(out, None)`` out, on :func:`~basam_lite.encoders.attend.basam_attend`."""

    def forward(self, hidden_states: Tensor, output_attentions: Any = None) -> tuple[Tensor, None]:
        b, rows, cols, _ = hidden_states.shape
        n = rows * cols
        heads = self.num_attention_heads
        qkv = self.qkv(hidden_states).reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        position = None
        if self.use_rel_pos:
            grid = (rows, cols)
            tables = interpolated_tables(self.rel_pos_h, self.rel_pos_w, grid, self.get_rel_pos)
            position = rel_pos_position(q, *tables, grid)
        out = basam_attend(self, q, k, v, (rows, cols), position=position, base_scale=self.scale)
        del qkv, q, k, v, position  # not needed by the projection (as in sam1.BASAMAttention)
        return self.proj(out.transpose(1, 2).reshape(b, rows, cols, -1)), None


def _patch_size(encoder: SamVisionEncoder) -> int:
    return int(encoder.patch_embed.projection.stride[0])


class SizedSamVisionEncoder(SamVisionEncoder):
    """``SamVisionEncoder`` at any input size that is a multiple of the patch size: the
    absolute position embedding resampled bicubically to the token grid (left out when the
    BA-SAM config says so). An encoder has this class while it is patched or resized."""

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: Tensor | None = None, **kwargs: Any) -> SamVisionEncoderOutput:
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        p = _patch_size(self)
        h, w = pixel_values.shape[-2:]
        if pixel_values.shape[1] != self.patch_embed.num_channels or h % p or w % p:
            raise ValueError(
                f"vision encoder input {tuple(pixel_values.shape)} needs "
                f"{self.patch_embed.num_channels} channels and sides that are multiples of {p}: "
                f"use basam_lite's HFSamPredictor or processor_for_size"
            )
        x = self.patch_embed.projection(pixel_values).permute(0, 2, 3, 1)  # [B, rows, cols, C]
        x = add_abs_pos(self, x)
        for layer in self.layers:
            x = layer(x)
        return SamVisionEncoderOutput(last_hidden_state=self.neck(x))


class SizedSamModel(SamModel):
    """``SamModel`` away from its base size: its mask decoder's image-wide positional embedding
    follows the prompt encoder's grid (HF reads the config's). ``save_pretrained`` writes
    ``SamModel`` as the architecture, so a saved model reloads as HF's own class."""

    def get_image_wide_positional_embeddings(self) -> Tensor:
        """``[1, C, rows, cols]``: HF's Fourier features of the token centres scaled to [0, 1],
        on the prompt encoder's current grid."""
        rows, cols = self.prompt_encoder.image_embedding_size
        pe = self.shared_image_embedding.positional_embedding
        y = (torch.arange(rows, device=pe.device, dtype=pe.dtype) + 0.5) / rows
        x = (torch.arange(cols, device=pe.device, dtype=pe.dtype) + 0.5) / cols
        grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # [rows, cols, (x, y)]
        return self.shared_image_embedding(grid).permute(2, 0, 1).unsqueeze(0)

    def save_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        self.__class__ = SamModel  # HF names the architecture after the class
        try:
            return SamModel.save_pretrained(self, *args, **kwargs)
        finally:
            self.__class__ = SizedSamModel


def _register_output_recording(*classes: type[nn.Module]) -> None:
    """HF records ``output_hidden_states`` / ``output_attentions`` through a registry keyed on
    the model's class name (filled in ``__init__``): give our swapped-in subclasses their
    parent's entry so that recording keeps working on a resized or patched model."""
    from transformers.utils import output_capturing

    registry = output_capturing._CAN_RECORD_REGISTRY
    for cls in classes:
        dict.__setitem__(registry, str(cls), cls._can_record_outputs)


_register_output_recording(SizedSamVisionEncoder, SizedSamModel)


def check_square(hw: Grid, what: str = "the Hugging Face SamModel") -> Grid:
    if hw[0] != hw[1]:
        raise UserError(
            f"{what} runs square sizes only (its processor resizes the longest side and pads "
            f"to a square), got {hw[0]}x{hw[1]}: use {max(hw)}"
        )
    return hw


def default_processor() -> SamProcessor:
    """HF's ``SamProcessor`` with its default image processor (ImageNet normalisation,
    longest side 1024 px, pad to 1024 x 1024): the one every released SAM checkpoint ships."""
    return SamProcessor(image_processor=SamImageProcessor())


def processor_for_size(processor: SamProcessor, size: Size) -> SamProcessor:
    """A copy of ``processor`` whose pre- and post-processing fit a square ``size``: images
    resized so the longest side is ``size`` and padded to ``size x size``; prompts rescaled into
    that frame; mask inputs and ``post_process_masks`` at the same size (low-res masks at a
    quarter of it)."""
    side = check_square(parse_size(size, 1), "the Hugging Face SamProcessor")[0]
    out = copy.deepcopy(processor)
    ip = out.image_processor
    ip.size = type(ip.size)(longest_edge=side)  # SizeDict in transformers 5
    ip.pad_size = type(ip.pad_size)(height=side, width=side)
    ip.mask_size = type(ip.mask_size)(longest_edge=side // 4)
    ip.mask_pad_size = type(ip.mask_pad_size)(height=side // 4, width=side // 4)
    out.target_size = side
    return out


class HFSamPredictor:
    """SAM's predictor interface (``set_image``, ``predict``, ``reset_image``) on a
    ``SamModel``, with HF's ``SamProcessor`` made to fit the model's input size at every
    ``set_image`` (so a predictor made before :func:`basam_lite.set_input_size` stays correct).

    Prompts are in pixels of the image given to ``set_image``; ``predict`` returns
    ``(masks [C, H, W], scores [C], low-res logits [C, side/4, side/4])`` as numpy arrays.
    """

    follows_input_size = True

    def __init__(self, model: SamModel, processor: SamProcessor | None = None) -> None:
        self.model = model
        self.processor = default_processor() if processor is None else processor
        self.reset_image()

    def reset_image(self) -> None:
        self.features: Tensor | None = None
        self.original_size: Grid | None = None
        self.input_size: Grid | None = None
        self.is_image_set = False
        self._sized: SamProcessor | None = None

    @torch.no_grad()
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        rgb = to_rgb_uint8(image)
        if image_format == "BGR":
            rgb = rgb[..., ::-1].copy()
        self.reset_image()
        side = HFSamAdapter(self.model).input_size()[0]
        self._sized = processor_for_size(self.processor, side)
        inputs = self._sized(images=rgb, return_tensors="pt")
        device = next(self.model.parameters()).device
        self.features = self.model.get_image_embeddings(inputs["pixel_values"].to(device))
        self.original_size = tuple(int(s) for s in inputs["original_sizes"][0])
        self.input_size = tuple(int(s) for s in inputs["reshaped_input_sizes"][0])
        self.is_image_set = True

    def _to_input_frame(self, coords: np.ndarray) -> Tensor:
        """``(..., 2)`` (x, y) pixels of the original image -> the resized image's frame (HF's
        processor does the same: ``x * new_w / old_w``, ``y * new_h / old_h``)."""
        assert self.original_size is not None and self.input_size is not None
        (oh, ow), (nh, nw) = self.original_size, self.input_size
        out = torch.as_tensor(np.asarray(coords, dtype=np.float64), dtype=torch.float32).clone()
        out[..., 0] *= nw / ow
        out[..., 1] *= nh / oh
        return out

    @torch.no_grad()
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.is_image_set:
            raise UserError("no image set: call predictor.set_image(image) before predict")
        assert self.original_size is not None and self._sized is not None
        check_prompt(point_coords, point_labels, box, self.original_size)
        device = self.features.device  # type: ignore[union-attr]
        kwargs: dict[str, Tensor] = {}
        if point_coords is not None:
            pts = self._to_input_frame(np.asarray(point_coords).reshape(-1, 2))
            kwargs["input_points"] = pts[None, None].to(device)  # [1, 1, N, 2]
            labels = torch.as_tensor(np.asarray(point_labels).reshape(-1), dtype=torch.long)
            kwargs["input_labels"] = labels[None, None].to(device)
        if box is not None:
            corners = self._to_input_frame(np.asarray(box).reshape(2, 2)).reshape(4)
            kwargs["input_boxes"] = corners[None, None].to(device)  # [1, 1, 4]
        if mask_input is not None:
            side = self._sized.target_size // 4
            m = torch.as_tensor(np.asarray(mask_input), dtype=torch.float32)
            if m.shape != (1, side, side):
                raise UserError(
                    f"mask_input must be (1, {side}, {side}) low-res logits at this input size, "
                    f"got {tuple(m.shape)}"
                )
            kwargs["input_masks"] = m[None].to(device)  # [1, 1, side, side]
        out = self.model(
            image_embeddings=self.features, multimask_output=multimask_output, **kwargs
        )
        masks = self._sized.post_process_masks(
            out.pred_masks.cpu(),
            [self.original_size],
            [self.input_size],
            binarize=not return_logits,
        )[0][0]
        return (
            masks.numpy(),
            out.iou_scores[0, 0].float().cpu().numpy(),
            out.pred_masks[0, 0].float().cpu().numpy(),
        )


class HFSamAdapter(PlainViTAdapter, EncoderAdapter):
    """``transformers``' ``SamModel``, its ``SamVisionEncoder``, or an :class:`HFSamPredictor`."""

    family = "hf"
    checkpoint_format = (
        "Hugging Face SamModel folder (config.json + model.safetensors; "
        "SamModel.save_pretrained / from_pretrained)"
    )
    blocks_attr = "layers"
    heads_attr = "num_attention_heads"

    @classmethod
    def accepts(cls, target: object) -> bool:
        return isinstance(target, (SamModel, SamVisionEncoder, HFSamPredictor))

    @classmethod
    def unwrap(cls, target: object) -> tuple[nn.Module | None, nn.Module, Any | None]:
        if isinstance(target, HFSamPredictor):
            return target.model, target.model.vision_encoder, target
        if isinstance(target, SamModel):
            return target, target.vision_encoder, None
        if isinstance(target, SamVisionEncoder):
            return None, target, None
        raise TypeError(
            f"expected a transformers SamModel, SamVisionEncoder or HFSamPredictor, got "
            f"{type(target).__name__}"
        )

    # ------------------------------------------------------------ facts

    def patch_size(self) -> int:
        return _patch_size(self.encoder)

    def base_size(self) -> Grid:
        h, w = self.encoder.patch_embed.image_size  # config.image_size, never changed
        return int(h), int(w)

    def check_size(self, size: Size) -> Grid:
        return check_square(parse_size(size, self.patch_size()))

    def size_rule(self) -> str:
        return f"square sides that are multiples of {self.patch_size()} px"

    # ------------------------------------------------------------ patching

    def attention_class(self, block: AttentionBlock) -> type[nn.Module]:
        return HFBASAMAttention

    def encoder_class(self) -> type[nn.Module]:
        return SizedSamVisionEncoder

    # ------------------------------------------------------------ input size

    def resize(self, hw: Grid) -> None:
        model = self.model
        if model is None:
            raise TypeError("set_input_size needs the whole SamModel, not its vision encoder")
        if type(model) not in (SamModel, SizedSamModel):
            raise TypeError(
                f"set_input_size supports transformers' SamModel, not the subclass "
                f"{type(model).__name__}"
            )
        p = self.patch_size()
        pe = model.prompt_encoder
        pe.image_embedding_size = (hw[0] // p, hw[1] // p)
        pe.input_image_size = hw[0]
        self.follow_size(model, hw, SamModel, SizedSamModel, SizedSamVisionEncoder)

    def refresh_predictor(self) -> None:
        if self.predictor is not None:
            self.predictor.reset_image()

    # ------------------------------------------------------------ running

    def preprocess(self, images: Tensor) -> Tensor:
        mean = _MEAN.to(images.device).view(3, 1, 1)  # [3, h, w] or [B, 3, h, w] alike
        std = _STD.to(images.device).view(3, 1, 1)
        return sized_preprocess(images.float(), mean, std, self.input_size(), "")

    def encode(self, pixels: Tensor) -> Tensor:
        return self.encoder(pixels).last_hidden_state

    def first_grid(self, pixels: Tensor) -> Grid:
        with torch.no_grad():
            tokens = self.encoder.patch_embed.projection(pixels)  # [B, C, rows, cols]
        return int(tokens.shape[2]), int(tokens.shape[3])

    def make_predictor(self) -> Predictor:
        if self.model is None:
            raise TypeError("a predictor needs the whole SamModel, not its vision encoder")
        return HFSamPredictor(self.model)

    # ------------------------------------------------------------ decoding

    def embed_prompts(
        self, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """HF's prompt encoder with each prompt as its own image (batch N, one prompt each):
        the same tokens as SAM 1's (a padding point without a box)."""
        if self.model is None:
            raise UserError("decoding needs the whole SamModel, not its vision encoder")
        sparse, dense = self.model.get_prompt_embeddings(
            input_points=None if points is None else points[0][:, None],  # [N, 1, P, 2]
            input_labels=None if points is None else points[1][:, None],  # [N, 1, P]
            input_boxes=None if boxes is None else boxes[:, None],  # [N, 1, 4]
        )
        if sparse is None:  # no prompt at all: HF gives no tokens
            sparse = dense.new_zeros(dense.shape[0], 1, 0, dense.shape[1])
        return sparse[:, 0], dense  # [N, T, C], [N, C, h, w]

    def image_rows(self, features: Tensor, index: Tensor) -> Tensor:
        return features[index]

    def decode_masks(
        self, features: Tensor, sparse: Tensor, dense: Tensor, multimask: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``SamModel.mask_decoder`` as ``SamModel.forward`` calls it: one image with its N
        prompts as HF's point batch, or N images with one prompt each."""
        if self.model is None:
            raise UserError("decoding needs the whole SamModel, not its vision encoder")
        rows, n = int(features.shape[0]), int(sparse.shape[0])
        if rows not in (1, n):
            raise ValueError(f"{n} prompts but {rows} image rows")
        pe = self.model.get_image_wide_positional_embeddings().repeat(rows, 1, 1, 1)
        if rows == 1:  # [1, N, T, C]: the prompts as one image's point batch
            tokens, dense = sparse[None], dense[:1]
        else:  # [N, 1, T, C]
            tokens = sparse[:, None]
        masks, iou = self.model.mask_decoder(
            image_embeddings=features,
            image_positional_embeddings=pe,
            sparse_prompt_embeddings=tokens,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )  # [rows, prompts per row, K, 4h, 4w], [rows, prompts per row, K]
        return masks.flatten(0, 1), iou.flatten(0, 1)


def build_random(name: str) -> nn.Module:
    """A ``SamModel`` of the architecture ``name`` with random weights (for the model-spec
    registry, which builds it on the meta device): ``hf-tiny`` (:data:`basam_lite.models.TINY`)
    or ``hf-vit_b`` / ``hf-vit_l`` / ``hf-vit_h``, read off ``segment_anything``'s builds;
    ``hf-tiny`` holds exactly ``build_sam("tiny")``'s weights."""
    from . import sam1_build
    from .hf_weights import build_tiny_hf_sam, hf_config_from_sam

    arch = name.removeprefix("hf-")
    if not name.startswith("hf-") or arch not in ("tiny", "vit_b", "vit_l", "vit_h"):
        raise ValueError(f"no Hugging Face SamModel architecture named {name!r}")
    if arch == "tiny":  # exactly tiny's weights, so the two families compare directly
        return build_tiny_hf_sam()
    return SamModel(hf_config_from_sam(sam1_build.build_random(arch)))


def build(name: str, checkpoint: str | os.PathLike | None = None) -> SamModel:
    """The named Hugging Face model in eval mode.

    ``hf-tiny``: random weights, exactly those of ``build_sam("tiny")`` (no checkpoint).
    ``hf-vit_b`` / ``hf-vit_l`` / ``hf-vit_h``: random weights without ``checkpoint``; with it,
    a folder written by ``save_pretrained`` or a Hugging Face id (``facebook/sam-vit-base``),
    or an official ``segment_anything`` ``.pth`` file converted by
    :func:`~basam_lite.encoders.hf_weights.sam_to_hf`; the architecture must be the named one.
    """
    from ..models import build_sam
    from .hf_weights import build_tiny_hf_sam, load_hf_sam, sam_to_hf

    arch = name.removeprefix("hf-")
    if name == "hf-tiny":
        if checkpoint is not None:
            raise UserError("hf-tiny has random weights and loads no checkpoint: leave it out")
        return build_tiny_hf_sam()
    if arch not in ("vit_b", "vit_l", "vit_h") or not name.startswith("hf-"):
        raise UserError(
            f"unknown Hugging Face model {name!r}: choose hf-tiny, hf-vit_b, hf-vit_l or hf-vit_h"
        )
    if checkpoint is None:
        return build_random(name).eval()
    if str(checkpoint).endswith(".pth"):
        model = sam_to_hf(build_sam(arch, checkpoint))
    else:
        model = load_hf_sam(checkpoint)
    with torch.device("meta"):  # the architecture only: no weights allocated
        expected = build_random(name).config.vision_config
    got = model.config.vision_config
    facts = ("hidden_size", "num_hidden_layers", "num_attention_heads")
    if any(getattr(got, f) != getattr(expected, f) for f in facts):
        raise UserError(
            f"{checkpoint} holds a SamModel with hidden size {got.hidden_size} and "
            f"{got.num_hidden_layers} layers, not {name}: pass the matching --model"
        )
    return model
