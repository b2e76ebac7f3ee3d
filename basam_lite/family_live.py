"""Families side by side at a notebook's budget: each family's loss on each axis, what each rule
recovers, and a fair example.

:func:`live_families` runs :func:`basam_lite.study.live_axes` for every model (e.g. the tiny
SAM 1 and the tiny SAM 2) with the rules that are the identity at the base size (``scale``,
``yarn``, ``jin``, ``infoscale``: each multiplies the logits by exactly 1 when a softmax row sees
its training count of keys) run above the base size only, since there they equal ``vanilla`` by
construction. :func:`recovery_table` puts, per (model, axis, variant), the loss of plain
interpolation from the base size to a larger side and the paired difference of the variant from
plain interpolation there (:func:`basam_lite.stats.paired_table`, bootstrap 95% interval).
:func:`median_scene` picks an example by a stated rule: the scene whose plain-interpolation IoU is
the median (the lower one for an even count), so the example is neither a best nor a worst case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError
from .scaling import attention_scale
from .variants import get_variant

__all__ = [
    "RULES",
    "example_masks",
    "identity_at_base",
    "live_families",
    "median_scene",
    "recovery_table",
]

RULES: tuple[str, ...] = ("scale", "yarn", "jin", "infoscale")
"""BA-SAM's lambda and the three test-time temperature rules beside it (no mask)."""


def identity_at_base(variant: str, keys: int = 256, head_dim: int = 64) -> bool:
    """Whether ``variant`` leaves the model exactly as it is at its base size: no mask, no
    transform, and a scale rule whose multiplier at ``n = n_train`` is 1."""
    v = get_variant(variant)
    if v.config is None:
        return v.transform == "none"  # vanilla
    c = v.config
    if c.bias != "none" or v.transform != "none" or c.drop_rel_pos or not c.use_abs_pos:
        return False
    return attention_scale(keys, keys, c.scale, head_dim=head_dim) == 1.0


def live_families(
    models: Mapping[str, tuple[nn.Module, Sequence[int]]],
    images: int,
    variants: Sequence[str] = ("vanilla", "scale", "paper", "yarn", "jin", "infoscale"),
) -> pd.DataFrame:
    """Every model of ``models`` (sweep name -> (model, its input sides, ascending)) on the
    first ``images`` procedural test scenes on both axes, with ``variants``; one table (the
    sweep's columns). A variant that is the identity at the base size
    (:func:`identity_at_base`) is not run at a model's base size (it would equal ``vanilla``
    there by construction)."""
    from .resolution import base_size
    from .study import live_axes

    if "vanilla" not in variants:
        raise UserError("live_families needs 'vanilla' among the variants: it is the reference")
    parts = []
    for name, (sam, sides) in models.items():
        base = base_size(sam)[0]
        everywhere = tuple(v for v in variants if v == "vanilla" or not identity_at_base(v))
        above = tuple(v for v in variants if v not in everywhere)
        parts.append(live_axes(sam, name, tuple(sides), images=images, variants=everywhere))
        others = tuple(s for s in sides if s != base)
        if above and others:
            parts.append(live_axes(sam, name, others, images=images, variants=above))
    return pd.concat(parts, ignore_index=True)


