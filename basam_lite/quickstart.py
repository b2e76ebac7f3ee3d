"""One-call helpers for the notebooks: segment a scene at a size, evaluate at several sizes.

- :func:`segment`: one procedural scene, rendered at an input size, through SAM under a sweep
  variant (``vanilla``, ``scale``, ``bias``, ``paper``, ``official`` or ``resize``; see
  :mod:`basam_lite.sweep`), with a prompt made from the scene's exact mask at that size.
- :func:`segment_grid`, :func:`iou_table`, :func:`plot_segmentations`: the same over variants x
  sizes, as a table and a figure.
- :func:`evaluate_at_sizes`: mean IoU on held-out scenes at several input sizes
  (:func:`basam_lite.evaluation.evaluate` at each size).
- :func:`optional_sam`: a named model, or ``None`` with a clear message when its checkpoint is
  missing (notebooks keep running).

Every function leaves the model as it found it (patch and input size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import nn

from .analysis import segment as segment_image
from .datasets import ProceduralScenes, Prompt, prompt_for
from .encoders import adapter_for
from .evaluation import evaluate
from .metrics import mask_iou
from .models import build_sam
from .resolution import base_size, restore_input_size, set_input_size
from .sweep import PROMPTS
from .variants import get_variant, variant_at


@dataclass(eq=False)
class Segmentation:
    """One scene segmented at one input size under one variant.

    ``image``, ``gt`` and ``mask`` are at ``size`` x ``size`` (the scene rendered there); the
    prompt is in that frame. ``iou`` is NaN and ``mask`` is None when the variant cannot run at
    this size (``reason`` says why, e.g. the official rule below the base size).
    """

    variant: str
    size: int
    image: np.ndarray
    gt: np.ndarray
    prompt: Prompt
    mask: np.ndarray | None
    iou: float
    score: float
    reason: str = ""


def _check(variant: str, prompt: str) -> None:
    get_variant(variant)
    if prompt not in PROMPTS:
        raise ValueError(f"unknown prompt {prompt!r}: choose from {', '.join(PROMPTS)}")


def segment(
    sam: nn.Module,
    scenes: ProceduralScenes,
    index: int,
    size: int,
    variant: str = "paper",
    prompt: str = "box",
    seed: int = 0,
) -> Segmentation:
    """Segment scene ``index`` of ``scenes`` rendered at ``size`` px under ``variant``.

    The model runs at ``size`` (``resize``: at its base size, the image resized to it), with the
    variant's BA-SAM preset; ``prompt`` is ``"box"`` (tight box), ``"point"`` (centre point) or
    ``"click"`` (a random object pixel, seeded by ``seed`` and the scene's name).
    """
    _check(variant, prompt)
    sample = scenes.sample(index, size=(size, size))
    p = prompt_for(sample, PROMPTS[prompt], seed)
    try:
        with variant_at(sam, variant, size):
            out = segment_image(sam, sample.image, p)
    except ValueError as e:
        reason = str(e).splitlines()[0]
        return Segmentation(
            variant, size, sample.image, sample.mask, p, None, np.nan, np.nan, reason
        )
    mask = np.asarray(out["mask"], dtype=bool)
    return Segmentation(
        variant, size, sample.image, sample.mask, p, mask, mask_iou(mask, sample.mask), out["score"]
    )


def segment_grid(
    sam: nn.Module,
    scenes: ProceduralScenes,
    index: int,
    sizes: Sequence[int],
    variants: Sequence[str] = ("vanilla", "paper"),
    prompt: str = "box",
    seed: int = 0,
) -> list[Segmentation]:
    """:func:`segment` for every (variant, size), variants in the outer loop."""
    return [
        segment(sam, scenes, index, size, variant, prompt, seed)
        for variant in variants
        for size in sizes
    ]


def iou_table(runs: Sequence[Segmentation], value: str = "iou") -> pd.DataFrame:
    """``value`` (``iou`` or ``score``, the model's own IoU estimate) per variant (rows) and
    input size (columns), in the order the runs came."""
    df = pd.DataFrame(
        [{"variant": r.variant, "size": r.size, value: getattr(r, value)} for r in runs]
    )
    table = df.pivot(index="variant", columns="size", values=value)
    table = table.loc[list(dict.fromkeys(df["variant"]))]
    table.columns.name = "input size (px)"
    return table


PRED_COLOR = (1.0, 0.85, 0.0)
"""Fill colour of predicted masks in :func:`plot_segmentations` (visible on blue objects)."""


def plot_segmentations(runs: Sequence[Segmentation], title: str | None = None, size: float = 3.0):
    """A grid figure: ground truth in the first row, then one row per variant; one column per
    input size. Each panel shows the image, the true mask's outline (white), the prompt and,
    below the first row, the predicted mask filled in yellow."""
    import matplotlib.pyplot as plt

    from .viz import show_mask, show_prompt

    variants = list(dict.fromkeys(r.variant for r in runs))
    sizes = list(dict.fromkeys(r.size for r in runs))
    fig, axes = plt.subplots(
        len(variants) + 1,
        len(sizes),
        figsize=(size * len(sizes), size * (len(variants) + 1)),
        squeeze=False,
    )
    by_key = {(r.variant, r.size): r for r in runs}
    for c, s in enumerate(sizes):
        first = next(r for r in runs if r.size == s)
        ax = axes[0, c]
        ax.imshow(first.image)
        ax.contour(first.gt, levels=[0.5], colors="white", linewidths=1.5)
        show_prompt(first.prompt, ax)
        ax.set_title(f"true mask (outline) @ {s} px", fontsize=10)
        ax.axis("off")
        for r_i, v in enumerate(variants, start=1):
            ax = axes[r_i, c]
            run = by_key.get((v, s))
            ax.imshow(first.image)
            ax.axis("off")
            if run is None or run.mask is None:
                ax.set_title(f"{v} @ {s} px: cannot run", fontsize=10)
                continue
            show_mask(run.mask, ax, color=PRED_COLOR, alpha=0.6)
            ax.contour(run.gt, levels=[0.5], colors="white", linewidths=1.0)
            show_prompt(run.prompt, ax)
            ax.set_title(f"{v} @ {s} px: IoU {run.iou:.2f}", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def evaluate_at_sizes(
    sam: nn.Module,
    sizes: Sequence[int],
    n: int = 24,
    kinds: Sequence[str] = ("box", "center"),
    seed: int = 0,
) -> pd.DataFrame:
    """Mean IoU on ``n`` held-out scenes (``ProceduralScenes(split="test")``) at each input size.

    The model keeps whatever BA-SAM patch it has (fine-tuned models keep theirs); only its input
    size changes and is restored afterwards. Returns one row per size: ``size``, ``x_base``
    (size over the base size) and ``iou_<kind>`` per prompt kind (see
    :func:`basam_lite.datasets.prompt_for`).
    """
    base = base_size(sam)[0]
    rows = []
    try:
        for size in sizes:
            set_input_size(sam, size)
            scores = evaluate(sam, n=n, kinds=tuple(kinds), size=size, seed=seed)
            rows.append({"size": size, "x_base": size / base, **scores})
    finally:
        restore_input_size(sam)
    return pd.DataFrame(rows)


def optional_sam(name: str) -> nn.Module | None:
    """``build_sam(name)``, or ``None`` after printing why (a missing or unreadable checkpoint)."""
    try:
        return build_sam(name)
    except (OSError, ValueError) as e:
        print(f"{name} is not available ({e}); the cells that need it will be skipped.")
        return None


def paired_difference(
    df: pd.DataFrame, variant: str, reference: str = "vanilla", metric: str = "iou"
) -> pd.DataFrame:
    """``variant`` against ``reference`` on the same images, from a sweep table.

    Pairs the rows of both variants by (model, prompt, resolution, image) and returns, per
    (model, prompt, resolution): the mean difference ``variant - reference`` of ``metric``, its
    standard error (standard deviation of the differences over sqrt(pairs); NaN for one pair),
    the number of images where ``variant`` is better / worse (ties within 1e-6 count as neither)
    and the number of pairs. Only rows with ``status == "ok"`` are paired.
    """
    ok = df[df["status"] == "ok"] if "status" in df else df
    keys = ["model", "prompt", "resolution", "image"]
    a = ok[ok["variant"] == variant].set_index(keys)[metric]
    b = ok[ok["variant"] == reference].set_index(keys)[metric]
    diff = (a - b).dropna()
    if diff.empty:
        raise ValueError(f"no image has both {variant!r} and {reference!r} rows with a {metric}")
    groups = diff.groupby(level=["model", "prompt", "resolution"])
    return pd.DataFrame(
        {
            f"mean_{metric}_difference": groups.mean(),
            "standard_error": groups.std(ddof=1) / np.sqrt(groups.size()),
            "better": groups.apply(lambda d: int((d > 1e-6).sum())),
            "worse": groups.apply(lambda d: int((d < -1e-6).sum())),
            "images": groups.size(),
        }
    )


def plot_size_curves(
    df: pd.DataFrame,
    y: str,
    hue: str,
    style: str | None = None,
    title: str | None = None,
    ylabel: str | None = None,
    ax=None,
):
    """``y`` against input size (``df["size"]``, log2 axis) with one line per ``hue`` (and
    ``style``) value, the model's base size marked by ``df["x_base"] == 1``. Returns the axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=df, x="size", y=y, hue=hue, style=style, markers=True, ax=ax)
    sizes = sorted(df["size"].unique())
    base = df.loc[df["x_base"] == 1, "size"]
    if len(base):
        ax.axvline(base.iloc[0], color="grey", lw=0.8, ls="--", label="base size")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.set(xlabel="input size (px)", ylabel=ylabel or y, title=title or f"{y} against input size")
    from .plots import legend_outside

    legend_outside(ax, fontsize=8)
    return ax


def scene_table(
    sam: nn.Module,
    scenes: ProceduralScenes,
    sizes: Sequence[int],
    variants: Sequence[str] = ("vanilla", "paper"),
    prompt: str = "box",
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`segment` on every scene of ``scenes`` at every size under every variant.

    Returns one row per (scene, variant, size) with columns ``scene``, ``variant``, ``size``,
    ``iou`` and ``score`` (NaN where the variant cannot run at that size).
    """
    rows = [
        {"scene": i, "variant": r.variant, "size": r.size, "iou": r.iou, "score": r.score}
        for i in range(len(scenes))
        for r in segment_grid(sam, scenes, i, sizes, variants, prompt, seed)
    ]
    return pd.DataFrame(rows)


def scene_differences(
    table: pd.DataFrame, variant: str = "paper", reference: str = "vanilla"
) -> pd.DataFrame:
    """IoU of ``variant`` minus IoU of ``reference`` on the same scene: one row per scene, one
    column per size, and a last column ``mean`` (the mean over sizes), from :func:`scene_table`."""
    wide = table.pivot_table(index="scene", columns=["variant", "size"], values="iou")
    diff = wide[variant] - wide[reference]
    diff.columns.name = "input size (px)"
    return diff.assign(mean=diff.mean(axis=1))


def median_scene(differences: pd.DataFrame) -> int:
    """The scene whose mean difference over sizes (``differences["mean"]``, from
    :func:`scene_differences`) is the median; for an even number of scenes, the lower of the
    two middle ones (ties broken by the lower scene index)."""
    order = differences["mean"].reset_index().sort_values(["mean", "scene"], kind="stable")
    return int(order["scene"].iloc[(len(order) - 1) // 2])


def plot_scene_differences(differences: pd.DataFrame, chosen: int | None = None, ax=None):
    """Every scene's IoU difference (one dot per scene) at each size, the mean over scenes with
    a paired 95 % interval (mean +- 1.96 standard errors) and, if given, scene ``chosen``
    circled in red. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    sizes = [c for c in differences.columns if c != "mean"]
    rng = np.random.default_rng(0)  # horizontal jitter only, so dots do not hide each other
    for k, s in enumerate(sizes):
        d = differences[s].dropna()
        x = k + rng.uniform(-0.12, 0.12, len(d))
        ax.scatter(x, d, s=18, color="tab:blue", alpha=0.7, label="one scene" if k == 0 else None)
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
        ax.errorbar(
            k + 0.3,
            d.mean(),
            yerr=half,
            fmt="s",
            color="black",
            capsize=4,
            label="mean, 95 % interval" if k == 0 else None,
        )
        if chosen is not None and chosen in d.index:
            ax.scatter(
                x[list(d.index).index(chosen)],
                d[chosen],
                s=90,
                facecolor="none",
                edgecolor="red",
                linewidth=1.5,
                label=f"scene {chosen}" if k == 0 else None,
            )
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(sizes)), [f"{s} px" for s in sizes])
    ax.set(
        ylabel="IoU difference (paper - vanilla)",
        xlabel="input size",
        title=f"{len(differences)} scenes, the same scene in both variants",
    )
    from .plots import legend_outside

    legend_outside(ax, fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def count_tokens(sam: nn.Module, side: int) -> int:
    """The number of image tokens ``sam``'s encoder makes from a ``side`` x ``side`` px image,
    measured by running its patch embedding on a blank image (no resizing rule assumed)."""
    import torch

    rows, cols = adapter_for(sam).first_grid(torch.zeros(1, 3, side, side))
    return rows * cols


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
"""Photographs shipped inside scikit-image (``skimage.data``: loaded offline, no masks)."""


def photo(name: str = "astronaut") -> np.ndarray:
    """A colour photograph from scikit-image's bundled data, ``(H, W, 3)`` uint8."""
    from skimage import data

    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}: choose from {', '.join(PHOTOS)}")
    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def resize_photo(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` resized (anti-aliased, aspect ratio not kept) to ``side`` x ``side``, uint8."""
    from skimage.transform import resize

    out = resize(image, (side, side), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def segment_photo(
    sam: nn.Module, image: np.ndarray, box: Sequence[float], variant: str = "vanilla"
) -> tuple[np.ndarray, float]:
    """SAM's mask and IoU estimate for a box prompt (XYXY px) on a square ``image``, with the
    model at the image's side under ``variant`` (left as it was found). A photograph has no true
    mask, so there is no IoU here."""
    get_variant(variant)
    side = image.shape[0]
    if image.shape[1] != side:
        raise ValueError(f"segment_photo takes a square image, got {image.shape[:2]}")
    with variant_at(sam, variant, side):
        out = segment_image(sam, image, Prompt(box=np.asarray(box, dtype=float)))
    return np.asarray(out["mask"], dtype=bool), float(out["score"])
