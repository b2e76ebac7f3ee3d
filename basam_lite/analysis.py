r"""Numbers the notebooks plot: token counts, lambda tables, softmax entropy, attention statistics.

Entropy of one attention row :math:`p` over :math:`n` keys is
:math:`H(p) = -\sum_j p_j \ln p_j`, at most :math:`\ln n` (uniform attention); the mean attention
distance of a query at :math:`p_i` is :math:`\sum_j p_j \lVert p_i - p_j \rVert`, in pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from segment_anything.modeling import Sam
from torch import Tensor

from .capture import capture_attention
from .masks import grid_positions
from .patch import BASAMConfig, apply_basam, remove_basam
from .resolution import input_size, patch_size, restore_input_size, set_input_size
from .scaling import attention_scale


def lambda_table(sides: Iterable[int], patch: int = 16, train_side: int = 1024) -> pd.DataFrame:
    """lambda per input side: the paper's rule and the official integer rule (None: it fails)."""
    train_keys = (train_side // patch) ** 2
    rows = []
    for side in sides:
        n = (side // patch) ** 2
        try:
            official: float | None = attention_scale(n, train_keys, "official")
        except ValueError:
            official = None
        rows.append(
            {
                "side": side,
                "tokens": n,
                "log_ratio": attention_scale(n, train_keys),
                "official": official,
            }
        )
    return pd.DataFrame(rows)


def token_table(
    sides: Iterable[int], patch: int = 16, window: int = 14, heads: int = 12
) -> pd.DataFrame:
    """What resolution does to sequence length, per square input side (SAM ViT-B defaults).

    Columns: grid side, tokens, keys per softmax row in global and in windowed blocks, number
    of windows (with padding), and the size of one dense fp32 ``[heads, N, N]`` attention tensor.
    """
    rows = []
    for side in sides:
        g = side // patch
        n = g * g
        wins = (-(-g // window)) ** 2
        rows.append(
            {
                "side": side,
                "grid": g,
                "tokens": n,
                "global_keys": n,
                "window_keys": window * window,
                "windows": wins,
                "dense_attention_GiB": heads * n * n * 4 / 2**30,
            }
        )
    return pd.DataFrame(rows)


def entropy(probs: Tensor) -> Tensor:
    """Entropy in nats of each row of ``probs [..., n]``."""
    p = probs.clamp_min(1e-30)
    return -(probs * p.log()).sum(-1)


def softmax_fading(
    lengths: Sequence[int],
    head_dim: int = 64,
    train_keys: int = 4096,
    queries: int = 64,
    seed: int = 0,
    logit_std: float = 3.0,
) -> pd.DataFrame:
    """Entropy and largest weight of softmax rows over ``n`` random keys, with and without the
    BA-SAM scale (``lambda = ln n / ln train_keys``).

    Keys are i.i.d. Gaussian and the query is correlated with one "relevant" key, so there is a
    winner whose weight fades as distractor keys are added. ``logit_std`` sets the spread of
    q.k/sqrt(d).
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        k = torch.randn(queries, n, head_dim, generator=g)
        q = k[:, 0] + 0.5 * torch.randn(queries, head_dim, generator=g)
        logits = logit_std * torch.einsum("qd,qnd->qn", q, k) / head_dim
        for mode in ("none", "log_ratio"):
            lam = attention_scale(n, train_keys, mode)  # type: ignore[arg-type]
            p = (lam * logits).softmax(-1)
            rows.append(
                {
                    "keys": n,
                    "scale": mode,
                    "lambda": lam,
                    "entropy": entropy(p).mean().item(),
                    "normalised_entropy": (entropy(p) / np.log(n)).mean().item(),
                    "max_weight": p.max(-1).values.mean().item(),
                    "relevant_weight": p[:, 0].mean().item(),
                }
            )
    return pd.DataFrame(rows)


def mean_attention_distance(
    probs: Tensor, grid_hw: tuple[int, int], query_pos: Tensor, patch: int = 16
) -> Tensor:
    """Expected query-key distance in pixels: ``probs [B, H, Q, N]`` -> ``[B, H, Q]``."""
    keys = grid_positions(grid_hw, device=probs.device)
    d = torch.cdist(query_pos.float().to(probs.device), keys)  # [Q, N] in tokens
    return (probs * d).sum(-1) * patch


def attention_statistics(
    sam: Sam,
    image: Tensor | np.ndarray,
    sides: Sequence[int],
    configs: dict[str, BASAMConfig],
    blocks: Sequence[int] | None = None,
    num_queries: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Entropy and mean attention distance of global blocks, per input side and variant.

    ``image`` is an ``(H, W, 3)`` uint8 array; it is resized to each side (square). Queries are
    ``num_queries`` token positions drawn once per side (seeded). Returns one row per
    (side, variant, block, head) with mean entropy, normalised entropy and distance (px).
    """
    from .predictor import to_rgb_uint8

    enc = sam.image_encoder
    global_blocks = [i for i, b in enumerate(enc.blocks) if b.window_size == 0]
    blocks = list(global_blocks if blocks is None else blocks)
    patch = patch_size(enc)
    rgb = torch.as_tensor(to_rgb_uint8(np.asarray(image))).permute(2, 0, 1).float()[None]
    rows = []
    try:
        for side in sides:
            set_input_size(sam, side)
            x = torch.nn.functional.interpolate(
                rgb, size=(side, side), mode="bilinear", antialias=True, align_corners=False
            )
            x = sam.preprocess(x[0])[None]
            g = side // patch
            rng = np.random.default_rng(seed + side)
            flat = rng.choice(g * g, size=min(num_queries, g * g), replace=False)
            queries = [(int(i // g), int(i % g)) for i in flat]
            qpos = torch.tensor(queries)
            for name, config in configs.items():
                try:
                    apply_basam(sam, config)
                except ValueError:
                    continue  # the official rule below its training size
                with capture_attention(sam, blocks=blocks, queries=queries) as cap:
                    with torch.no_grad():
                        sam.image_encoder(x)
                for b in blocks:
                    probs = cap.maps[b]
                    ent = entropy(probs)[0]  # [heads, Q]
                    dist = mean_attention_distance(probs, cap.grids[b], qpos, patch)[0]
                    for h in range(probs.shape[1]):
                        rows.append(
                            {
                                "side": side,
                                "variant": name,
                                "block": b,
                                "head": h,
                                "entropy": ent[h].mean().item(),
                                "normalised_entropy": (ent[h] / np.log(g * g)).mean().item(),
                                "distance_px": dist[h].mean().item(),
                            }
                        )
    finally:
        remove_basam(sam)
        restore_input_size(sam)
    return pd.DataFrame(rows)


def current_grid(sam: Sam) -> tuple[int, int]:
    """The token grid ``sam`` runs at now."""
    h, w = input_size(sam)
    p = patch_size(sam.image_encoder)
    return h // p, w // p