def recovery_table(live: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Per (model, axis, variant), from each model's smallest side in ``live`` (``side_from``,
    the base size in a full-budget run) to its largest (``side_to``): ``images``;
    ``vanilla_from`` and ``vanilla_to`` (plain interpolation's mean IoU at the two sides, on the
    scenes that ran at both); ``loss`` (their paired difference, ``from - to``); ``iou`` (the
    variant's mean at ``side_to``); ``recovered``, ``ci_low``, ``ci_high``, ``se`` (the variant
    minus plain interpolation at ``side_to`` on the same scenes, bootstrap 95% interval,
    standard error) and ``significant`` (Holm, across every cell of ``live``). IoU in [0, 1]."""
    from .stats import paired_table

    ok = live[(live["status"] == "ok") & (live["prompt"] == "box")]
    paired = paired_table(ok, n_boot=n_boot)
    rows = []
    for (model, axis), part in ok.groupby(["model", "axis"], sort=False):
        van = part[part["variant"] == "vanilla"].pivot_table(
            index="image", columns="resolution", values="iou"
        )
        lo, hi = int(van.columns.min()), int(van.columns.max())
        both = van[[lo, hi]].dropna()
        if lo == hi or both.empty:
            continue
        for variant in dict.fromkeys(part["variant"]):
            cell = paired[
                (paired["model"] == model)
                & (paired["axis"] == axis)
                & (paired["resolution"] == hi)
                & (paired["variant"] == variant)
            ]
            if variant == "vanilla" or cell.empty:
                continue
            c = cell.iloc[0]
            here = part[(part["variant"] == variant) & (part["resolution"] == hi)]
            rows.append(
                {
                    "model": model,
                    "axis": axis,
                    "variant": variant,
                    "side_from": lo,
                    "side_to": hi,
                    "images": int(c["images"]),
                    "vanilla_from": float(both[lo].mean()),
                    "vanilla_to": float(both[hi].mean()),
                    "loss": float((both[lo] - both[hi]).mean()),
                    "iou": float(here["iou"].mean()),
                    "recovered": float(c["mean"]),
                    "ci_low": float(c["ci_low"]),
                    "ci_high": float(c["ci_high"]),
                    "se": float(c["se"]),
                    "significant": bool(c["significant"]),
                }
            )
    return pd.DataFrame(rows)


def median_scene(
    live: pd.DataFrame, model: str, axis: str, side: int, variant: str = "vanilla"
) -> tuple[str, float]:
    """The scene whose ``variant`` IoU (``model``, ``axis``, ``side``) is the median of the
    scenes that ran (the lower median for an even count; ties broken by the scene's name), and
    that IoU."""
    rows = live[
        (live["model"] == model)
        & (live["axis"] == axis)
        & (live["resolution"] == side)
        & (live["variant"] == variant)
        & (live["status"] == "ok")
    ].sort_values(["iou", "image"])
    if rows.empty:
        raise UserError(f"no {variant} row of {model} on {axis} at {side} px ran")
    pick = rows.iloc[(len(rows) - 1) // 2]
    return str(pick["image"]), float(pick["iou"])


def example_masks(
    sam: nn.Module,
    image: str,
    axis: str,
    side: int,
    variants: Sequence[str],
    dataset_size: int,
    seed: int = 0,
) -> tuple[object, object, dict[str, np.ndarray]]:
    """The input the sweep built for procedural test scene ``image`` (named as in the live
    table; ``dataset_size`` scenes, as ``synthetic:N``) on ``axis`` at ``side``, its box prompt,
    and each variant's predicted mask ``(H, W) bool`` there: ``(sample, prompt, masks)``."""
    from .axes import AxisSampler
    from .datasets import open_dataset, prompt_for
    from .predictor import predictor_for
    from .resolution import base_size
    from .sweep import PROMPTS
    from .variants import variant_at

    ds = open_dataset(f"synthetic:{dataset_size}", seed=seed)
    names = [ds[i].name for i in range(len(ds))]
    if image not in names:
        raise UserError(f"{image!r} is not one of the first {dataset_size} test scenes")
    base = base_size(sam)[0]
    sample = AxisSampler(ds, axis, seed=seed).sample(names.index(image), side, base)
    prompt = prompt_for(sample, PROMPTS["box"], seed)
    masks = {}
    for v in variants:
        with variant_at(sam, v, side), torch.no_grad():
            predictor = predictor_for(sam)
            predictor.set_image(sample.image)
            logits, _, _ = predictor.predict(
                **prompt.predictor_kwargs(), multimask_output=False, return_logits=True
            )
        logits = torch.as_tensor(np.asarray(logits[0], dtype=np.float32))
        if tuple(logits.shape) != sample.hw:  # as the sweep scores it
            logits = F.interpolate(logits[None, None], size=sample.hw, mode="bilinear")[0, 0]
        masks[v] = (logits > getattr(sam, "mask_threshold", 0.0)).numpy()  # SAM 2: 0 too
    return sample, prompt, masks
