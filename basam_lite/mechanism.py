r"""The mechanism along both axes: attention entropy and distance in the global blocks against
the number of keys, per variant, on the same images and the same query points.

For each image, axis (``zoom`` or ``extent``, :mod:`basam_lite.axes`) and input side S, a few
query tokens are drawn once per image (seeded) among the tokens the target object covers at the
base size; on the extent axis they are those same tokens moved with the target tile, on the zoom
axis the tokens holding the same image points at S. :func:`basam_lite.capture_attention`
recomputes their attention rows in every global block, and each row gives

- the entropy :math:`H = -\sum_j p_j \ln p_j` in nats and :math:`H / \ln n` (``n`` keys);
- the mean attention distance :math:`\sum_j p_j \lVert p_i - p_j \rVert` in tokens and in
  input pixels.

The scale's derivation promises that lambda keeps the entropy of a row flat as ``n`` grows
(:mod:`basam_lite.scaling`): on the extent axis, where the image content near the query does
not change, that is the claim to check.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .analysis import block_stride, entropy, mean_attention_distance, on_first_grid
from .axes import AxisSampler
from .capture import capture_attention
from .config import BASAMConfig
from .datasets import Sample
from .datasets.extent import ExtentSample, TargetDoesNotFit
from .encoders import adapter_for
from .errors import UserError
from .predictor import predictor_for
from .variants import variant_at

MECHANISM_VARIANTS = ("vanilla", "scale", "bias", "paper")
"""The variants whose attention the mechanism study compares (presets of those names)."""


def object_tokens(mask: np.ndarray, patch: int) -> np.ndarray:
    """(row, col) of the tokens whose ``patch`` x ``patch`` cell holds an object pixel:
    ``[T, 2]`` int, row-major (``mask`` (H, W) bool with H, W multiples of ``patch``)."""
    h, w = mask.shape
    if h % patch or w % patch:
        raise UserError(f"mask of {h} x {w} px is not on the {patch} px patch grid")
    cells = mask.reshape(h // patch, patch, w // patch, patch).any(axis=(1, 3))
    return np.argwhere(cells)


def query_tokens(sample: Sample, base_tokens: np.ndarray, axis: str, size: int, base: int,
                 patch: int) -> list[tuple[int, int]]:  # fmt: skip
    """The chosen base-size tokens (``[Q, 2]`` on the base grid of the target tile) as tokens
    of ``sample``'s grid at input side ``size``: shifted with the target on the extent axis,
    the token holding each token's centre on the zoom axis."""
    if axis == "extent":
        assert isinstance(sample, ExtentSample)
        t0, l0, _, _ = sample.tile_region
        top, left, _, _ = sample.region
        dr, dc = (top - t0) // patch, (left - l0) // patch
        return [(int(r + dr), int(c + dc)) for r, c in base_tokens]
    factor = size / base
    return [(int((r + 0.5) * factor), int((c + 0.5) * factor)) for r, c in base_tokens]


