r"""BA-SAM in SAM 2's Hiera attention, with the query grid and the key grid kept apart.

Hiera's ``MultiScaleAttention`` runs SDPA with no bias and the default scale
:math:`1/\sqrt d` on a block's input grid: the whole feature grid in a global block
(``window_size == 0``), one window in a windowed block. At a stage transition
(``q_pool``) the queries are max-pooled 2x2 before attention, so **the query grid is smaller
than the key grid** (a 64 x 64-key window gives 32 x 32 queries in a global pooled block, an
8 x 8 window gives 4 x 4 queries in a windowed one). BA-SAM's logits per head :math:`h` are

.. math::
    \ell_{ij} = \lambda(n)\,\frac{q_i\cdot k_j}{\sqrt d} - g\,m_h\,s\,\mathrm{dist}(p_i, p_j),
    \qquad \lambda(n) = \frac{\ln n}{\ln n_\text{train}},

with :math:`n` **the number of keys in the softmax row** (the key grid's size, not the query
grid's), :math:`n_\text{train}` the same count at the base size (a global block of the
stride-16 stage at 1024 px: 64 x 64 = 4096; a windowed block: window², so lambda = 1 there).

The mask needs query and key positions in one frame. Keys sit at their grid cells
:math:`p_j = (r, c)`; a pooled query stands for the :math:`s \times s` key cells it was pooled
from, so it is placed at their centre in key-grid units:

.. math:: p_i = s\,(r_i, c_i) + \tfrac{s-1}{2}(1, 1).

This keeps the mask translation-invariant and symmetric about the query (max pooling favours
none of the four cells), and reduces to the usual grid mask when :math:`s = 1`. The cost: no
pooled query is at distance 0 from any key (the nearest four are :math:`\sqrt{2}/2` away in the
euclidean metric), a constant that softmax removes within each row. Distances are in key-grid
patches (``mask_units="patch"``), or in base-grid patches of the same block
(``"base"``, global blocks only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import CHUNK_BIAS_BYTES, AttentionBias, AttentionPath, attend
from ..masks import Metric, base_unit_scale, grid_positions, pairwise_distance, resolve_slopes
from ..patch import BASAMConfig
from ..patch_state import (
    BlockPatch,
    EncoderPatch,
    attach_block,
    attach_encoder,
    block_parameter,
    block_patch,
    detach_block,
    detach_encoder,
    encoder_patch,
    set_block_parameter,
)
from ..scaling import attention_scale
from .sam2_geometry import block_geometry, sam2_base_size, sam2_input_size, trunk_of
from .sam2_models import import_sam2

_hieradet = import_sam2("sam2.modeling.backbones.hieradet")
MultiScaleAttention = _hieradet.MultiScaleAttention
Hiera = _hieradet.Hiera
do_pool = _hieradet.do_pool


@dataclass
class HieraMask:
    r"""The bias-mode mask of one Hiera attention call, queries possibly pooled.

    Attributes:
        query_grid: (rows, cols) of the queries (after pooling).
        key_grid: (rows, cols) of the keys.
        q_stride: pooling stride :math:`s` from the key grid to the query grid (1: none).
        slopes: ``[H]`` per-head slopes times the gain.
        metric: the distance.
        distance_scale: the unit of distances in key-grid patches (1: the paper's mask).
    """

    query_grid: tuple[int, int]
    key_grid: tuple[int, int]
    q_stride: int
    slopes: Tensor
    metric: Metric = "euclidean"
    distance_scale: float = 1.0

    def query_positions(self) -> Tensor:
        """``[Q, 2]``: each query at the centre of its pooled cells, in key-grid units."""
        s = self.q_stride
        return grid_positions(self.query_grid, self.slopes.device) * s + (s - 1) / 2

    def rows(self, index: slice | Tensor, dtype: torch.dtype) -> Tensor:
        """The mask of the queries ``index`` against every key: ``[1, H, Q, N_keys]``."""
        q_pos = self.query_positions()[index]
        k_pos = grid_positions(self.key_grid, self.slopes.device)
        dist = pairwise_distance(q_pos, k_pos, self.metric, cols=self.key_grid[1])
        neg = -(self.slopes * self.distance_scale).to(dtype)[None, :, None, None]
        return neg * dist.to(dtype)[None, None]

    def as_attention_bias(self) -> AttentionBias:
        """The same mask for the project's same-grid paths (``q_stride == 1`` only)."""
        assert self.q_stride == 1 and self.query_grid == self.key_grid
        return AttentionBias(
            self.key_grid,
            slopes=self.slopes,
            metric=self.metric,
            distance_scale=self.distance_scale,
        )


def hiera_attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: float | None,
    mask: HieraMask | None,
    path: AttentionPath = "auto",
) -> Tensor:
    r"""``softmax(scale * q k^T + M) v`` for ``q [B, H, Q, d]``, ``k, v [B, H, N, d]``.

    ``scale=None`` is SDPA's default :math:`1/\sqrt d` (SAM 2's own call). Without a mask this
    is SAM 2's SDPA call; with one on equal grids it is :func:`basam_lite.attention.attend`
    (dense or chunked by ``path``); with pooled queries the mask rows are built per chunk of
    queries (at most :data:`~basam_lite.attention.CHUNK_BIAS_BYTES` each).
    """
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if mask.q_stride == 1:
        return attend(q, k, v, scale, mask.as_attention_bias(), path=path)
    n_q, n_k, h = q.shape[2], k.shape[2], q.shape[1]
    step = max(1, min(n_q, CHUNK_BIAS_BYTES // max(1, h * n_k * q.element_size())))
    outs = []
    for s in range(0, n_q, step):
        rows = mask.rows(slice(s, min(n_q, s + step)), q.dtype)
        outs.append(
            F.scaled_dot_product_attention(q[:, :, s : s + step], k, v, attn_mask=rows, scale=scale)
        )
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


class BASAMHieraAttention(MultiScaleAttention):
    """Hiera's ``MultiScaleAttention`` with BA-SAM: ``[B, H, W, C]`` (a window or the whole
    grid) in, ``[B, H', W', C']`` out (``H' = H / q_stride``), settings from the block's
    :class:`~basam_lite.patch_state.BlockPatch`. Without scale and mask it makes SAM 2's own
    SDPA call, so ``vanilla`` is bit-identical."""

    def forward(self, x: Tensor) -> Tensor:
        state = block_patch(self)
        assert state is not None, "BASAMHieraAttention without its BlockPatch: use apply_basam"
        b, rows, cols, _ = x.shape
        qkv = self.qkv(x).reshape(b, rows * cols, 3, self.num_heads, -1)
        q, k, v = torch.unbind(qkv, 2)  # each [B, N, heads, d]
        q_rows, q_cols, stride = rows, cols, 1
        if self.q_pool:
            q = do_pool(q.reshape(b, rows, cols, -1), self.q_pool)
            q_rows, q_cols = q.shape[1:3]
            pool_stride = self.q_pool.stride
            stride = int(pool_stride if isinstance(pool_stride, int) else pool_stride[0])
            q = q.reshape(b, q_rows * q_cols, self.num_heads, -1)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, N, d]
        lam = state.scale_for(rows * cols)  # lambda from the keys per softmax row
        scale = None if lam == 1.0 else lam * q.shape[-1] ** -0.5
        mask = None
        if state.active and state.slopes is not None:
            gain = block_parameter(self, "gain")
            slopes = state.slopes.to(q.device) * (gain if gain is not None else state.config.gain)
            unit = 1.0
            if state.config.mask_units == "base" and state.is_global:
                unit = base_unit_scale((rows, cols), state.base_grid)
            mask = HieraMask(
                (q_rows, q_cols), (rows, cols), stride, slopes, state.config.metric, unit
            )
        if state.capture_hook is not None:
            state.capture_hook(self, q, k, q.shape[-1] ** -0.5 if scale is None else scale, mask)
        out = hiera_attend(q, k, v, scale, mask, path=state.config.path)
        out = out.transpose(1, 2).reshape(b, q_rows, q_cols, -1)
        return self.proj(out)


class NoPosHiera(Hiera):
    """``Hiera`` while it is patched: its position embeddings are left out when the config says
    ``use_abs_pos=False`` (the ``official`` preset, carried over from what the official BA-SAM
    code does to SAM 1), else SAM 2's own (background resized bicubically plus tiled window)."""

    def _get_pos_embed(self, hw: tuple[int, int]) -> Tensor:
        record = encoder_patch(self)
        if record is None or record.use_abs_pos:
            return super()._get_pos_embed(hw)
        return self.pos_embed.new_zeros(1, *hw, self.pos_embed.shape[1])


def sam2_patch_config(model: nn.Module) -> BASAMConfig | None:
    """The config applied to a SAM 2 (None when unpatched)."""
    record = encoder_patch(trunk_of(model))
    return None if record is None else record.config


def apply_basam_sam2(model: nn.Module, config: BASAMConfig | None = None) -> nn.Module:
    """Patch a ``SAM2Base`` in place with ``config`` (default: paper) and return it.

    Each block's lambda denominator is its keys per softmax row at the base size; ``blocks=
    "global"`` patches the blocks with ``window_size == 0``. ``official_relpos`` has no
    relative-position term to scale in Hiera (none exists), so only its integer scale and the
    dropped position embedding act.
    """
    config = BASAMConfig.paper() if config is None else config
    if not isinstance(config, BASAMConfig):
        raise TypeError(f"config must be a BASAMConfig, got {type(config).__name__}")
    trunk = trunk_of(model)
    if sam2_patch_config(model) is not None:
        remove_basam_sam2(model)
    base = block_geometry(model, sam2_base_size(model))
    now = block_geometry(model, sam2_input_size(model))
    if config.scale == "official":  # fail now, not at the first forward, below the base size
        for g0, g in zip(base, now, strict=True):
            if g.is_global:
                attention_scale(g.num_keys, config.train_keys or g0.num_keys, "official")
    for block, g0 in zip(trunk.blocks, base, strict=True):
        attn = block.attn
        active = config.blocks == "all" or g0.is_global
        train_keys = (config.train_keys or g0.num_keys) if g0.is_global else g0.num_keys
        slopes = resolve_slopes(attn.num_heads, config.slopes) if config.bias == "alibi2d" else None
        record = BlockPatch(config, g0.is_global, active, train_keys, slopes, base_grid=g0.key_grid)
        if active and config.learnable_gain:
            param = attn.qkv.weight
            gain = nn.Parameter(torch.tensor(float(config.gain), device=param.device))
            set_block_parameter(attn, "gain", gain)
        attach_block(attn, record, BASAMHieraAttention)
    base_hw = (sam2_base_size(model),) * 2
    cls = type(trunk) if config.use_abs_pos else NoPosHiera
    attach_encoder(trunk, EncoderPatch(base_hw, type(trunk), config=config), cls)
    return model


def remove_basam_sam2(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_basam_sam2` exactly: original classes, no added parameter."""
    trunk = trunk_of(model)
    if encoder_patch(trunk) is None:
        return model
    for block in trunk.blocks:
        detach_block(block.attn)
    detach_encoder(trunk)
    return model
