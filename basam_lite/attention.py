r"""One attention forward for every BA-SAM variant, on PyTorch's fused kernel.

For queries :math:`q_i` and keys :math:`k_j` on a (rows, cols) token grid (:math:`N` tokens,
row-major), every variant computes

.. math::
    o_i = \sum_j \mathrm{softmax}_j(\ell_{ij})\, v_j, \qquad
    \ell_{ij} = \lambda \frac{q_i \cdot k_j}{\sqrt d}
        + \underbrace{R^h_i[\mathrm{row}_j] + R^w_i[\mathrm{col}_j]}_{\text{SAM's rel-pos}}
        + \underbrace{M_h(i, j)}_{\text{BA-SAM mask}}

with :math:`\lambda` the BA-SAM scale (:mod:`basam_lite.scaling`), :math:`R^h, R^w` SAM's
decomposed relative-position terms (:math:`R^h_i[r] = c\, q_i \cdot P_h[\mathrm{row}_i - r]`,
:math:`c` the official code's coefficient or 1) and :math:`M_h(i, j) = -m_h\,
\mathrm{dist}(p_i, p_j)` the bias-mode mask (:mod:`basam_lite.masks`). :math:`\lambda` goes into
SDPA's ``scale``, the additive terms into its ``attn_mask``, always 4-D (a 3-D mask silently
falls back to the slow math kernel). All paths are exact in fp32 (about 1e-6 from the explicit
softmax).

Every metric is a function of the offset only, :math:`\mathrm{dist}(p_i, p_j) =
D[\mathrm{row}_i - \mathrm{row}_j,\ \mathrm{col}_i - \mathrm{col}_j]`, so one small table
:math:`T[c, u, c'] = D[\mathrm{rows} - 1 - u,\ c - c']` (``[cols, 2 rows - 1, cols]``,
:func:`relative_distances`) holds every mask row: the keys of query :math:`(r, c)` are
:math:`T[c,\ \mathrm{rows}-1-r : 2\,\mathrm{rows}-1-r,\ :]`. No :math:`N \times N` distance
matrix is needed beyond the dense path.

The paths (``path=`` of :func:`attend` and of :class:`~basam_lite.BASAMConfig`):

- ``"sdpa"``: no additive term at all, the plain fused kernel (the floor).
- ``"dense"``: the whole bias :math:`B = [R^h_i[\mathrm{row}_j] + R^w_i[\mathrm{col}_j] +
  M_h(i, j)]`, ``[B, H, N, N]``, in two passes (a broadcast add, then an ``addcmul_`` of
  :math:`-m_h` with the per-grid cached distance matrix) and one fused call. Memory
  :math:`4 B H N^2` bytes (0.75 GiB for ViT-B at 64 x 64 tokens).
- ``"chunked"``: query chunks of whole grid rows, each chunk's bias rows built on the fly into
  one buffer of at most :data:`CHUNK_BIAS_BYTES` (at least one grid row), one fused call per
  chunk: memory :math:`O(\text{chunk} \cdot N)` at any resolution. Chunks are large on
  purpose: every extra kernel launch is an OpenMP fork-join, which costs a scheduler time slice
  whenever other processes share the cores (measured on a loaded 2-core machine: 1-row chunks
  were about twice as slow as 256 MB chunks at 64 x 64 tokens). With a mask each chunk's
  queries are taken in reversed grid-row order (a chunk-sized copy of q and of its rel-pos rows;
  keys and values are never copied; the chunk's output rows are put back in order): the t-th
  reversed query row is :math:`r = \mathrm{last} - 1 - t`, and its distance to key
  :math:`(r', c')` is :math:`T[c,\ \mathrm{rows} - \mathrm{last} + t + r',\ c']`, a function of
  :math:`t + r'`, so the mask rows of a whole chunk are one view of :math:`T` with positive
  strides (``as_strided``), and the chunk's bias takes two passes whatever its size (one with
  the opt-in :mod:`basam_lite.compiled_bias`, which generates a loop for the whole formula):

  .. math::
      B_{(r,c),(r',c')} = R^h_{(r,c)}[r'] + R^w_{(r,c)}[c']
          - m_h\, T[c,\ \mathrm{rows} - \mathrm{last} + t + r',\ c'].

- ``"folded"``: the rel-pos term is an inner product in disguise. With one-hot key positions
  :math:`e_{\mathrm{row}_j} \in \mathbb{R}^{\mathrm{rows}}`, :math:`e_{\mathrm{col}_j} \in
  \mathbb{R}^{\mathrm{cols}}`,

  .. math::
      q'_i = \big[\tfrac{\lambda}{\sqrt d} q_i,\ R^h_i,\ R^w_i\big], \quad
      k'_j = \big[k_j,\ e_{\mathrm{row}_j},\ e_{\mathrm{col}_j}\big], \quad
      v'_j = [v_j,\ 0] \ \Rightarrow\ q'_i \cdot k'_j = \ell_{ij} - M_h(i, j),

  run with SDPA ``scale=1`` (``v`` zero-padded: the CPU flash kernel wants one head dim). A
  Manhattan mask folds too: :math:`-m_h(|\Delta r| + |\Delta c|)` adds
  :math:`-m_h |\mathrm{row}_i - r|` to :math:`R^h_i[r]` and :math:`-m_h |\mathrm{col}_i - c|`
  to :math:`R^w_i[c]`. Other masks are added per chunk as in ``"chunked"`` (no rel-pos in
  them). Memory :math:`O(N (d + \mathrm{rows} + \mathrm{cols}))`, and no gradient ever flows
  through ``attn_mask`` (unless the slopes are learned), so training keeps the fused kernel's
  backward, while a mask that requires grad makes SDPA fall back to its math kernel. The head
  dim grows from :math:`d` to :math:`d + \mathrm{rows} + \mathrm{cols}`: more compute than
  ``"chunked"`` on large grids.

A *general* bias (:attr:`AttentionBias.is_general`) is one the grid-row tricks above do not
cover: keys on another grid than the queries (a block that pools its queries, SAM 2's stage
transitions; queries then sit at the centre of the key cells they pool) or a family's dense
additive term :math:`T_{ij}` (MobileSAM's learned bias table). It runs on generic row paths:
``"dense"`` builds its whole ``[B, H, N_q, N_k]`` bias from explicit positions, ``"chunked"``
(also what ``"folded"`` and ``"auto"`` under autograd give) builds it per chunk of query rows,
out of place. Same results to fp32 rounding; such blocks are small (windows) or rare.

Without autograd the dense and chunked biases are written into a per-thread workspace kept
between calls, so repeated forwards do not page-fault a fresh buffer each time.

``"auto"`` (:func:`choose_path`): ``"sdpa"`` without bias; ``"folded"`` when autograd is on
(fused backward, no :math:`N^2` tensor saved); otherwise ``"dense"`` up to
:data:`DENSE_MAX_TOKENS` tokens while the dense bias fits :data:`DENSE_BIAS_BUDGET`, and
``"chunked"`` beyond. The thresholds were chosen from ``python -m basam_lite bench`` runs on a
2-core CPU; the current measured report is ``docs/benchmark.md`` (its attention-only rows time
the dense (where it fits), chunked and folded paths at the grids it was run with; rerun ``bench``
with other ``--grids`` to place the dense/chunked crossover on another machine). A dense bias
holds :math:`4 H N^2` bytes: 0.75 GiB for ViT-B's 12 heads at 64 x 64 tokens. Folded trades
speed for memory and is meant for training, not inference.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from . import compiled_bias
from .masks import Metric, grid_positions, pairwise_distance
from .scaling import check_choice

AttentionPath = Literal["auto", "sdpa", "dense", "chunked", "folded"]
ATTENTION_PATHS: tuple[str, ...] = get_args(AttentionPath)

# "auto" never builds a dense bias above this many bytes.
DENSE_BIAS_BUDGET = 1 << 30
# Above this many tokens "auto" prefers "chunked" even when the dense bias fits the budget
# (chosen from bench runs; docs/benchmark.md's attention-only rows compare the two paths).
DENSE_MAX_TOKENS = 48 * 48
# Bytes of bias rows built per query chunk on the chunked path (rounded to whole grid rows).
CHUNK_BIAS_BYTES = 256 << 20
# Distance matrices up to this many tokens are cached per grid for the dense path.
_CACHED_DISTANCE_TOKENS = 4096


@dataclass
class AttentionBias:
    r"""Everything added to the scaled logits of one attention call.

    Attributes:
        grid_hw: the (rows, cols) token grid; N = rows * cols queries and keys.
        rel_h: ``[B, H, N, rows]`` SAM's height rel-pos term (coefficient applied), or None.
        rel_w: ``[B, H, N, cols]`` SAM's width rel-pos term (coefficient applied), or None.
        slopes: ``[H]`` per-head mask slopes times the gain, or None for no mask.
        metric: the distance used by the mask.
        distance_scale: the unit of the mask's distances, in patches: the mask is
            :math:`-m_h\, s\, \mathrm{dist}(p_i, p_j)` with :math:`s` this number. 1 measures
            distances in patches of the current grid (the paper's mask);
            :func:`basam_lite.masks.base_unit_scale` measures them in patches of the base grid.
        key_grid_hw: the keys' (rows, cols) grid when it differs from the queries' (a pooling
            block: ``grid_hw`` is then the pooled query grid, ``rel_h [B, H, Nq, key rows]``,
            ``rel_w [B, H, Nq, key cols]``). Query (r, c) sits at the centre of the key cells it
            pools, :math:`((r + \tfrac12) s_r - \tfrac12,\ (c + \tfrac12) s_c - \tfrac12)` in
            key patches (:math:`s` = key rows / query rows, key cols / query cols), and the mask's
            distances are measured from there. None: the same grid as the queries.
        table: ``[B or 1, H, Nq, Nk]`` a family's dense additive position term (e.g. MobileSAM's
            learned per-head bias table, gathered for this window), or None.
        rel_rows: SAM's rel-pos terms on demand instead of ``rel_h`` / ``rel_w``:
            ``rel_rows(first, last)`` returns ``(rel_h, rel_w)`` of the queries in grid rows
            ``first .. last - 1`` only. The chunked path without autograd then computes them per
            chunk and never holds the whole ``N x (rows + cols)`` terms (192 MiB at 128 x 128
            tokens, ViT-B); every other path works on :meth:`materialized`.
    """

    grid_hw: tuple[int, int]
    rel_h: Tensor | None = None
    rel_w: Tensor | None = None
    slopes: Tensor | None = None
    metric: Metric = "euclidean"
    distance_scale: float = 1.0
    key_grid_hw: tuple[int, int] | None = None
    table: Tensor | None = None
    rel_rows: Callable[[int, int], tuple[Tensor, Tensor]] | None = None

    @property
    def is_empty(self) -> bool:
        return not self.has_rel_pos and self.slopes is None and self.table is None

    @property
    def has_rel_pos(self) -> bool:
        return (self.rel_h is not None and self.rel_w is not None) or self.rel_rows is not None

    def rel_pos_of(self, first: int, last: int) -> tuple[Tensor, Tensor]:
        """``(rel_h, rel_w)`` of the queries in grid rows ``first .. last - 1``
        (``[B, H, (last - first) * cols, rows]`` and ``[..., cols]``), computed on demand when
        the bias holds ``rel_rows``."""
        if self.rel_rows is not None:
            return self.rel_rows(first, last)
        assert self.rel_h is not None and self.rel_w is not None
        s, e = first * self.grid_hw[1], last * self.grid_hw[1]
        return self.rel_h[:, :, s:e], self.rel_w[:, :, s:e]

    def materialized(self) -> AttentionBias:
        """The same bias with ``rel_h`` / ``rel_w`` held whole (itself when it holds them)."""
        if self.rel_rows is None:
            return self
        rel_h, rel_w = self.rel_rows(0, self.grid_hw[0])
        return dataclasses.replace(self, rel_h=rel_h, rel_w=rel_w, rel_rows=None)

    @property
    def key_grid(self) -> tuple[int, int]:
        """The keys' (rows, cols) grid, which is ``key_grid_hw`` or, when that is None, the
        query grid."""
        return self.grid_hw if self.key_grid_hw is None else self.key_grid_hw

    @property
    def is_general(self) -> bool:
        """A bias the grid-row fast paths do not cover: keys on another grid than the queries
        (query pooling) or a dense ``table`` term. It runs on the generic row paths."""
        pooled = self.key_grid_hw is not None and tuple(self.key_grid_hw) != tuple(self.grid_hw)
        return pooled or self.table is not None

    @property
    def num_tokens(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    @property
    def num_keys(self) -> int:
        rows, cols = self.key_grid
        return rows * cols

    def requires_grad(self) -> bool:
        """Whether any tensor of the bias takes part in autograd."""
        tensors = (self.rel_h, self.rel_w, self.slopes, self.table)
        return any(t is not None and t.requires_grad for t in tensors)


Rows = slice | Tensor  # a run of query rows, or a 1-D index tensor of them


@functools.lru_cache(maxsize=8)
def relative_distances(grid_hw: tuple[int, int], metric: str, device: torch.device) -> Tensor:
    """The table ``T [cols, 2 rows - 1, cols]`` of every query-key distance on the grid.

    ``T[c, rows - 1 - r + r', c'] = dist((r, c), (r', c'))``, so the distances from query
    ``(r, c)`` to all keys (row-major) are ``T[c, rows - 1 - r : 2 rows - 1 - r].flatten()``.
    Cached per grid (``cols * (2 rows - 1) * cols`` floats); never modify it.
    """
    rows, cols = grid_hw
    query = torch.stack(
        [torch.full((cols,), rows - 1.0), torch.arange(cols, dtype=torch.float32)], dim=1
    ).to(device)
    keys = grid_positions((2 * rows - 1, cols), device=device)
    dist = pairwise_distance(query, keys, metric, cols=cols)  # type: ignore[arg-type]
    return dist.reshape(cols, 2 * rows - 1, cols)


@functools.lru_cache(maxsize=2)
def _all_distances(grid_hw: tuple[int, int], metric: str, device: torch.device) -> Tensor:
    pos = grid_positions(grid_hw, device=device)
    return pairwise_distance(pos, pos, metric, cols=grid_hw[1])  # type: ignore[arg-type]


def _grid_distances(grid_hw: tuple[int, int], metric: str, device: torch.device) -> Tensor:
    """``[N, N]`` distances, cached for small grids."""
    if grid_hw[0] * grid_hw[1] <= _CACHED_DISTANCE_TOKENS:
        return _all_distances(grid_hw, metric, device)
    return _all_distances.__wrapped__(grid_hw, metric, device)


def _neg_slopes(bias: AttentionBias, dtype: torch.dtype, ndim: int) -> Tensor:
    """``-slopes * distance_scale`` shaped ``[1, H, 1, ...]`` with ``ndim`` dims in all (every
    path multiplies its patch distances by this, so the distance unit is applied here only)."""
    assert bias.slopes is not None
    neg = -bias.slopes.to(dtype).reshape(1, -1, *([1] * (ndim - 2)))
    return neg if bias.distance_scale == 1.0 else neg * bias.distance_scale


def _aligned_rows(rows: Rows, grid_hw: tuple[int, int]) -> tuple[int, int] | None:
    """(first, last + 1) grid rows when ``rows`` is a slice of whole grid rows, else None."""
    if not isinstance(rows, slice) or rows.step not in (None, 1):
        return None
    n_rows, cols = grid_hw
    start, stop, _ = rows.indices(n_rows * cols)
    if start % cols or stop % cols or stop <= start:
        return None
    return start // cols, stop // cols


def query_positions(bias: AttentionBias, device: torch.device | None = None) -> Tensor:
    """``[Nq, 2]`` (row, col) of every query in key patches: the query grid itself, or for a
    pooled query grid the centre of the key cells each query pools (see
    :class:`AttentionBias`)."""
    pos = grid_positions(bias.grid_hw, device=device)
    if not bias.is_general or bias.key_grid == tuple(bias.grid_hw):
        return pos
    (rows, cols), (key_rows, key_cols) = bias.grid_hw, bias.key_grid
    stride = torch.tensor([key_rows / rows, key_cols / cols], device=device)
    return (pos + 0.5) * stride - 0.5  # (r + 1/2) s - 1/2: the centre of the pooled cells


def _general_mask_rows(bias: AttentionBias, rows: Rows, dtype: torch.dtype) -> Tensor:
    """The mask of a general bias (:attr:`AttentionBias.is_general`) for some query rows:
    ``[1, H, Q, Nk]``, from explicit query and key positions."""
    assert bias.slopes is not None
    device = bias.slopes.device
    keys = grid_positions(bias.key_grid, device=device)
    queries = query_positions(bias, device)[rows]
    dist = pairwise_distance(queries, keys, bias.metric, cols=bias.key_grid[1])
    return _neg_slopes(bias, dtype, 4) * dist.to(dtype)


def mask_rows(bias: AttentionBias, rows: Rows, dtype: torch.dtype) -> Tensor:
    """The bias-mode mask for the given query rows: ``[1, H, Q, N]``."""
    assert bias.slopes is not None
    if bias.is_general:
        return _general_mask_rows(bias, rows, dtype)
    device = bias.slopes.device
    aligned = _aligned_rows(rows, bias.grid_hw)
    if aligned is not None:
        return _grid_row_bias(_mask_only(bias), *aligned, dtype)
    if isinstance(rows, slice) and rows == slice(None):
        dist = _grid_distances(bias.grid_hw, bias.metric, device)
    else:
        pos = grid_positions(bias.grid_hw, device=device)
        dist = pairwise_distance(pos[rows], pos, bias.metric, cols=bias.grid_hw[1])
    return _neg_slopes(bias, dtype, 4) * dist.to(dtype)


def rel_pos_rows(
    rel_h: Tensor, rel_w: Tensor, rows: Rows, dtype: torch.dtype, out: Tensor | None = None
) -> Tensor:
    """SAM's rel-pos bias of some queries against every key, the one broadcast add of the
    module: ``rel_h[b, h, i, row_j] + rel_w[b, h, i, col_j]`` for the queries ``rows`` (a slice
    or an index tensor into the N queries), ``[B, H, Q, rows * cols]``; written into ``out``
    (``Q * rows * cols`` elements per (b, h)) when given, else out of place (autograd-safe).
    ``rel_h [B, H, N, rows]`` may have its last axis reversed (keys in reversed row order)."""
    rh = rel_h[:, :, rows, :, None].to(dtype)
    rw = rel_w[:, :, rows, None, :].to(dtype)
    b, h, q_len, n_rows, _ = rh.shape
    cols = rw.shape[-1]
    if out is None:
        return (rh + rw).reshape(b, h, q_len, n_rows * cols)
    torch.add(rh, rw, out=out.view(b, h, q_len, n_rows, cols))
    return out


def _mask_only(bias: AttentionBias) -> AttentionBias:
    return AttentionBias(
        bias.grid_hw, slopes=bias.slopes, metric=bias.metric, distance_scale=bias.distance_scale
    )


def _grid_row_bias(bias: AttentionBias, first: int, last: int, dtype: torch.dtype) -> Tensor:
    """The additive bias (original key order) for the queries of grid rows ``first .. last-1``:
    ``[B or 1, H, (last - first) * cols, N]``, out of place (autograd-safe)."""
    n_rows, cols = bias.grid_hw
    s, e = first * cols, last * cols
    q_len, n = e - s, n_rows * cols
    out = None
    if bias.has_rel_pos:
        assert bias.rel_h is not None and bias.rel_w is not None
        out = rel_pos_rows(bias.rel_h, bias.rel_w, slice(s, e), dtype)
    if bias.slopes is not None:
        table = relative_distances(bias.grid_hw, bias.metric, bias.slopes.device).to(dtype)
        dist = torch.stack(
            [table[:, n_rows - 1 - r : 2 * n_rows - 1 - r] for r in range(first, last)]
        ).reshape(1, 1, q_len, n)
        mask = _neg_slopes(bias, dtype, 4) * dist
        out = mask if out is None else out + mask
    assert out is not None
    return out


@functools.lru_cache(maxsize=8)
def _reversed_table(grid_hw: tuple[int, int], metric: str, device: torch.device) -> Tensor:
    r""":math:`T'[c, w, c'] = T[c, 2\,\mathrm{rows} - 2 - w, c']`, contiguous (cached)."""
    return relative_distances(grid_hw, metric, device).flip(1).contiguous()


def _hankel_distances(
    grid_hw: tuple[int, int], metric: str, device: torch.device, first: int, last: int
) -> Tensor:
    r"""Distances of the queries in grid rows ``first .. last - 1`` to the keys taken in
    *reversed* grid-row order, ``[last - first, cols, rows, cols]``, as one strided view.

    With key row :math:`r'' = \mathrm{rows} - 1 - r'`, the distance of query :math:`(r, c)` to
    key :math:`(r'', c')` is :math:`T'[c, r + r'', c']`: it depends on :math:`r + r''` (a
    Hankel pattern), so the rows of a whole chunk are a view with positive strides.
    """
    rows, cols = grid_hw
    table = _reversed_table(grid_hw, metric, device)  # [cols, 2 rows - 1, cols]
    return table.as_strided(
        (last - first, cols, rows, cols),
        (cols, (2 * rows - 1) * cols, cols, 1),
        table.storage_offset() + first * cols,
    )


def _flip_key_rows(x: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """``[..., N, d]`` with the grid rows of the sequence reversed (a copy)."""
    rows, cols = grid_hw
    return x.unflatten(-2, (rows, cols)).flip(-3).flatten(-3, -2)


def _reversed_key_bias(
    bias: AttentionBias,
    rel_h: Tensor | None,
    first: int,
    last: int,
    dtype: torch.dtype,
    out: Tensor | None,
) -> Tensor:
    r"""The bias of the queries in grid rows ``first .. last - 1`` against keys in reversed
    grid-row order, ``[B or 1, H, (last - first) * cols, N]``:
    :math:`R^h_i[\mathrm{rows} - 1 - r''] + R^w_i[c'] - m_h T'[c_i, r_i + r'', c']`.

    ``rel_h`` is in the original key order: only the chunk's rows of it are reversed (a copy of
    ``chunk x rows`` per head, not of the whole ``N x rows`` term). Without autograd the bias is
    written into ``out`` in two passes (a broadcast add, then one ``addcmul_`` with the Hankel
    view of the small distance table), whatever the number of grid rows in the chunk.
    """
    assert bias.slopes is not None
    n_rows, cols = bias.grid_hw
    s, e = first * cols, last * cols
    q_len, n = e - s, n_rows * cols
    h = bias.slopes.shape[0]
    dist = _hankel_distances(bias.grid_hw, bias.metric, bias.slopes.device, first, last).to(dtype)
    neg = _neg_slopes(bias, dtype, 6)
    has_rel = rel_h is not None and bias.rel_w is not None
    b = rel_h.shape[0] if rel_h is not None else 1
    if has_rel:
        assert rel_h is not None and bias.rel_w is not None
        rh_rev = rel_h[:, :, s:e].flip(-1)  # R^h_i[rows - 1 - r''] for the chunk's queries
        rw = bias.rel_w[:, :, s:e]
    if out is None:  # autograd
        mask = (neg * dist).reshape(1, h, q_len, n)
        if not has_rel:
            return mask
        return rel_pos_rows(rh_rev, rw, slice(None), dtype) + mask
    view = out.view(b, h, last - first, cols, n_rows, cols)
    if not has_rel:
        torch.mul(neg, dist, out=view)
        return out
    rel_pos_rows(rh_rev, rw, slice(None), dtype, out)
    view.addcmul_(neg, dist)
    return out


def bias_rows(bias: AttentionBias, rows: Rows, dtype: torch.dtype) -> Tensor | None:
    """The full additive bias for the given query rows: ``[B or 1, H, Q, N]``, or None."""
    if bias.is_empty:
        return None
    bias = bias.materialized()
    aligned = None if bias.is_general else _aligned_rows(rows, bias.grid_hw)
    if aligned is not None:
        return _grid_row_bias(bias, *aligned, dtype)
    out: Tensor | None = None
    if bias.has_rel_pos:
        assert bias.rel_h is not None and bias.rel_w is not None
        out = rel_pos_rows(bias.rel_h, bias.rel_w, rows, dtype)
    if bias.table is not None:
        t = bias.table[:, :, rows].to(dtype)
        out = t if out is None else out + t
    if bias.slopes is not None:
        m = mask_rows(bias, rows, dtype)
        out = m if out is None else out + m
    return out


def dense_bias_bytes(batch: int, heads: int, bias: AttentionBias, itemsize: int = 4) -> int:
    """Bytes a dense ``[B, H, Nq, Nk]`` bias would take."""
    b = batch if bias.has_rel_pos or bias.table is not None else 1
    return b * heads * bias.num_tokens * bias.num_keys * itemsize


def chunk_grid_rows(batch: int, heads: int, bias: AttentionBias, itemsize: int = 4) -> int:
    """Grid rows per query chunk: one chunk's bias takes at most :data:`CHUNK_BIAS_BYTES` (or
    one grid row), with the chunks evened out."""
    n_rows, cols = bias.grid_hw
    b = batch if bias.has_rel_pos or bias.table is not None else 1
    row_bytes = b * heads * cols * bias.num_keys * itemsize
    most = max(1, min(n_rows, CHUNK_BIAS_BYTES // max(row_bytes, 1)))
    chunks = -(-n_rows // most)
    return -(-n_rows // chunks)  # the same number of chunks, evened out


def choose_path(
    batch: int,
    heads: int,
    bias: AttentionBias,
    path: AttentionPath = "auto",
    *,
    requires_grad: bool = False,
) -> str:
    """The path to run: the requested one, or for ``"auto"`` the fastest that fits memory.

    ``"auto"``: ``"sdpa"`` without any bias; ``"folded"`` when gradients are needed (keeps the
    fused backward, no ``N^2`` tensor saved); else ``"dense"`` for grids up to
    :data:`DENSE_MAX_TOKENS` tokens whose dense bias fits :data:`DENSE_BIAS_BUDGET`, and
    ``"chunked"`` (memory ``O(chunk * N)``) beyond.

    A general bias (:attr:`AttentionBias.is_general`: pooled queries or a dense table) has no
    folded form: ``"folded"`` (asked for, or chosen under autograd) runs it ``"chunked"``, on
    the generic row path (bias rows built out of place from explicit positions).
    """
    check_choice(path, ATTENTION_PATHS, "attention path")
    if bias.is_empty:
        return "sdpa"
    if bias.is_general and (path == "folded" or (path == "auto" and requires_grad)):
        return "chunked"
    if path != "auto":
        return path
    if requires_grad:
        return "folded"
    small = bias.num_tokens <= DENSE_MAX_TOKENS
    if small and dense_bias_bytes(batch, heads, bias) <= DENSE_BIAS_BUDGET:
        return "dense"
    return "chunked"


def _needs_grad(q: Tensor, k: Tensor, v: Tensor, bias: AttentionBias) -> bool:
    return torch.is_grad_enabled() and (
        q.requires_grad or k.requires_grad or v.requires_grad or bias.requires_grad()
    )


def attend(
    q: Tensor, k: Tensor, v: Tensor, scale: float, bias: AttentionBias, path: AttentionPath = "auto"
) -> Tensor:
    """Attention output ``[B, H, N, d]`` for ``q, k, v [B, H, N, d]`` with logit multiplier
    ``scale`` (lambda / sqrt(d)) and the additive terms in ``bias``."""
    grad = _needs_grad(q, k, v, bias)
    chosen = choose_path(q.shape[0], q.shape[1], bias, path, requires_grad=grad)
    if chosen != "chunked" or grad or bias.is_general:  # only that path takes rows on demand
        bias = bias.materialized()
    if chosen == "sdpa":
        if not bias.is_empty:  # an explicit "sdpa" request must not silently drop a bias
            raise ValueError("path 'sdpa' runs without bias; use 'auto' for a biased attention")
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    if bias.is_general:
        return _general(q, k, v, scale, bias, whole=chosen == "dense")
    if chosen == "dense":
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=_dense_bias(bias, q.dtype, grad), scale=scale
        )
    if chosen == "folded":
        return _folded(q, k, v, scale, bias, grad)
    return _chunked(q, k, v, scale, bias, grad)


def _dense_bias(bias: AttentionBias, dtype: torch.dtype, grad: bool) -> Tensor:
    """The whole ``[B or 1, H, N, N]`` bias: rel-pos broadcast add, then ``-m_h * dist``."""
    n = bias.num_tokens
    out: Tensor | None = None
    if bias.has_rel_pos:
        assert bias.rel_h is not None and bias.rel_w is not None
        b, h = bias.rel_h.shape[:2]
        every = slice(None)
        if grad:
            out = rel_pos_rows(bias.rel_h, bias.rel_w, every, dtype)
        else:
            out = _workspace(b * h * n * n, dtype, bias.rel_h.device).view(b, h, n, n)
            rel_pos_rows(bias.rel_h, bias.rel_w, every, dtype, out)
    if bias.slopes is not None:
        dist = _grid_distances(bias.grid_hw, bias.metric, bias.slopes.device).to(dtype)
        neg = _neg_slopes(bias, dtype, 4)
        if out is None:
            out = neg * dist
        elif grad:
            out = torch.addcmul(out, neg, dist)
        else:
            out.addcmul_(neg, dist)
    assert out is not None
    return out


_local = threading.local()


def _workspace(numel: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A flat buffer of ``numel`` elements for bias rows, reused across calls (per thread, dtype
    and device) so that repeated forwards do not pay fresh page faults for it every time. Only
    buffers up to twice :data:`CHUNK_BIAS_BYTES` are kept; never used under autograd."""
    nbytes = numel * torch.finfo(dtype).bits // 8
    if nbytes > 2 * CHUNK_BIAS_BYTES:
        return torch.empty(numel, dtype=dtype, device=device)
    key = (dtype, device)
    cache: dict = _local.__dict__.setdefault("buffers", {})
    buf = cache.get(key)
    if buf is None or buf.numel() < numel:
        cache.pop(key, None)
        buf = cache[key] = torch.empty(numel, dtype=dtype, device=device)
    return buf[:numel]