@torch.no_grad()
def attention_along_axes(
    sam: nn.Module,
    dataset: Sequence[Sample],
    sizes: dict[str, Sequence[int]],
    variants: dict[str, BASAMConfig | None] | None = None,
    images: int = 4,
    queries: int = 8,
    seed: int = 0,
) -> pd.DataFrame:
    """Entropy and mean attention distance per (image, axis, size, variant, global block).

    Args:
        sam: the model (left at its input size and patch as it was).
        dataset: images (procedural scenes or any ``Sequence[Sample]``).
        sizes: input sides per axis, e.g. ``{"zoom": (128, 256, 512), "extent": (256, 512)}``.
        variants: name -> config (None: plain attention); default the presets of
            :data:`MECHANISM_VARIANTS`.
        images: the first ``images`` images of ``dataset``.
        queries: query tokens per image (fewer when the object covers fewer tokens).
        seed: draws the query tokens (with each image's name).

    Returns one row per (image, axis, size, variant, block) with ``keys`` (tokens), ``extent``
    (S / base), ``entropy``, ``normalised_entropy``, ``distance_tokens`` and ``distance_px``,
    each the mean over heads and queries. A window that cannot hold the target is left out.
    """
    if variants is None:
        variants = {
            v: None if v == "vanilla" else BASAMConfig.preset(v) for v in MECHANISM_VARIANTS
        }
    for axis in sizes:
        if axis not in ("zoom", "extent"):
            raise UserError(f"unknown axis {axis!r} in sizes: use 'zoom' and/or 'extent'")
    adapter = adapter_for(sam)
    base = adapter.base_size()[0]
    blocks = adapter.global_blocks()
    patch, _ = global_stride(sam)  # px per token of the global blocks (SAM 2: 16, not 4)
    samplers = {axis: AxisSampler(dataset, axis, seed=seed, patch=patch) for axis in sizes}
    rows = []
    for i in range(min(images, len(dataset))):
        tile = samplers.get("extent", AxisSampler(dataset, "extent", seed=seed)).view(base)
        target = tile.tile(i)
        tokens = object_tokens(target.mask, patch)
        rng = np.random.default_rng([seed, zlib.crc32(target.name.encode())])
        pick = tokens[np.sort(rng.choice(len(tokens), min(queries, len(tokens)), False))]
        for axis, axis_sizes in sizes.items():
            for size in axis_sizes:
                try:
                    sample = samplers[axis].sample(i, size, base)
                except TargetDoesNotFit:
                    continue
                if axis == "zoom" and sample.hw != (size, size):
                    sample = _square(sample, size)
                qs = query_tokens(sample, pick, axis, size, base, patch)
                grid = (size // patch, size // patch)
                qpos = torch.tensor(qs)
                for name, config in variants.items():
                    run = config if config is not None else "vanilla"
                    with (
                        variant_at(sam, run, size),
                        capture_attention(
                            sam, blocks=blocks, queries=on_first_grid(adapter, qs, patch)
                        ) as cap,
                    ):
                        predictor_for(sam).set_image(sample.image)
                    for b in blocks:
                        probs = cap.maps[b]  # [1, heads, Q, N]
                        ent = entropy(probs)[0]
                        dist = mean_attention_distance(probs, grid, qpos, patch=1)[0]
                        n = grid[0] * grid[1]
                        rows.append(
                            {
                                "image": sample.name,
                                "axis": axis,
                                "resolution": size,
                                "keys": n,
                                "extent": size / base,
                                "variant": name,
                                "block": b,
                                "entropy": ent.mean().item(),
                                "normalised_entropy": (ent / np.log(n)).mean().item(),
                                "distance_tokens": dist.mean().item(),
                                "distance_px": dist.mean().item() * patch,
                            }
                        )
    return pd.DataFrame(rows)


def global_stride(sam: nn.Module) -> tuple[int, int]:
    """``(stride, ratio)``: pixels per token of ``sam``'s global blocks (16 in the tiny SAM 1
    and in SAM 2's stride-16 stage) and how many first-grid tokens span one of them (1 in
    SAM 1, 4 in SAM 2, whose first grid is the stride-4 one). The mechanism draws its queries
    on the global blocks' grid; a model whose global blocks sit on grids of different strides
    is refused."""
    adapter = adapter_for(sam)
    blocks = adapter.global_blocks()
    if not blocks:
        raise UserError("the mechanism study needs global blocks; this encoder has none")
    strides = {block_stride(adapter, [b]) for b in blocks}
    if len(strides) != 1:
        raise UserError(
            f"global blocks on token grids of strides {sorted(strides)} px: the mechanism study "
            "draws its queries on one grid"
        )
    stride = strides.pop()
    return stride, stride // adapter.patch_size()


def _square(sample: Sample, size: int) -> Sample:
    """A file image resized to ``size x size`` (the zoom axis's queries need a square frame)."""
    from .datasets.extent import resize_to_tile

    return resize_to_tile(sample, size)


def mechanism_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean entropy, normalised entropy and distance per (axis, variant, block) and size:
    rows (axis, variant, block, statistic), one column per input side."""
    stats = ["entropy", "normalised_entropy", "distance_px"]
    long = df.melt(
        id_vars=["axis", "variant", "block", "resolution"], value_vars=stats, var_name="statistic"
    )
    return long.pivot_table(
        index=["axis", "variant", "block", "statistic"], columns="resolution", values="value"
    )


def entropy_change(
    df: pd.DataFrame,
    statistic: str = "entropy",
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    r"""How far ``statistic`` moves from the base size, per image, the question lambda answers.

    For each (model, axis, variant, size) and image, :math:`\Delta = \bar H(S) - \bar H(S_0)`,
    with :math:`\bar H` the mean over the global blocks and :math:`S_0` the base size (``extent``
    1); an image enters a size only where both sizes ran (a window that cannot hold its target
    is left out). Returns one row per (model, axis, variant, resolution) off the base with
    ``keys``, ``images``, ``change`` (the mean of :math:`\Delta` over images, in the statistic's
    unit: nats for ``entropy``), ``uniform`` (the change of uniform attention's entropy,
    :math:`\ln n - \ln n_0 = 2 \ln(S / S_0)`), its paired bootstrap 95% interval ``low`` /
    ``high`` (images resampled, seeded per row), and ``vs_vanilla``: the same change minus
    vanilla's on the same images (what the variant does to the drift).
    """
    from .stats import bootstrap_interval

    d = df if "model" in df.columns else df.assign(model="model")
    per = d.groupby(["model", "axis", "variant", "resolution", "keys", "extent", "image"])[
        statistic
    ].mean()
    per = per.reset_index()
    rows = []
    for (model, axis, variant), part in per.groupby(["model", "axis", "variant"]):
        at = part.set_index(["resolution", "image"])[statistic]
        base = part[np.isclose(part["extent"], 1.0)].set_index("image")[statistic]
        van_part = per[(per["model"] == model) & (per["axis"] == axis)]
        van_part = van_part[van_part["variant"] == "vanilla"]
        van = van_part.set_index(["resolution", "image"])[statistic]
        van_base = van_part[np.isclose(van_part["extent"], 1.0)].set_index("image")[statistic]
        for (size, keys), sub in part.groupby(["resolution", "keys"]):
            if np.isclose(sub["extent"].iloc[0], 1.0):
                continue
            images = [i for i in sub["image"] if i in base.index]
            if not images:
                continue
            delta = np.array([at[(size, i)] - base[i] for i in images])
            rng = np.random.default_rng(
                [seed, zlib.crc32(repr((model, axis, variant, size)).encode())]
            )
            lo, hi = bootstrap_interval(delta, n_boot, rng)
            both = [i for i in images if (size, i) in van.index and i in van_base.index]
            rel = [at[(size, i)] - base[i] - (van[(size, i)] - van_base[i]) for i in both]
            rows.append(
                {
                    "model": model,
                    "axis": axis,
                    "variant": variant,
                    "resolution": int(size),
                    "keys": int(keys),
                    "images": len(images),
                    "change": float(delta.mean()),
                    "uniform": float(2 * np.log(sub["extent"].iloc[0])),
                    "low": lo,
                    "high": hi,
                    "vs_vanilla": float(np.mean(rel)) if rel else float("nan"),
                }
            )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    from .variants import known_variant_names

    order = {v: k for k, v in enumerate(known_variant_names())}
    out["_v"] = out["variant"].map(lambda v: order.get(v, len(order)))
    out = out.sort_values(["model", "axis", "_v", "resolution"]).drop(columns="_v")
    return out.reset_index(drop=True)


def flattest(changes: pd.DataFrame, axis: str = "extent") -> pd.DataFrame:
    """The question lambda answers, per model: at the largest size of ``axis`` in ``changes``
    (:func:`entropy_change`'s table), the variant whose entropy moved least from the base size.

    One row per model: ``resolution``, ``keys``, ``uniform`` (uniform attention's change),
    ``vanilla`` (vanilla's change), ``variant``, ``change``, ``low``, ``high`` (the least moved
    variant's, any variant but vanilla when another ran) and ``flat``: its 95% interval holds 0.
    """
    rows = []
    if changes.empty:  # nothing paired (e.g. too few images ran): no model to answer for
        return pd.DataFrame(rows)
    on = changes[changes["axis"] == axis]
    for model, part in on.groupby("model", sort=False):
        at = part[part["resolution"] == part["resolution"].max()]
        van = at[at["variant"] == "vanilla"]["change"]
        rules = at[at["variant"] != "vanilla"]
        pick = (rules if not rules.empty else at).loc[lambda d: d["change"].abs().idxmin()]
        rows.append(
            {
                "model": model,
                "resolution": int(pick["resolution"]),
                "keys": int(pick["keys"]),
                "uniform": float(pick["uniform"]),
                "vanilla": float(van.iloc[0]) if len(van) else float("nan"),
                "variant": pick["variant"],
                "change": float(pick["change"]),
                "low": float(pick["low"]),
                "high": float(pick["high"]),
                "flat": bool(pick["low"] <= 0 <= pick["high"]),
            }
        )
    return pd.DataFrame(rows)
