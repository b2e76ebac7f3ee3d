"""Summaries and plots of a sweep table (``basam_lite.sweep``): metric vs input resolution."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .variants import variant_names

BASE_SIZES = {"tiny": 256, "tiny-vanilla": 256, "tiny-basam": 256}
BASE_SIZES.update({"vit_b": 1024, "vit_l": 1024, "vit_h": 1024})

METRIC_LABELS = {
    "iou": "IoU",
    "dice": "Dice",
    "mae": "MAE (lower is better)",
    "s_measure": "S-measure",
    "e_measure": "mean E-measure",
    "max_f": "max F-measure",
    "mean_f": "mean F-measure",
    "weighted_f": "weighted F-measure",
}
"""Axis labels of the metric columns."""


def _facets(grid, data: pd.DataFrame) -> list[tuple[object, object]]:
    """(row value, model) of each axis of a relplot grid, in ``grid.axes.flat`` order."""
    rows = grid.row_names or [None]
    cols = grid.col_names or [data["model"].iloc[0]]
    return [(r, c) for r in rows for c in cols]


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that ran (skipped rows carry no metric)."""
    return df[df["status"] == "ok"] if "status" in df else df


def variant_order(variants: object) -> list[str]:
    """The distinct values of ``variants``: the registry's (:mod:`basam_lite.variants`) in its
    order, then any other name in order of first appearance (plotted too, never dropped)."""
    seen = list(dict.fromkeys(str(v) for v in variants))
    known = [v for v in variant_names() if v in seen]
    return known + [v for v in seen if v not in known]


def summary_table(df: pd.DataFrame, metric: str = "iou") -> pd.DataFrame:
    """Mean ``metric`` with rows (model, prompt, variant) and one column per resolution.

    Variant/resolution pairs that never ran (e.g. ``official`` below the base size) are NaN.
    """
    ok = _ok(df)
    table = ok.pivot_table(
        index=["model", "prompt", "variant"], columns="resolution", values=metric, aggfunc="mean"
    )
    order = {v: i for i, v in enumerate(variant_order(ok["variant"]))}
    return table.sort_index(key=lambda idx: idx.map(order) if idx.name == "variant" else idx)


def plot_sweep(
    df: pd.DataFrame, path: str | Path, metric: str = "iou", intervals: bool = False
) -> Path:
    """Mean ``metric`` vs resolution, one line per variant, one panel per model (columns) and
    prompt (rows); ``intervals`` adds 95% bootstrap bands (they overlap and hide the lines when
    there are few images). A dotted line marks each model's base size. Saved to ``path``."""
    import matplotlib.pyplot as plt  # the figure is saved and closed: no display needed
    import seaborn as sns

    ok = _ok(df)
    hue_order = variant_order(ok["variant"])
    grid = sns.relplot(
        data=ok,
        x="resolution",
        y=metric,
        hue="variant",
        hue_order=hue_order,
        style="variant",
        style_order=hue_order,
        col="model",
        row="prompt" if ok["prompt"].nunique() > 1 else None,
        kind="line",
        markers=True,
        dashes=False,
        errorbar=("ci", 95) if intervals else None,
        n_boot=200,
        seed=0,
        height=3.2,
        aspect=1.2,
        facet_kws={"sharey": True},
    )
    sizes = sorted(ok["resolution"].unique())
    for (_, model), ax in zip(_facets(grid, ok), grid.axes.flat, strict=True):
        if model in BASE_SIZES:
            ax.axvline(BASE_SIZES[model], color="0.6", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(s) for s in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    label = METRIC_LABELS.get(metric, metric)
    grid.set_axis_labels("input resolution (px)", f"mean {label}")
    n_images = ok["image"].nunique() if "image" in ok else len(ok)
    grid.figure.suptitle(f"Mean {label} against input resolution ({n_images} images)", y=1.02)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.savefig(path, dpi=110)
    plt.close(grid.figure)
    return path
