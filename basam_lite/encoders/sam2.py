r"""The ``sam2`` family: SAM 2 / 2.1 (Hiera) through the official ``sam2`` package.

Install with ``pip install 'basam-lite[sam2]'`` (``SAM2_BUILD_CUDA=0``: its CUDA extension only
serves a mask post-processing step this project never runs). The official
``sam2.1_hiera_*.pt`` checkpoints load from a path (:func:`basam_lite.encoders.sam2_models.
build_sam2`); the tiny random-weight SAM 2 of the tests is built from the package's own classes.
Why this package and not ``transformers``' ``Sam2Model``: it is the code the checkpoints were
released with and the one SAM 2's users run; its ``MultiScaleAttention`` makes one plain SDPA
call, so ``vanilla`` here is bit-identical to SAM 2's own forward.

What the adapter patches (see ``docs/sam2.md``):

- the encoder is the **Hiera trunk** (``image_encoder.trunk``); its blocks are numbered
  0.. over all four stages; global blocks are those with ``window_size == 0`` (all in the
  stride-16 stage in every SAM 2.1 model: tiny 5, 7, 9; small 7, 10, 13; base-plus 12, 16, 20;
  large 23, 33, 43);
- :class:`BASAMHieraAttention` (``MultiScaleAttention``): q, k, v, the 2x2 max-pooled queries of
  a stage's first block, then :func:`~basam_lite.encoders.attend.basam_attend` with the query
  grid and the key grid kept apart. lambda counts the keys of the softmax row; the mask places a
  pooled query at the centre of the key cells it pools. SAM 2 cannot make a pooling block global
  (its ``MultiScaleBlock`` divides by the window size), so pooled queries only meet the mask
  in windowed blocks (``blocks="all"``);
- :class:`SizedHiera` (``Hiera``): SAM 2's own position embedding (a small background table
  resized bicubically to the stride-4 grid at every size, plus an 8 x 8 window table tiled over
  it), left out when a config says ``use_abs_pos=False`` (the ``official`` preset). Hiera has no
  relative-position term, so ``official_relpos`` adds nothing here;
- sizes: square sides that are multiples of 32 px
  (:func:`~basam_lite.encoders.sam2_geometry.check_sam2_size`); ``SAM2Base.image_size``, the
  prompt encoder's grids and the predictor's transforms and feature sizes follow.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..patch_state import drop_encoder_record_if_unneeded, encoder_patch, encoder_record
from .attend import basam_attend
from .base import AttentionBlock, BlockGrids, EncoderAdapter, Grid, Predictor
from .sam2_geometry import (
    SAM2_DEFAULT_BASE,
    block_geometry_hw,
    check_sam2_size,
    note_base_size,
    noted_base_size,
    patch_stride,
    size_unit,
)
from .sam2_models import import_sam2
from .sam2_predictor import Sam2Predictor, refresh_sam2_predictor, sam2_transforms

_hieradet = import_sam2("sam2.modeling.backbones.hieradet")
_image_encoder = import_sam2("sam2.modeling.backbones.image_encoder")
_sam2_base = import_sam2("sam2.modeling.sam2_base")
_image_predictor = import_sam2("sam2.sam2_image_predictor")
MultiScaleAttention = _hieradet.MultiScaleAttention
Hiera = _hieradet.Hiera
SAM2Base = _sam2_base.SAM2Base
ImageEncoder = _image_encoder.ImageEncoder
SAM2ImagePredictor = _image_predictor.SAM2ImagePredictor


class BASAMHieraAttention(MultiScaleAttention):
    """Hiera's ``MultiScaleAttention`` with BA-SAM: ``[B, rows, cols, C]`` (a window or the
    whole grid) in, ``[B, rows / s, cols / s, C']`` out (``s`` the query pooling stride)."""

    def forward(self, x: Tensor) -> Tensor:
        b, rows, cols, _ = x.shape
        qkv = self.qkv(x).reshape(b, rows * cols, 3, self.num_heads, -1)
        q, k, v = torch.unbind(qkv, 2)  # each [B, N, heads, d]
        q_rows, q_cols = rows, cols
        if self.q_pool:  # Hiera's stage transition: 2x2 max pooling of the queries
            q = _hieradet.do_pool(q.reshape(b, rows, cols, -1), self.q_pool)
            q_rows, q_cols = int(q.shape[1]), int(q.shape[2])
            q = q.reshape(b, q_rows * q_cols, self.num_heads, -1)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, N, d]
        out = basam_attend(self, q, k, v, (q_rows, q_cols), key_grid=(rows, cols))
        return self.proj(out.transpose(1, 2).reshape(b, q_rows, q_cols, -1))


