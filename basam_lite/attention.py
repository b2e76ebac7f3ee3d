r"""One attention forward for every BA-SAM variant, on PyTorch's fused kernel.

For queries :math:`q_i` and keys :math:`k_j` on a (rows, cols) token grid, every variant computes

.. math::
    \mathrm{softmax}_j\Big(\lambda \frac{q_i \cdot k_j}{\sqrt d}
        + c\,\big(R^h_i[\mathrm{row}_j] + R^w_i[\mathrm{col}_j]\big)
        + M(i, j)\Big)\, v_j

with :math:`\lambda` the BA-SAM scale (:mod:`basam_lite.scaling`), :math:`R^h, R^w` SAM's
decomposed relative-position terms (:math:`R^h_i[r] = q_i \cdot P_h[\mathrm{row}_i - r]`), :math:`c`
an optional coefficient (the official code's learnable scalar) and :math:`M` the bias-mode mask
(:mod:`basam_lite.masks`). :math:`\lambda` goes into SDPA's ``scale``; the additive terms go into
its ``attn_mask``, always 4-D (a 3-D mask silently falls back to the slow math kernel).

Three exact paths, chosen by :func:`choose_path`:

- ``"sdpa"``: no additive term at all, the plain fused kernel.
- ``"dense"``: the whole ``[B, H, N, N]`` bias built once (the ALiBi part cached per grid).
- ``"chunked"``: query rows in chunks, each chunk's bias rows built on the fly, so memory stays
  O(chunk * N) at any resolution.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import get_rel_pos
from torch import Tensor

from .masks import Metric, grid_positions, pairwise_distance
from .scaling import check_choice

AttentionPath = Literal["auto", "sdpa", "dense", "chunked"]
ATTENTION_PATHS: tuple[str, ...] = get_args(AttentionPath)

# A dense bias above this many bytes switches "auto" to the chunked path.
DENSE_BIAS_BUDGET = 1 << 30
# Bytes of bias built per query chunk on the chunked path.
CHUNK_BIAS_BYTES = 64 << 20


@dataclass
class AttentionBias:
    """Everything added to the scaled logits of one attention call.

    Attributes:
        grid_hw: the (rows, cols) token grid; N = rows * cols queries and keys.
        rel_h: ``[B, H, N, rows]`` SAM's height rel-pos term (coefficient applied), or None.
        rel_w: ``[B, H, N, cols]`` SAM's width rel-pos term (coefficient applied), or None.
        slopes: ``[H]`` per-head mask slopes times the gain, or None for no mask.
        metric: the distance used by the mask.
    """

    grid_hw: tuple[int, int]
    rel_h: Tensor | None = None
    rel_w: Tensor | None = None
    slopes: Tensor | None = None
    metric: Metric = "euclidean"

    @property
    def is_empty(self) -> bool:
        return self.rel_h is None and self.slopes is None

    @property
    def num_tokens(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]


def decomposed_rel_pos(
    q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, grid_hw: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    r"""SAM's decomposed relative-position terms (MViTv2) for queries ``q [B, H, N, d]``.

    Returns ``rel_h [B, H, N, rows]`` and ``rel_w [B, H, N, cols]`` with
    :math:`R^h_i[r] = q_i \cdot P_h[\mathrm{row}_i - r]` (tables interpolated by SAM's own
    ``get_rel_pos`` when the grid differs from the one they were trained on). SAM adds
    ``rel_h[i, row_j] + rel_w[i, col_j]`` to the logit of pair (i, j); q is not scaled here.
    """
    rows, cols = grid_hw
    b, h, n, d = q.shape
    table_h = get_rel_pos(rows, rows, rel_pos_h)  # [rows (query), rows (key), d]
    table_w = get_rel_pos(cols, cols, rel_pos_w)
    q_grid = q.reshape(b, h, rows, cols, d)
    rel_h = torch.einsum("bhrcd,rkd->bhrck", q_grid, table_h).reshape(b, h, n, rows)
    rel_w = torch.einsum("bhrcd,ckd->bhrck", q_grid, table_w).reshape(b, h, n, cols)
    return rel_h, rel_w


Rows = slice | Tensor  # a run of query rows, or a 1-D index tensor of them


@functools.lru_cache(maxsize=4)
def _all_distances(grid_hw: tuple[int, int], metric: str, device: torch.device) -> Tensor:
    pos = grid_positions(grid_hw, device=device)
    return pairwise_distance(pos, pos, metric, cols=grid_hw[1])  # type: ignore[arg-type]


def mask_rows(bias: AttentionBias, rows: Rows, dtype: torch.dtype) -> Tensor:
    """The bias-mode mask for the given query rows: ``[1, H, Q, N]``."""
    assert bias.slopes is not None
    slopes = bias.slopes.to(dtype)
    if isinstance(rows, slice) and rows == slice(None) and bias.num_tokens <= 4096:
        dist = _all_distances(bias.grid_hw, bias.metric, slopes.device)
    else:
        pos = grid_positions(bias.grid_hw, device=slopes.device)
        dist = pairwise_distance(pos[rows], pos, bias.metric, cols=bias.grid_hw[1])
    return -(slopes[:, None, None] * dist.to(dtype)[None]).unsqueeze(0)


def bias_rows(bias: AttentionBias, rows: Rows, dtype: torch.dtype) -> Tensor | None:
    """The full additive bias for the given query rows: ``[B or 1, H, Q, N]``, or None."""
    out: Tensor | None = None
    if bias.rel_h is not None and bias.rel_w is not None:
        rh = bias.rel_h[:, :, rows]
        rw = bias.rel_w[:, :, rows]
        out = (rh[..., :, None] + rw[..., None, :]).flatten(-2)
    if bias.slopes is not None:
        m = mask_rows(bias, rows, dtype)
        out = m if out is None else out + m
    return None if out is None else out.to(dtype)


def dense_bias_bytes(batch: int, heads: int, bias: AttentionBias, itemsize: int = 4) -> int:
    """Bytes a dense ``[B, H, N, N]`` bias would take."""
    b = batch if bias.rel_h is not None else 1
    return b * heads * bias.num_tokens**2 * itemsize


def choose_path(batch: int, heads: int, bias: AttentionBias, path: AttentionPath = "auto") -> str:
    """The path to run: the requested one, or for ``"auto"`` the fastest that fits memory."""
    check_choice(path, ATTENTION_PATHS, "attention path")
    if bias.is_empty:
        return "sdpa"
    if path != "auto":
        return path
    return "dense" if dense_bias_bytes(batch, heads, bias) <= DENSE_BIAS_BUDGET else "chunked"


def attend(
    q: Tensor, k: Tensor, v: Tensor, scale: float, bias: AttentionBias, path: AttentionPath = "auto"
) -> Tensor:
    """Attention output ``[B, H, N, d]`` for ``q, k, v [B, H, N, d]`` with logit multiplier
    ``scale`` (lambda / sqrt(d)) and the additive terms in ``bias``."""
    chosen = choose_path(q.shape[0], q.shape[1], bias, path)
    if chosen == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    n = q.shape[2]
    if chosen == "dense":
        mask = bias_rows(bias, slice(None), q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    row_bytes = dense_bias_bytes(q.shape[0], q.shape[1], bias, q.element_size()) // max(n, 1)
    chunk = max(1, min(n, CHUNK_BIAS_BYTES // max(row_bytes, 1)))
    outs = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        mask = bias_rows(bias, slice(start, stop), q.dtype)
        outs.append(
            F.scaled_dot_product_attention(q[:, :, start:stop], k, v, attn_mask=mask, scale=scale)
        )
    return torch.cat(outs, dim=2)


def attention_probs(
    q: Tensor, k: Tensor, scale: float, bias: AttentionBias, query_index: Tensor | None = None
) -> Tensor:
    """Explicit probabilities ``[B, H, Q, N]`` for the chosen query rows (all when None).

    Used by :func:`basam_lite.capture_attention`: only the requested rows are built, so memory
    is O(Q * N) whatever the resolution.
    """
    rows: Rows = slice(None) if query_index is None else query_index
    logits = scale * (q[:, :, rows] @ k.transpose(-2, -1))
    extra = bias_rows(bias, rows, q.dtype)
    if extra is not None:
        logits = logits + extra
    return logits.softmax(dim=-1)
