"""Checkers for notebook 02 (resolution is sequence length)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..analysis import token_table
from ..resolution import resample_pos_embed
from . import Verdict, close, verdict
from .mistakes import check_with_mistakes

DENSE_CASES = ((256, 6), (512, 12), (768, 12), (1024, 16), (2048, 16), (1536, 12))
"""(side px, heads) the dense-memory checker tries (16 px patches)."""


def check_dense_gib(learner: Callable[[int, int], float]) -> Verdict:
    """A learner's ``dense_gib(side, heads)``: GiB of one dense fp32 ``[heads, N, N]`` attention
    tensor at ``side`` x ``side`` px with 16 px patches, against
    :func:`basam_lite.analysis.token_table`, within a relative 1e-6."""
    cases = list(DENSE_CASES)

    def reference(side: int, heads: int) -> float:
        return float(token_table([side], heads=heads)["dense_attention_GiB"].iloc[0])

    def n(side: int) -> int:
        return (side // 16) ** 2

    mistakes = [
        ("forgot the 4 bytes per fp32 number", lambda s, h: h * n(s) ** 2 / 2**30),
        ("that is in GB (1e9 bytes); 1 GiB = 2**30 bytes", lambda s, h: h * n(s) ** 2 * 4 / 1e9),
        ("N x N, not N: every query has a score for every key", lambda s, h: h * n(s) * 4 / 2**30),
        ("forgot the heads: one [N, N] matrix per head", lambda s, h: n(s) ** 2 * 4 / 2**30),
        ("N counts 16 px patches, not pixels", lambda s, h: h * (s * s) ** 2 * 4 / 2**30),
    ]
    return check_with_mistakes(
        learner,
        reference,
        cases,
        mistakes,
        rtol=1e-6,
        atol=0,
        right="heads x N^2 x 4 bytes: memory grows like side^4.",
    )


def resize_cases(seed: int = 0) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """Seeded random tables ``[1, g, g, C]`` and target grids, most of them not square."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(1, 4, 4, 3, generator=g), (6, 10)),
        (torch.randn(1, 8, 8, 5, generator=g), (16, 16)),
        (torch.randn(1, 6, 6, 2, generator=g), (3, 9)),
        (torch.randn(1, 5, 5, 4, generator=g), (12, 7)),
    ]


