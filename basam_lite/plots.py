"""Summaries and plots of a sweep table (``basam_lite.sweep``): metric vs input resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .encoders.specs import MODELS, model_spec
from .outputs import atomic_write
from .variants import variant_names


def legend_outside(ax: object, **kwargs: object) -> object:
    """The legend of the Matplotlib axes ``ax`` to the right of them, never over the data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, **kwargs)


def base_side(model: str) -> int | None:
    """The base input side (px) of a registered model (its spec), None for an unknown name."""
    return model_spec(model).base_side if model in MODELS else None


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
        if base_side(model) is not None:
            ax.axvline(base_side(model), color="0.6", linestyle=":", linewidth=1)
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
    with atomic_write(path) as tmp:  # a reader never sees half a figure
        grid.savefig(tmp, dpi=110)
    plt.close(grid.figure)
    return path


def ceiling_table(df: pd.DataFrame) -> pd.Series:
    """Mean token-grid ceiling (``grid_iou``) per (axis, resolution), over the distinct images
    (it depends on the ground truth only, not on the model, variant or prompt)."""
    per_image = df.drop_duplicates(["axis", "resolution", "image"])
    return per_image.groupby(["axis", "resolution"])["grid_iou"].mean()


def plot_axes(
    zoom: pd.DataFrame,
    extent: pd.DataFrame,
    path: str | Path | None,
    metric: str = "iou",
    variants: tuple[str, ...] | None = None,
):
    """Zoom and extent side by side: mean ``metric`` against the input side, one line per
    variant, one row of panels per (model, prompt), the token-grid ceiling (the IoU of a mask
    right at every token) as a dashed black line and each model's base size dotted. On the
    extent axis the metric is the target's region, so the ceiling is flat. Saved to ``path``
    (and closed; the path is returned), or, with ``path=None``, the figure is returned."""
    import matplotlib.pyplot as plt

    both = pd.concat([_ok(zoom), _ok(extent)], ignore_index=True)
    order = variant_order(both["variant"]) if variants is None else list(variants)
    panels = list(both.groupby(["model", "prompt"], sort=False).groups)
    fig, axes = plt.subplots(
        len(panels), 2, figsize=(10, 3.1 * len(panels)), sharey=True, squeeze=False
    )
    colors = plt.get_cmap("tab10")
    for row, (model, prompt) in enumerate(panels):
        for col, (axis, table) in enumerate((("zoom", zoom), ("extent", extent))):
            ax = axes[row, col]
            ok = _ok(table)
            ok = ok[(ok["model"] == model) & (ok["prompt"] == prompt)]
            if ok.empty:
                ax.set_visible(False)
                continue
            means = ok.groupby(["variant", "resolution"])[metric].mean()
            for k, variant in enumerate(order):
                if variant in means.index.get_level_values(0):
                    line = means.loc[variant]
                    ax.plot(line.index, line.values, marker="o", ms=3, color=colors(k % 10),
                            label=variant)  # fmt: skip
            if metric == "iou" and "grid_iou" in ok:
                ceiling = ok.drop_duplicates(["resolution", "image"]).groupby("resolution")
                c = ceiling["grid_iou"].mean()
                ax.plot(c.index, c.values, "k--", lw=1, label="token-grid ceiling")
            if base_side(model) is not None:
                ax.axvline(base_side(model), color="0.6", linestyle=":", linewidth=1)
            sizes = sorted(ok["resolution"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes)
            ax.set_xticklabels([str(s) for s in sizes])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            n = ok["image"].nunique()
            what = "scene drawn at S px" if axis == "zoom" else "base-size target in an S px canvas"
            ax.set_title(f"{axis}: {what}\n{model}, {prompt} prompt, {n} images", fontsize=9)
            ax.set_xlabel("input side S (px)")
            if col == 0:
                ax.set_ylabel(f"mean {METRIC_LABELS.get(metric, metric)}")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), fontsize=8,
               bbox_to_anchor=(0.5, 1.0))  # fmt: skip
    fig.suptitle("Detail or length: zoom (more pixels) against extent (more canvas)", y=1.03)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def plot_axis_examples(
    dataset, index: int, base: int, side: int, size: float = 3.0, model: str = "tiny"
):
    """The same image on both axes at input side ``side``: the base-size tile, the zoom input
    and the extent canvas, each with the target's region outlined (the object in yellow) and
    its token count for ``model``'s patch size. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .axes import AxisSampler

    panels = [
        (f"base size {base} px", AxisSampler(dataset, "zoom").sample(index, base, base)),
        (f"zoom: {side} px", AxisSampler(dataset, "zoom").sample(index, side, base)),
        (f"extent: {side} px canvas", AxisSampler(dataset, "extent").sample(index, side, base)),
    ]
    patch = model_spec(model).patch_size
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size))
    for ax, (title, s) in zip(axes, panels, strict=True):
        ax.imshow(s.image)
        ax.contour(s.mask, levels=[0.5], colors="yellow", linewidths=1)
        t, lft, b, r = getattr(s, "region", (0, 0, *s.hw))
        ax.add_patch(Rectangle((lft - 0.5, t - 0.5), r - lft, b - t, fill=False, ec="red", lw=1))
        ax.set_title(f"{title} ({(s.hw[0] // patch) ** 2} tokens)", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_mechanism(df: pd.DataFrame, path: str | Path | None = None, statistic: str = "entropy"):
    """``statistic`` of the global blocks' attention (:func:`basam_lite.mechanism.
    attention_along_axes`) against the number of keys: one panel per (model, axis, block) (a
    ``model`` column, where there is one, is never averaged over), one line per variant, mean
    over images; for ``entropy`` a dashed line gives uniform attention's, ln n. Saved to
    ``path`` (returned), or the figure when None."""
    import matplotlib.pyplot as plt
    import numpy as np

    blocks = sorted(df["block"].unique())
    axes_names = [a for a in ("zoom", "extent") if a in set(df["axis"])]
    models = list(dict.fromkeys(df["model"])) if "model" in df.columns else [None]
    panel_rows = [(m, a) for m in models for a in axes_names]
    fig, axes = plt.subplots(
        len(panel_rows), len(blocks), figsize=(3.2 * len(blocks), 2.8 * len(panel_rows)),
        sharey=True, squeeze=False,
    )  # fmt: skip
    order = variant_order(df["variant"])
    for r, (model, axis) in enumerate(panel_rows):
        for c, block in enumerate(blocks):
            ax = axes[r, c]
            part = df[(df["axis"] == axis) & (df["block"] == block)]
            if model is not None:
                part = part[part["model"] == model]
            means = part.groupby(["variant", "keys"])[statistic].mean()
            for variant in order:
                if variant in means.index.get_level_values(0):
                    line = means.loc[variant]
                    ax.plot(line.index, line.values, marker="o", ms=3, label=variant)
            if statistic == "entropy" and len(part):
                keys = np.sort(part["keys"].unique())
                ax.plot(keys, np.log(keys), "k--", lw=1, label="uniform (ln n)")
            ax.set_xscale("log", base=2)
            where = f"{model}, " if model is not None and len(models) > 1 else ""
            ax.set_title(f"{where}{axis}, block {block}", fontsize=9)
            ax.set_xlabel("keys per softmax row")
            ax.grid(alpha=0.3)
        axes[r, 0].set_ylabel(statistic.replace("_", " "))
    legend_outside(axes[0, -1], fontsize=7)
    fig.tight_layout()
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def plot_recovery(recovery: pd.DataFrame, path: str | Path | None = None):
    """What each variant recovers (:func:`basam_lite.family_live.recovery_table`): one panel per
    (model, axis), one bar per variant, its mean paired difference from plain interpolation at
    the larger side in IoU points with the bootstrap 95% interval; the panel's title states
    plain interpolation's loss from the smaller side. Saved to ``path`` (and closed; the path is
    returned), or the figure is returned."""
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys(zip(recovery["model"], recovery["axis"], strict=True)))
    fig, axes = plt.subplots(1, len(cells), figsize=(3.6 * len(cells), 3.4), squeeze=False)
    for ax, (model, axis) in zip(axes[0], cells, strict=True):
        part = recovery[(recovery["model"] == model) & (recovery["axis"] == axis)]
        x = np.arange(len(part))
        mean = 100 * part["recovered"].to_numpy()
        err = 100 * np.stack(
            [part["recovered"] - part["ci_low"], part["ci_high"] - part["recovered"]]
        )
        ax.bar(x, mean, color=[f"C{i}" for i in range(len(part))])
        ax.errorbar(x, mean, yerr=err, fmt="none", ecolor="0.2", capsize=3)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_xticks(x, part["variant"], rotation=45, ha="right")
        r = part.iloc[0]
        ax.set_title(
            f"{model}, {axis}: plain loses {100 * r['loss']:.1f} pts\n"
            f"{r['side_from']} -> {r['side_to']} px, {r['images']} scenes",
            fontsize=9,
        )
    axes[0][0].set_ylabel("IoU points vs plain (95% interval)")
    fig.tight_layout()
    if path is None:
        return fig
    path = Path(path)
    with atomic_write(path) as tmp:  # a reader never sees half a figure
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
