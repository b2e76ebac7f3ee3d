r"""What SAM 1's ``ImageEncoderViT`` and Hugging Face's ``SamVisionEncoder`` share: one plain
ViT (a strided patch embedding, an absolute position embedding over the base grid, a list of
windowed or global blocks with SAM's decomposed relative-position tables), stored under other
attribute names. One position arithmetic, one sized-encoder step and one set of adapter facts
serve both families.

- :func:`interpolated_tables`: a block's rel-pos tables at the grid, by the family's own
  ``get_rel_pos`` (``segment_anything``'s, or Hugging Face's method);
- :func:`rel_pos_terms`: SAM's decomposed rel-pos terms from already interpolated tables;
  :func:`rel_pos_position`: the same as a block's :class:`~basam_lite.encoders.base.PositionTerms`,
  computed per query chunk when they are large and no gradient is wanted;
- :func:`add_abs_pos`: the absolute position embedding resampled to the token grid, or left out
  when the block's BA-SAM config says ``use_abs_pos=False``;
- :class:`PlainViTAdapter`: the adapter facts and the size bookkeeping of ``resize``. Put before
  ``EncoderAdapter`` in the bases and name the block list and the heads attribute.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..embedding import resample_pos_embed
from ..patch_state import (
    drop_encoder_record_if_unneeded,
    encoder_patch,
    encoder_record,
    swap_class,
)
from .base import AttentionBlock, BlockGrids, Grid, PositionTerms


def rel_pos_terms(
    q: Tensor, table_h: Tensor, table_w: Tensor, grid_hw: Grid
) -> tuple[Tensor, Tensor]:
    r"""SAM's decomposed relative-position terms (MViTv2) for queries ``q [B, H, N, d]`` on a
    (rows, cols) grid, from tables ``table_h [rows, rows, d]`` and ``table_w [cols, cols, d]``
    already interpolated to the grid (query index first, key index second).

    Returns ``rel_h [B, H, N, rows]`` and ``rel_w [B, H, N, cols]`` with
    :math:`R^h_i[r] = q_i \cdot P_h[\mathrm{row}_i - r]` (``table_h[row_i, r]``); SAM adds
    ``rel_h[i, row_j] + rel_w[i, col_j]`` to the logit of pair (i, j); q is not scaled here.
    """
    return rel_pos_terms_rows(q, table_h, table_w, grid_hw, 0, grid_hw[0])


def rel_pos_terms_rows(
    q: Tensor, table_h: Tensor, table_w: Tensor, grid_hw: Grid, first: int, last: int
) -> tuple[Tensor, Tensor]:
    """:func:`rel_pos_terms` of the queries in grid rows ``first .. last - 1`` only:
    ``rel_h [B, H, (last - first) * cols, rows]``, ``rel_w [B, H, (last - first) * cols, cols]``
    (``q`` is still all ``[B, H, N, d]``)."""
    rows, cols = grid_hw
    b, h, _, d = q.shape
    grid = q[:, :, first * cols : last * cols].reshape(b, h, last - first, cols, d)
    rel_h = torch.einsum("bhrcd,rkd->bhrck", grid, table_h[first:last])
    rel_w = torch.einsum("bhrcd,ckd->bhrck", grid, table_w)
    q_len = (last - first) * cols
    return rel_h.reshape(b, h, q_len, rows), rel_w.reshape(b, h, q_len, cols)


def interpolated_tables(
    rel_pos_h: Tensor, rel_pos_w: Tensor, grid_hw: Grid, get_rel_pos: Callable
) -> tuple[Tensor, Tensor]:
    """A block's rel-pos tables at the grid, by the family's own interpolation
    ``get_rel_pos(q_size, k_size, table)``: ``[rows (query), rows (key), d]`` and
    ``[cols, cols, d]``."""
    rows, cols = grid_hw
    return get_rel_pos(rows, rows, rel_pos_h), get_rel_pos(cols, cols, rel_pos_w)


LAZY_REL_POS_BYTES = 64 << 20
"""Without autograd, rel-pos terms (``rel_h`` and ``rel_w`` together) larger than this are
computed per query chunk by the chunked attention path instead of whole: 192 MiB less at the
peak of a ViT-B global block at 128 x 128 tokens (a 2048 px image)."""


def rel_pos_position(q: Tensor, table_h: Tensor, table_w: Tensor, grid_hw: Grid) -> PositionTerms:
    """SAM's rel-pos terms of ``q [B, H, N, d]`` as :class:`PositionTerms`: whole, or on demand
    (``rel_rows``) when no gradient is wanted and they would take more than
    :data:`LAZY_REL_POS_BYTES`."""
    rows, cols = grid_hw
    b, h, n, _ = q.shape
    if (
        torch.is_grad_enabled()
        or b * h * n * (rows + cols) * q.element_size() <= LAZY_REL_POS_BYTES
    ):
        return PositionTerms(*rel_pos_terms(q, table_h, table_w, grid_hw))

    def rel_rows(first: int, last: int) -> tuple[Tensor, Tensor]:
        return rel_pos_terms_rows(q, table_h, table_w, grid_hw, first, last)

    return PositionTerms(rel_rows=rel_rows)


def add_abs_pos(encoder: nn.Module, x: Tensor) -> Tensor:
    """``x [B, rows, cols, C]`` plus ``encoder.pos_embed`` (``[1, rows0, cols0, C]``, the base
    grid) resampled bicubically to (rows, cols); ``x`` unchanged when the encoder has no
    absolute embedding or its BA-SAM config says ``use_abs_pos=False``. The parameter is never
    modified."""
    record = encoder_patch(encoder)
    if encoder.pos_embed is None or (record is not None and not record.use_abs_pos):
        return x
    return x + resample_pos_embed(encoder.pos_embed, (x.shape[1], x.shape[2]))


class PlainViTAdapter:
    """Adapter facts for a plain ViT whose blocks carry ``attn`` (with ``qkv``, ``use_rel_pos``,
    ``rel_pos_h``, ``rel_pos_w``) and ``window_size`` (0: global). The subclass names the
    encoder's block list (:attr:`blocks_attr`) and the attention's head count
    (:attr:`heads_attr`), and gives ``patch_size`` and ``base_size``."""

    blocks_attr: ClassVar[str]
    heads_attr: ClassVar[str]
    encoder: nn.Module

    @abstractmethod
    def patch_size(self) -> int: ...

    @abstractmethod
    def base_size(self) -> Grid: ...

    def vit_blocks(self) -> list[nn.Module]:
        """The encoder's blocks in forward order."""
        return list(getattr(self.encoder, self.blocks_attr))

    def attention_blocks(self) -> list[AttentionBlock]:
        return [
            AttentionBlock(
                i,
                blk,
                blk.attn,
                int(getattr(blk.attn, self.heads_attr)),
                int(blk.attn.qkv.in_features),
                int(blk.window_size),
            )
            for i, blk in enumerate(self.vit_blocks())
        ]

    def input_size(self) -> Grid:
        record = encoder_patch(self.encoder)
        if record is not None and record.input_hw is not None:
            return record.input_hw
        return self.base_size()

    def block_grids(self, index: int, input_hw: Grid) -> BlockGrids:
        p = self.patch_size()
        grid = (input_hw[0] // p, input_hw[1] // p)
        window = int(self.vit_blocks()[index].window_size)
        return BlockGrids(grid, grid, window, window)

    def position_tables(self, block: AttentionBlock) -> dict[str, nn.Parameter]:
        attn = block.attn
        if not attn.use_rel_pos:
            return {}
        return {"rel_pos_h": attn.rel_pos_h, "rel_pos_w": attn.rel_pos_w}

    def uses_abs_pos(self) -> bool:
        return self.encoder.pos_embed is not None

    def follow_size(
        self,
        model: nn.Module,
        hw: Grid,
        stock: type[nn.Module],
        sized: type[nn.Module],
        sized_encoder: type[nn.Module],
    ) -> None:
        """The size bookkeeping of ``resize`` (the prompt encoder is the family's part): at the
        base size the encoder's record forgets the size, ``model`` gets its ``stock`` class back
        and the encoder record goes when nothing else needs it; elsewhere the encoder records
        ``hw`` (and the base size, read before anything moves) and ``model`` becomes
        ``sized``."""
        base = self.base_size()
        if hw == base:
            record = encoder_patch(self.encoder)
            if record is not None:
                record.input_hw = None
            swap_class(model, stock)
            drop_encoder_record_if_unneeded(self.encoder)
        else:
            encoder_record(self.encoder, base, sized_encoder).input_hw = hw
            swap_class(model, sized)