def check_resize(learner: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]) -> Verdict:
    """A learner's ``resize(pos_embed [1, g, g, C], (rows, cols)) -> [1, rows, cols, C]``
    against :func:`basam_lite.resolution.resample_pos_embed` (bicubic, corners not aligned),
    within 1e-5."""
    cases = resize_cases()
    pe, (rows, cols) = cases[0]
    try:
        shape = tuple(np.shape(learner(pe, (rows, cols))))
    except Exception:  # the learner's code: check_implementation reports the error
        shape = ()
    if shape == (1, cols, rows, pe.shape[-1]):
        return verdict(
            False,
            "",
            f"case 0: shape {shape}: rows and columns are swapped; "
            "F.interpolate takes size=(rows, cols).",
        )
    if shape == (1, pe.shape[-1], rows, cols):
        return verdict(
            False,
            "",
            f"case 0: shape {shape}: permute the channels back last, "
            "[1, C, rows, cols] -> [1, rows, cols, C].",
        )

    def interp(**kw):
        def fn(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
            return F.interpolate(t.permute(0, 3, 1, 2), size=size, **kw).permute(0, 2, 3, 1)

        return fn

    mistakes = [
        ("that is bilinear; the baseline is bicubic", interp(mode="bilinear", align_corners=False)),
        (
            "align_corners=True: use align_corners=False, as the baseline does",
            interp(mode="bicubic", align_corners=True),
        ),
        ("that is nearest-neighbour; the baseline is bicubic", interp(mode="nearest")),
        (
            "antialias=True: the baseline does not antialias",
            interp(mode="bicubic", align_corners=False, antialias=True),
        ),
    ]
    return check_with_mistakes(
        learner,
        resample_pos_embed,
        cases,
        mistakes,
        rtol=1e-5,
        atol=1e-5,
        right="bicubic resampling of every channel over the grid, as the baseline does.",
    )


def check_keys_prediction(
    predicted: object, measured: tuple[int, int], side: int, patch: int = 16
) -> Verdict:
    """A predicted ``(windowed keys, global keys)`` per softmax row at ``side`` px against
    ``measured`` (counted from captured attention maps); a wrong prediction's hint never gives
    the measured counts."""
    try:
        w, g = (float(v) for v in predicted)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return verdict(False, "", "give two numbers: (windowed keys, global keys).")
    mw, mg = measured
    if not close(w, mw, rel=0, abs_tol=0.5):
        hint = (
            "a windowed block's rows do not grow with the image: a query sees only its window."
            if w > mw
            else "a windowed block sees a whole window of keys (window side squared)."
        )
    elif close(g, (side // patch), rel=0, abs_tol=0.5):
        hint = "that is one side of the token grid; a global row has a key for every token."
    else:
        hint = (
            "a global block's row has one key per token of the image: how many tokens at this side?"
        )
    return verdict(
        close(w, mw, rel=0, abs_tol=0.5) and close(g, mg, rel=0, abs_tol=0.5),
        f"measured {mw} and {mg} keys: windows stay the same, global rows follow the image.",
        hint,
    )


# --- build it: a global block's BA-SAM attention --------------------------------------------------


@dataclass(frozen=True)
class GlobalBlockInputs:
    """What one global block's attention receives, read from the block itself during a forward.

    Attributes:
        q, k, v: ``[B, heads, N, d]`` the block's queries, keys and values (N = rows * cols
            tokens, row-major: token ``j`` sits at row ``j // cols``, column ``j % cols``).
        lam: BA-SAM's scale lambda for this sequence length (1 at the base size).
        rel_h: ``[B, heads, N, rows]`` SAM's decomposed relative-position term along the height:
            ``rel_h[b, h, i, r]`` is added to the logit of query ``i`` and every key in row ``r``.
        rel_w: ``[B, heads, N, cols]`` the same along the width, for every key in column ``c``.
        mask: ``[1, heads, N, N]`` BA-SAM's bias-mode mask M.
        side: the input side (px) the block ran at.
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    lam: float
    rel_h: torch.Tensor
    rel_w: torch.Tensor
    mask: torch.Tensor
    side: int

    @property
    def grid_hw(self) -> tuple[int, int]:
        return self.rel_h.shape[-1], self.rel_w.shape[-1]

    def args(self) -> tuple:
        """The arguments of the learner's function, in order."""
        return (self.q, self.k, self.v, self.lam, self.rel_h, self.rel_w, self.mask)


def global_block_inputs(sam: object, side: int, block: int | None = None) -> GlobalBlockInputs:
    """Run ``sam``'s encoder on a seeded procedural scene at ``side`` px with BA-SAM's paper
    preset and read the inputs of global block ``block`` (the first when None). The model is
    returned to its previous size and patch afterwards."""
    from ..analysis import global_blocks
    from ..datasets import ProceduralScenes
    from ..encoders.sam1 import decomposed_rel_pos
    from ..masks import bias_mode_mask
    from ..patch import BASAMConfig
    from ..predictor import to_rgb_uint8
    from ..resolution import base_size, patch_size
    from ..scaling import attention_scale
    from ..variants import variant_at

    encoder = sam.image_encoder  # type: ignore[attr-defined]
    b = global_blocks(sam)[0] if block is None else block  # type: ignore[arg-type]
    attn = encoder.blocks[b].attn
    seen: dict[str, torch.Tensor] = {}
    handle = attn.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
    image = ProceduralScenes(1, seed=0).sample(0, size=side).image
    rgb = torch.as_tensor(to_rgb_uint8(np.asarray(image))).permute(2, 0, 1).float()
    try:
        with variant_at(sam, BASAMConfig.paper(), side), torch.no_grad():  # type: ignore[arg-type]
            encoder(sam.preprocess(rgb)[None])  # type: ignore[attr-defined]
    finally:
        handle.remove()
    x = seen["x"]  # [B, rows, cols, C], the block's input after its norm
    bsz, rows, cols, _ = x.shape
    n, heads = rows * cols, attn.num_heads
    with torch.no_grad():
        q, k, v = attn.qkv(x).reshape(bsz, n, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        rel_h, rel_w = decomposed_rel_pos(q, attn.rel_pos_h, attn.rel_pos_w, (rows, cols))
    patch = patch_size(encoder)
    base_rows, base_cols = (s // patch for s in base_size(encoder))
    return GlobalBlockInputs(
        q=q,
        k=k,
        v=v,
        lam=attention_scale(n, train_keys=base_rows * base_cols),
        rel_h=rel_h,
        rel_w=rel_w,
        mask=bias_mode_mask((rows, cols), heads),
        side=side,
    )


def library_attention(q, k, v, lam, rel_h, rel_w, mask) -> torch.Tensor:
    """The library's attention for the arguments of :class:`GlobalBlockInputs`, ``[B, heads, N,
    d]``: :func:`basam_lite.attention.attend` with the scale lambda / sqrt(d), SAM's rel-pos terms
    and the mask's slopes (read back from ``mask``: it is ``-m_h`` times the distance)."""
    from ..attention import AttentionBias, attend
    from ..masks import grid_distances

    grid = (rel_h.shape[-1], rel_w.shape[-1])
    dist = grid_distances(grid)
    j = int(torch.argmax(dist[0]))  # the key farthest from token 0
    slopes = -mask[0, :, 0, j] / dist[0, j]
    bias = AttentionBias(grid, rel_h=rel_h, rel_w=rel_w, slopes=slopes)
    return attend(q, k, v, lam * q.shape[-1] ** -0.5, bias, path="dense")


def _rel_pos(rel_h: torch.Tensor, rel_w: torch.Tensor, swap: bool = False) -> torch.Tensor:
    """``R[b, h, i, j] = rel_h[b, h, i, row_j] + rel_w[b, h, i, col_j]``: ``[B, H, N, N]``."""
    rows, cols = rel_h.shape[-1], rel_w.shape[-1]
    if swap:  # the typical slip on a square grid: rel_h read along the columns
        return (rel_h[..., None, :] + rel_w[..., :, None]).flatten(-2)
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(*rel_h.shape[:-1], rows * cols)


def _attention_mistakes() -> list[tuple[str, Callable]]:
    def run(logits: Callable) -> Callable:
        def fn(q, k, v, lam, rel_h, rel_w, mask):
            content = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
            return (
                logits(content, lam, _rel_pos(rel_h, rel_w), mask, rel_h, rel_w, q).softmax(-1) @ v
            )

        return fn

    return [
        (
            "lambda multiplies the rel-pos term and the mask too: the scale is applied after the "
            "mask is added",
            run(lambda c, lam, r, m, *_: lam * (c + r + m)),
        ),
        (
            "lambda multiplies SAM's rel-pos term too",
            run(lambda c, lam, r, m, *_: lam * (c + r) + m),
        ),
        ("SAM's rel-pos term is missing", run(lambda c, lam, r, m, *_: lam * c + m)),
        (
            "the mask's sign is flipped: M is already a penalty",
            run(lambda c, lam, r, m, *_: lam * c + r - m),
        ),
        ("the bias-mode mask is missing", run(lambda c, lam, r, m, *_: lam * c + r)),
        ("lambda is missing", run(lambda c, lam, r, m, *_: c + r + m)),
        (
            "the content logit is not divided by sqrt(d)",
            run(lambda c, lam, r, m, rh, rw, q: lam * c * q.shape[-1] ** 0.5 + r + m),
        ),
        (
            "the content logit is divided by d, not sqrt(d)",
            run(lambda c, lam, r, m, rh, rw, q: lam * c / q.shape[-1] ** 0.5 + r + m),
        ),
        (
            "rel_h and rel_w are read the wrong way round: rel_h goes with the key's row",
            run(lambda c, lam, r, m, rh, rw, q: lam * c + _rel_pos(rh, rw, swap=True) + m),
        ),
        (
            "the softmax runs over the queries: each query's weights over the keys must sum to 1",
            lambda q, k, v, lam, rh, rw, m: (
                (lam * q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 + _rel_pos(rh, rw) + m).softmax(
                    -2
                )
                @ v
            ),
        ),
    ]


def synthetic_block_inputs(seed: int = 0) -> GlobalBlockInputs:
    """A seeded stand-in for :func:`global_block_inputs` on a non-square 3 x 5 grid, 3 heads,
    lambda 1.3 and rel-pos terms as large as the content logits (so every mistake shows)."""
    from ..masks import bias_mode_mask

    g = torch.Generator().manual_seed(seed)
    rows, cols, heads, d = 3, 5, 3, 8
    n = rows * cols
    q, k, v = (torch.randn(1, heads, n, d, generator=g) for _ in range(3))
    return GlobalBlockInputs(
        q=q,
        k=k,
        v=v,
        lam=1.3,
        rel_h=torch.randn(1, heads, n, rows, generator=g),
        rel_w=torch.randn(1, heads, n, cols, generator=g),
        mask=bias_mode_mask((rows, cols), heads),
        side=0,
    )


def attention_cases(sam: object | None) -> list[tuple]:
    """The checker's cases: the model's first global block at half its base side and a little
    above (when ``sam`` is given), and :func:`synthetic_block_inputs` (a square 4 x 4 grid, for
    the rows-and-columns slip, and a non-square one)."""
    from ..masks import bias_mode_mask

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 16, 8, generator=g) for _ in range(3))
    rel_h, rel_w = (torch.randn(1, 2, 16, 4, generator=g) for _ in range(2))
    cases = [
        synthetic_block_inputs().args(),
        (q, k, v, 0.8, rel_h, rel_w, bias_mode_mask((4, 4), 2)),
    ]
    if sam is not None:
        from ..resolution import base_size, patch_size

        base = base_size(sam.image_encoder)[0]  # type: ignore[attr-defined]
        patch = patch_size(sam.image_encoder)  # type: ignore[attr-defined]
        for side in (base // 2, base // 2 + 2 * patch):
            cases.append(global_block_inputs(sam, side).args())
    return cases


def check_basam_attention(learner: Callable, sam: object | None = None) -> Verdict:
    """Build it: ``learner(q, k, v, lam, rel_h, rel_w, mask)`` returns a global block's BA-SAM
    attention output ``[B, heads, N, d]`` from the block's own inputs
    (:class:`GlobalBlockInputs`); compared with the library's (:func:`library_attention`, which
    is what the patched block computes) on synthetic cases and on ``sam``'s first global block at
    two sizes, within 1e-4. A wrong answer names the typical mistake it reproduces."""
    return check_with_mistakes(
        learner,
        library_attention,
        attention_cases(sam),
        _attention_mistakes(),
        rtol=1e-4,
        atol=1e-5,
        right="your attention is the library's: the block's own output, at every size tried.",
    )