class SizedHiera(Hiera):
    """``Hiera`` while it is patched or away from its base size: SAM 2's own position embedding,
    left out when the BA-SAM config says ``use_abs_pos=False``."""

    def _get_pos_embed(self, hw: tuple[int, int]) -> Tensor:
        record = encoder_patch(self)
        if record is None or record.use_abs_pos:
            return super()._get_pos_embed(hw)
        return self.pos_embed.new_zeros(1, *hw, self.pos_embed.shape[1])


class Sam2Adapter(EncoderAdapter):
    """``sam2``'s ``SAM2Base`` (or ``SAM2ImagePredictor``, ``ImageEncoder``, ``Hiera``)."""

    family = "sam2"
    checkpoint_format = (
        "sam2 checkpoint: {'model': SAM2Base state_dict} (.pt, torch.save), as the released "
        "sam2.1_hiera_{tiny,small,base_plus,large}.pt"
    )

    @classmethod
    def accepts(cls, target: object) -> bool:
        return isinstance(target, (SAM2Base, SAM2ImagePredictor, ImageEncoder, Hiera))

    @classmethod
    def unwrap(cls, target: object) -> tuple[nn.Module | None, nn.Module, Any | None]:
        if isinstance(target, SAM2ImagePredictor):
            return target.model, target.model.image_encoder.trunk, target
        if isinstance(target, SAM2Base):
            return target, target.image_encoder.trunk, None
        if isinstance(target, ImageEncoder):
            return None, target.trunk, None
        if isinstance(target, Hiera):
            return None, target, None
        raise TypeError(
            f"expected a sam2 SAM2Base, SAM2ImagePredictor, ImageEncoder or Hiera, got "
            f"{type(target).__name__}"
        )

    def __init__(self, target: object) -> None:
        super().__init__(target)
        if self.model is not None and encoder_patch(self.encoder) is None:
            # The base size is not in Hiera's weights: remember the model's for the trunk alone.
            note_base_size(self.encoder, int(self.model.image_size))

    # ------------------------------------------------------------ facts

    def attention_blocks(self) -> list[AttentionBlock]:
        return [
            AttentionBlock(
                i, blk, blk.attn, int(blk.attn.num_heads), int(blk.dim), int(blk.window_size)
            )
            for i, blk in enumerate(self.encoder.blocks)
        ]

    def patch_size(self) -> int:
        return patch_stride(self.encoder)

    def base_size(self) -> Grid:
        record = encoder_patch(self.encoder)
        if record is not None:
            return record.base_hw
        side = noted_base_size(self.encoder)
        return (side, side) if side is not None else (SAM2_DEFAULT_BASE, SAM2_DEFAULT_BASE)

    def input_size(self) -> Grid:
        if self.model is not None:
            side = int(self.model.image_size)
            return side, side
        record = encoder_patch(self.encoder)
        if record is not None and record.input_hw is not None:
            return record.input_hw
        return self.base_size()

    def block_grids(self, index: int, input_hw: Grid) -> BlockGrids:
        g = block_geometry_hw(self.encoder, input_hw)[index]
        query = (g.grid[0] // g.q_stride, g.grid[1] // g.q_stride)
        return BlockGrids(query, g.grid, g.window, g.window // g.q_stride)

    def check_size(self, size: object) -> Grid:
        side = check_sam2_size(self.encoder, size)
        return side, side

    def size_rule(self) -> str:
        return f"square sides that are multiples of {size_unit(self.encoder)} px"

    # ------------------------------------------------------------ patching

    def attention_class(self, block: AttentionBlock) -> type[nn.Module]:
        return BASAMHieraAttention

    def encoder_class(self) -> type[nn.Module]:
        return SizedHiera

    def uses_abs_pos(self) -> bool:
        return True

    # ------------------------------------------------------------ input size

    def resize(self, hw: Grid) -> None:
        model, trunk = self.model, self.encoder
        assert model is not None, "resize needs the whole SAM2Base"
        side = hw[0]
        base = self.base_size()
        stride = int(model.backbone_stride)
        model.image_size = side
        model.sam_image_embedding_size = side // stride
        pe = model.sam_prompt_encoder
        pe.image_embedding_size = (side // stride, side // stride)
        pe.input_image_size = (side, side)
        pe.mask_input_size = (4 * (side // stride), 4 * (side // stride))
        if tuple(hw) == tuple(base):
            record = encoder_patch(trunk)
            if record is not None:
                record.input_hw = None
            drop_encoder_record_if_unneeded(trunk)
        else:
            encoder_record(trunk, base, SizedHiera).input_hw = (side, side)

    def refresh_predictor(self) -> None:
        if self.predictor is not None:
            refresh_sam2_predictor(self.predictor)

    # ------------------------------------------------------------ running

    def preprocess(self, images: Tensor) -> Tensor:
        """SAM 2's own: resize to the square side (``SAM2Transforms``: bilinear, antialiased),
        scale to [0, 1] and normalise with the ImageNet mean and std."""
        if self.model is None:
            raise UserError("preprocess needs the whole SAM2Base, not only its image encoder")
        return sam2_transforms(self.input_size()[0]).transforms(images.float() / 255.0)

    def encode(self, pixels: Tensor) -> Any:
        """``SAM2Base.forward_image`` (the backbone features and their positions, with the
        decoder's high-resolution projections), or the trunk's feature list without a model."""
        if self.model is not None:
            return self.model.forward_image(pixels)
        return self.encoder(pixels)

    def first_grid(self, pixels: Tensor) -> Grid:
        """The stride-4 grid of Hiera's patch embedding (a 7 x 7 convolution, padding 3)."""
        with torch.no_grad():
            tokens = self.encoder.patch_embed(pixels)  # [B, rows, cols, C]
        return int(tokens.shape[1]), int(tokens.shape[2])

    def make_predictor(self) -> Predictor:
        if self.model is None:
            raise UserError("a predictor needs the whole SAM2Base, not only its image encoder")
        return Sam2Predictor(self.model)

    # ------------------------------------------------------------ decoding

    def embed_prompts(
        self, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """As ``SAM2ImagePredictor`` prompts SAM 2: a box becomes two corner points (labels 2
        and 3) ahead of the clicks, and the prompt encoder always adds its padding point:
        T = 2 (box) + P + 1."""
        if self.model is None:
            raise UserError("decoding needs the whole SAM2Base, not only its image encoder")
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int64, device=boxes.device)
            corner_labels = corner_labels.expand(corners.shape[0], -1)
            if points is None:
                points = (corners, corner_labels)
            else:
                coords, labels = points
                points = (
                    torch.cat([corners, coords], dim=1),
                    torch.cat([corner_labels, labels.to(torch.int64)], dim=1),
                )
        return self.model.sam_prompt_encoder(points=points, boxes=None, masks=None)

    def image_rows(self, features: dict[str, Any], index: Tensor) -> dict[str, Any]:
        return {
            key: [t[index] for t in value] if isinstance(value, list) else value[index]
            for key, value in features.items()
        }

    def decode_masks(
        self, features: dict[str, Any], sparse: Tensor, dense: Tensor, multimask: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``SAM2Base.sam_mask_decoder`` as ``SAM2ImagePredictor`` calls it: on the stride-16
        embedding with the no-memory embedding added, and the stride-4 and stride-8
        high-resolution features. In eval mode a single mask follows SAM 2's fallback to the
        most stable multimask output (``dynamic_multimask_via_stability``); in train mode it
        is the first mask token's."""
        if self.model is None:
            raise UserError("decoding needs the whole SAM2Base, not only its image encoder")
        embed, high_res = sam2_decoder_inputs(self.model, features)
        rows, n = int(embed.shape[0]), int(sparse.shape[0])
        if rows not in (1, n):
            raise ValueError(f"{n} prompts but {rows} image rows")
        masks, iou, _, _ = self.model.sam_mask_decoder(
            image_embeddings=embed,
            image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=rows == 1 and n > 1,
            high_res_features=high_res,
        )
        return masks, iou


def sam2_decoder_inputs(model: nn.Module, features: dict[str, Any]) -> tuple[Tensor, list[Tensor]]:
    """``SAM2Base.forward_image``'s output for B images -> the mask decoder's image embedding
    ``[B, C, h, w]`` (stride 16, plus ``no_mem_embed`` as the image predictor adds it) and its
    high-resolution features ``[B, C / 8, 4h, 4w]`` and ``[B, C / 4, 2h, 2w]``."""
    _, vision_feats, _, sizes = model._prepare_backbone_features(features)
    if model.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    # each level [h * w, B, C] -> [B, C, h, w]
    maps = [
        f.permute(1, 2, 0).unflatten(2, size) for f, size in zip(vision_feats, sizes, strict=True)
    ]
    return maps[-1], maps[:-1]