def release_workspace() -> int:
    """Drop this thread's kept bias buffers (:func:`_workspace`), e.g. after a large forward
    when the memory is wanted elsewhere; the next chunked call allocates again. Returns the bytes
    released."""
    cache: dict = _local.__dict__.setdefault("buffers", {})
    freed = sum(buf.numel() * buf.element_size() for buf in cache.values())
    cache.clear()
    return freed


def _chunked(
    q: Tensor, k: Tensor, v: Tensor, scale: float, bias: AttentionBias, grad: bool
) -> Tensor:
    """Query chunks of whole grid rows, each with its bias rows built on the fly into one
    reused buffer (out of place under autograd). With a mask, each chunk's queries are taken in
    reversed grid-row order (a chunk-sized copy; keys and values stay as they are) so that the
    chunk's mask rows are one strided view (:func:`_reversed_query_distances`); the chunk's
    output rows are put back in order."""
    b, h = q.shape[:2]
    n_rows, cols = bias.grid_hw
    n = bias.num_tokens
    step = chunk_grid_rows(b, h, bias, q.element_size())
    bb = b if bias.has_rel_pos else 1
    buf = None if grad else _workspace(bb * h * step * cols * n, q.dtype, q.device)
    masked = bias.slopes is not None
    outs = []
    # Without autograd each chunk's output goes straight into the result: no list of chunks and
    # no concatenated copy beside it (one B x H x N x d tensor less at the peak).
    result = None if grad or n_rows <= step else q.new_empty(*q.shape[:3], v.shape[-1])
    for first in range(0, n_rows, step):
        last = min(n_rows, first + step)
        s, e = first * cols, last * cols
        out = None if buf is None else buf[: bb * h * (e - s) * n].view(bb, h, e - s, n)
        if masked:
            mask = _reversed_query_bias(bias, first, last, q.dtype, out)
            q_chunk = _flip_query_rows(q[:, :, s:e], cols)
        else:
            rel_h, rel_w = bias.rel_pos_of(first, last)
            mask = rel_pos_rows(rel_h, rel_w, slice(None), q.dtype, out)
            q_chunk = q[:, :, s:e]
        chunk = F.scaled_dot_product_attention(q_chunk, k, v, attn_mask=mask, scale=scale)
        if masked:
            chunk = _flip_query_rows(chunk, cols)
        if result is None:
            outs.append(chunk)
        else:
            result[:, :, s:e] = chunk
    if result is not None:
        return result
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def _flip_query_rows(x: Tensor, cols: int) -> Tensor:
    """``[..., Q, d]`` (Q a whole number of grid rows of ``cols`` tokens) with its grid rows in
    reversed order (a copy; its own inverse)."""
    return x.unflatten(-2, (x.shape[-2] // cols, cols)).flip(-3).flatten(-3, -2)


def _reversed_query_distances(
    grid_hw: tuple[int, int], metric: str, device: torch.device, first: int, last: int
) -> Tensor:
    r"""Distances of the queries in grid rows ``last - 1, last - 2, ..., first`` (reversed) to
    every key (natural order), ``[last - first, cols, rows, cols]``, as one strided view of the
    small table :math:`T` (:func:`relative_distances`).

    The t-th reversed query row is :math:`r = \mathrm{last} - 1 - t`, and its distance to key
    :math:`(r', c')` from column :math:`c` is :math:`T[c,\ \mathrm{rows} - 1 - r + r',\ c'] =
    T[c,\ \mathrm{rows} - \mathrm{last} + t + r',\ c']`: a function of :math:`t + r'` with
    positive strides in both.
    """
    rows, cols = grid_hw
    table = relative_distances(grid_hw, metric, device)  # [cols, 2 rows - 1, cols]
    return table.as_strided(
        (last - first, cols, rows, cols),
        (cols, (2 * rows - 1) * cols, cols, 1),
        table.storage_offset() + (rows - last) * cols,
    )


def _reversed_query_bias(
    bias: AttentionBias, first: int, last: int, dtype: torch.dtype, out: Tensor | None
) -> Tensor:
    r"""The bias of the queries in grid rows ``first .. last - 1`` taken in reversed grid-row
    order against every key in its own order, ``[B or 1, H, (last - first) * cols, N]``:
    :math:`R^h_i[r'] + R^w_i[c'] - m_h T[c_i, \mathrm{rows} - 1 - r_i + r', c']`.

    Without autograd it is written into ``out`` in two passes (a broadcast add of the chunk's
    rel-pos rows, then one ``addcmul_`` with the strided distance view), whatever the number of
    grid rows in the chunk; in one pass where :mod:`basam_lite.compiled_bias` is turned on.
    """
    assert bias.slopes is not None
    n_rows, cols = bias.grid_hw
    s, e = first * cols, last * cols
    q_len, n = e - s, n_rows * cols
    h = bias.slopes.shape[0]
    dist = _reversed_query_distances(bias.grid_hw, bias.metric, bias.slopes.device, first, last)
    dist = dist.to(dtype)
    neg = _neg_slopes(bias, dtype, 6)
    has_rel = bias.has_rel_pos
    b = 1
    if has_rel:
        rel_h, rel_w = bias.rel_pos_of(first, last)
        rh = _flip_query_rows(rel_h, cols)  # the chunk's R^h rows, reversed
        rw = _flip_query_rows(rel_w, cols)
        b = rh.shape[0]
    if out is None:  # autograd
        mask = (neg * dist).reshape(1, h, q_len, n)
        if not has_rel:
            return mask
        return rel_pos_rows(rh, rw, slice(None), dtype) + mask
    length = last - first
    view = out.view(b, h, length, cols, n_rows, cols)
    if not has_rel:
        torch.mul(neg, dist, out=view)
        return out
    rh, rw = rh.to(dtype), rw.to(dtype)
    rh_rows = rh.reshape(b, h, length, cols, n_rows, 1)
    rw_rows = rw.reshape(b, h, length, cols, 1, cols)
    if compiled_bias.write_rows(view, rh_rows, rw_rows, neg, dist):  # one pass, opt-in
        return out
    rel_pos_rows(rh, rw, slice(None), dtype, out)
    view.addcmul_(neg, dist)
    return out


def _general(
    q: Tensor, k: Tensor, v: Tensor, scale: float, bias: AttentionBias, whole: bool
) -> Tensor:
    """A general bias (pooled queries, a dense table): its rows built out of place by
    :func:`bias_rows` from explicit positions, all at once (``whole``) or per chunk of query
    grid rows of at most :data:`CHUNK_BIAS_BYTES`."""
    n_q = bias.num_tokens
    if q.shape[-2] != n_q or k.shape[-2] != bias.num_keys:
        raise ValueError(
            f"q has {q.shape[-2]} tokens and k {k.shape[-2]}, but the bias is for a "
            f"{bias.grid_hw} query grid and a {bias.key_grid} key grid"
        )
    if whole:
        mask = bias_rows(bias, slice(None), q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    cols = bias.grid_hw[1]
    step = chunk_grid_rows(q.shape[0], q.shape[1], bias, q.element_size()) * cols
    outs = []
    for s in range(0, n_q, step):
        rows = slice(s, min(n_q, s + step))
        mask = bias_rows(bias, rows, q.dtype)
        outs.append(
            F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=mask, scale=scale)
        )
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


@functools.lru_cache(maxsize=8)
def _one_hot_positions(
    grid_hw: tuple[int, int], device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``[N, rows + cols]``: ``[e_row_j, e_col_j]`` for every key j (row-major)."""
    rows, cols = grid_hw
    j = torch.arange(rows * cols, device=device)
    out = torch.zeros(rows * cols, rows + cols, device=device, dtype=dtype)
    out[j, j // cols] = 1
    out[j, rows + j % cols] = 1
    return out


def _folded(
    q: Tensor, k: Tensor, v: Tensor, scale: float, bias: AttentionBias, grad: bool
) -> Tensor:
    """Rel-pos (and a Manhattan mask) folded into q and k; other masks per chunk of grid rows."""
    b, h, n, d = q.shape
    n_rows, cols = bias.grid_hw
    if bias.has_rel_pos:
        assert bias.rel_h is not None and bias.rel_w is not None
        rel_h, rel_w = bias.rel_h.to(q.dtype), bias.rel_w.to(q.dtype)
    else:
        rel_h = q.new_zeros(1, h, n, n_rows)
        rel_w = q.new_zeros(1, h, n, cols)
    rest = bias.slopes
    if bias.slopes is not None and bias.metric == "manhattan":
        pos = grid_positions(bias.grid_hw, device=q.device)
        r = torch.arange(n_rows, device=q.device, dtype=q.dtype)
        c = torch.arange(cols, device=q.device, dtype=q.dtype)
        neg = _neg_slopes(bias, q.dtype, 4)
        rel_h = rel_h + neg * (pos[:, :1].to(q.dtype) - r).abs()
        rel_w = rel_w + neg * (pos[:, 1:].to(q.dtype) - c).abs()
        rest = None
    bq = max(b, rel_h.shape[0])
    q2 = torch.cat(
        [(q * scale).expand(bq, h, n, d), rel_h.expand(bq, h, n, -1), rel_w.expand(bq, h, n, -1)],
        dim=-1,
    )
    one_hot = _one_hot_positions(bias.grid_hw, q.device, q.dtype)
    k2 = torch.cat([k, one_hot.expand(b, h, n, n_rows + cols)], dim=-1)
    v2 = F.pad(v, (0, n_rows + cols))
    if rest is None:
        return F.scaled_dot_product_attention(q2, k2, v2, scale=1.0)[..., :d]
    # The part that does not fold: mask rows per chunk of grid rows, keys in reversed grid-row
    # order so that each chunk's mask is one strided view of the small distance table.
    mask_bias = AttentionBias(
        bias.grid_hw, slopes=rest, metric=bias.metric, distance_scale=bias.distance_scale
    )
    k2, v2 = _flip_key_rows(k2, bias.grid_hw), _flip_key_rows(v2, bias.grid_hw)
    step = chunk_grid_rows(1, h, mask_bias, q.element_size())
    # Under autograd SDPA saves each chunk's mask for its backward: no buffer reuse then.
    buf = None if grad else _workspace(h * step * cols * n, q.dtype, q.device)
    outs = []
    for first in range(0, n_rows, step):
        last = min(n_rows, first + step)
        s, e = first * cols, last * cols
        out = None if buf is None else buf[: h * (e - s) * n].view(1, h, e - s, n)
        mask = _reversed_key_bias(mask_bias, None, first, last, q.dtype, out)
        outs.append(
            F.scaled_dot_product_attention(q2[:, :, s:e], k2, v2, attn_mask=mask, scale=1.0)
        )
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out[..., :d]


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
