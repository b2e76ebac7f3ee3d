"""Figures: masks and prompts in the style of SAM's notebooks, and attention maps.

Every function draws on a given matplotlib ``Axes`` (or makes a figure) and returns what it drew,
so notebooks stay a few lines long. Attention maps get a title, axis labels and a colour bar.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

MASK_COLOR = (30 / 255, 144 / 255, 1.0)


def _np(x: object) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def show_mask(mask: object, ax: Axes, color: Sequence[float] | None = None, alpha: float = 0.55):
    """Overlay a binary ``(H, W)`` mask in a translucent colour, edged by an outline in that
    colour on a black halo, so that the mask stays visible on any background (an object of the
    mask's own colour, white, black)."""
    from matplotlib import patheffects

    m = _np(mask).astype(bool)
    rgba = np.zeros((*m.shape, 4))
    rgba[m] = (*(color or MASK_COLOR), alpha)
    im = ax.imshow(rgba, interpolation="nearest")
    if m.any() and not m.all():
        outline = ax.contour(
            m.astype(float), levels=[0.5], colors=[color or MASK_COLOR], linewidths=1.2
        )
        outline.set(path_effects=[patheffects.withStroke(linewidth=2.6, foreground="black")])
    return im


def show_points(coords: object, labels: object, ax: Axes, marker_size: int = 220) -> None:
    """Positive points as green stars, negative as red, at (x, y) pixel coordinates."""
    c, lab = _np(coords).reshape(-1, 2), _np(labels).reshape(-1)
    for value, color in ((1, "limegreen"), (0, "red")):
        sel = c[lab == value]
        ax.scatter(
            sel[:, 0],
            sel[:, 1],
            color=color,
            marker="*",
            s=marker_size,
            edgecolor="white",
            linewidth=1.25,
            zorder=3,
        )


def show_box(box: object, ax: Axes, color: str = "lime") -> None:
    """An XYXY box in pixel coordinates."""
    x0, y0, x1, y1 = _np(box).reshape(4)
    ax.add_patch(
        plt.Rectangle((x0, y0), x1 - x0, y1 - y0, edgecolor=color, facecolor="none", lw=2, zorder=3)
    )


def show_prompt(prompt: object, ax: Axes) -> None:
    """Draw a :class:`basam_lite.datasets.Prompt` (box and/or points)."""
    if getattr(prompt, "box", None) is not None:
        show_box(prompt.box, ax)
    if getattr(prompt, "point_coords", None) is not None:
        show_points(prompt.point_coords, prompt.point_labels, ax)


def show_segmentation(
    image: np.ndarray, mask: object, ax: Axes, prompt: object = None, title: str | None = None
) -> None:
    """Image, predicted mask overlay and prompt, without axes."""
    ax.imshow(image)
    show_mask(mask, ax)
    if prompt is not None:
        show_prompt(prompt, ax)
    if title:
        ax.set_title(title, fontsize=10)
    ax.axis("off")


def show_attention(
    attention: object,
    ax: Axes,
    image: np.ndarray | None = None,
    query: tuple[int, int] | None = None,
    title: str | None = None,
    log: bool = False,
    colorbar: bool = True,
    vmax: float | None = None,
) -> AxesImage:
    """One query's attention over a ``(rows, cols)`` token grid.

    With ``image``, the map is stretched over the image (each token covers its patch) and drawn
    translucently on top; ``query`` (row, col) is marked. ``log`` shows log10 probabilities,
    which makes the long tail of far-away keys visible.
    """
    a = _np(attention).astype(float)
    rows, cols = a.shape
    data = np.log10(np.clip(a, 1e-8, None)) if log else a
    label = "log10 attention probability" if log else "attention probability"
    extent = None
    if image is not None:
        h, w = image.shape[:2]
        extent = (0, w, h, 0)
        ax.imshow(image, extent=extent)
    im = ax.imshow(
        data,
        cmap="magma",
        alpha=0.75 if image is not None else 1.0,
        extent=extent,
        interpolation="nearest",
        vmax=vmax,
    )
    if query is not None:
        sy = (image.shape[0] / rows) if image is not None else 1.0
        sx = (image.shape[1] / cols) if image is not None else 1.0
        off = 0.5 if image is not None else 0.0
        ax.scatter(
            [(query[1] + off) * sx],
            [(query[0] + off) * sy],
            marker="x",
            s=80,
            color="cyan",
            linewidths=2,
            zorder=3,
        )
    ax.set_xlabel("key column" if image is None else "x (px)")
    ax.set_ylabel("key row" if image is None else "y (px)")
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    return im


def show_matrix(
    matrix: object, ax: Axes, title: str | None = None, label: str = "value", cmap: str = "viridis"
) -> AxesImage:
    """A 2-D matrix (a mask, a distance table) with labelled axes and a colour bar."""
    im = ax.imshow(_np(matrix), cmap=cmap, interpolation="nearest")
    ax.set_xlabel("key token j")
    ax.set_ylabel("query token i")
    if title:
        ax.set_title(title, fontsize=10)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    return im


def grid_figure(n: int, ncols: int = 4, size: float = 3.2) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` axes in rows of ``ncols``; unused axes are hidden."""
    nrows = -(-n // ncols)
    cols = min(n, ncols)
    fig, axes = plt.subplots(nrows, cols, figsize=(size * cols, size * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def show_token_map(
    values: object,
    ax: Axes,
    title: str | None = None,
    label: str = "value",
    cmap: str = "viridis",
    query: tuple[int, int] | None = None,
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
) -> AxesImage:
    """A per-token ``(rows, cols)`` map on the patch grid (a position-embedding channel, the
    distances or the mask values from one query), with labelled axes and a colour bar.
    ``query`` (row, col) is marked with a cross."""
    im = ax.imshow(_np(values), cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
    if query is not None:
        ax.scatter([query[1]], [query[0]], marker="x", s=80, color="red", linewidths=2, zorder=3)
    ax.set_xlabel("token column")
    ax.set_ylabel("token row")
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    return im


def show_outline(mask: object, ax: Axes, color: str = "white", linewidth: float = 1.5) -> None:
    """The outline of a binary ``(H, W)`` mask (a true mask, drawn over a predicted one)."""
    ax.contour(_np(mask).astype(float), levels=[0.5], colors=color, linewidths=linewidth)


def show_distance_from_uniform(
    summary: object, axes: Sequence[Axes], base_keys: int | None = None, title: str = ""
) -> None:
    """Two panels from a table with columns ``keys``, ``variant``, ``entropy``: left the
    distance from uniform attention ``ln n - H`` in nats, right the normalised entropy
    ``H / ln n``. Both y-axes start at 0 (the right one ends at 1, uniform), so a difference
    looks as large as it is; ``base_keys`` is marked by a dashed line."""
    import pandas as pd

    df = pd.DataFrame(summary).copy()
    df["below_uniform"] = np.log(df["keys"]) - df["entropy"]
    df["normalised"] = df["entropy"] / np.log(df["keys"])
    left, right = axes
    for variant, part in df.groupby("variant", sort=False):
        left.plot(part["keys"], part["below_uniform"], "o-", label=variant)
        right.plot(part["keys"], part["normalised"], "o-", label=variant)
    left.set(ylabel="$\\ln n - H$ (nats below uniform)", ylim=(0, 1.15 * df["below_uniform"].max()))
    right.set(ylabel="$H / \\ln n$ (1 = uniform)", ylim=(0, 1.02))
    keys = sorted(df["keys"].unique())
    for ax, what in ((left, "distance from uniform"), (right, "normalised entropy")):
        if base_keys is not None:
            ax.axvline(base_keys, color="grey", lw=0.8, ls="--", label="base size")
        ax.set(xscale="log", xlabel="keys n", title=f"{title}: {what}" if title else what)
        ax.set_xticks(keys, [str(k) for k in keys])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    from .plots import legend_outside

    legend_outside(right, fontsize=8)  # the same lines in both panels: one legend


def show_shared_token_maps(
    maps: Sequence[object],
    axes: Sequence[Axes],
    titles: Sequence[str],
    label: str = "value",
    cmap: str = "viridis",
    query: tuple[int, int] | None = None,
) -> AxesImage:
    """Several per-token ``(rows, cols)`` maps on **one** colour scale (the min and max over all
    of them) with one colour bar for the whole row, so panels can be compared by colour."""
    arrays = [_np(m).astype(float) for m in maps]
    vmin = min(float(a.min()) for a in arrays)
    vmax = max(float(a.max()) for a in arrays)
    im = None
    for a, ax, title in zip(arrays, axes, titles, strict=True):
        im = show_token_map(
            a, ax, title=title, cmap=cmap, query=query, colorbar=False, vmin=vmin, vmax=vmax
        )
    assert im is not None, "no maps given"
    for ax in axes:  # axis labels on the outer panels only, so titles and labels do not collide
        spec = ax.get_subplotspec()
        if spec is not None and not spec.is_first_col():
            ax.set_ylabel("")
        if spec is not None and not spec.is_last_row():
            ax.set_xlabel("")
    fig = axes[0].figure
    fig.set_layout_engine("constrained")
    fig.colorbar(im, ax=list(axes), fraction=0.02, pad=0.02, label=label)
    return im


def show_reach_curves(
    prior: object,
    model: object,
    slopes: Sequence[float],
    axes: Sequence[Axes],
    model_name: str = "model",
) -> None:
    """Mean attention distance against the gain, one line per head: left the mask alone
    (``prior``, a head x gain table), right the model with the mask (``model``, the same
    layout) with the mask-alone curves dashed for comparison. Both panels have a legend; each
    head keeps its colour and its slope is in the legend."""
    import pandas as pd

    prior_t, model_t = pd.DataFrame(prior), pd.DataFrame(model)
    gains = list(prior_t.columns)
    left, right = axes
    for h, m in enumerate(slopes):
        color = f"C{h % 10}"
        label = f"head {h} (m = {float(m):.4f})"
        left.plot(gains, prior_t.loc[h, gains], "o-", color=color, label=label)
        right.plot(gains, model_t.loc[h, gains], "o-", color=color, label=label)
        right.plot(gains, prior_t.loc[h, gains], "--", color=color, lw=0.8, alpha=0.7)
    right.plot([], [], "--", color="grey", lw=0.8, label="mask alone (left panel)")
    left.set(
        title="Mask alone (q.k = 0), all queries",
        xlabel="gain g",
        ylabel="mean attention distance (px)",
    )
    right.set(title=f"{model_name} with the mask, global blocks", xlabel="gain g")
    for ax in axes:
        ax.grid(alpha=0.3)
    from .plots import legend_outside

    legend_outside(right, fontsize=7)  # the heads of both panels, and the dashed prior


def show_sam_layout(table: object, axes: Sequence[Axes], factors: Sequence[int] = (1, 2)) -> None:
    """SAM's structure, drawn from models' own layouts (rows of
    :func:`basam_lite.analysis.architecture_table`: ``model``, ``base_side``, ``grid``,
    ``depth``, ``windowed_keys``, ``global_blocks``).

    ``axes[0]``: the pipeline (image encoder, prompt encoder, mask decoder). ``axes[1]``: one row
    of squares per model, one square per encoder block, the global blocks filled, each row
    labelled with the keys per softmax row of its windowed and global blocks at ``factors``
    times the base side. The colour key is the row labels' text, so nothing covers the blocks.
    """
    import pandas as pd
    from matplotlib.patches import FancyBboxPatch, Rectangle

    df = pd.DataFrame(table)
    top, bottom = axes
    stages = [
        ("image", 0.0),
        ("patch embed\n+ abs. positions", 1.3),
        ("encoder\nblocks", 2.9),
        ("neck:\nimage embedding", 4.5),
        ("mask decoder", 6.1),
        ("masks +\nIoU estimates", 7.7),
    ]
    for text, x in stages:
        top.add_patch(
            FancyBboxPatch((x, 0.0), 1.2, 0.8, boxstyle="round,pad=0.03", fc="0.93", ec="0.3")
        )
        top.text(x + 0.6, 0.4, text, ha="center", va="center", fontsize=8)
    for (_, x0), (_, x1) in itertools.pairwise(stages):
        top.annotate(
            "", (x1, 0.4), (x0 + 1.2, 0.4), arrowprops={"arrowstyle": "->", "color": "0.3"}
        )
    top.add_patch(
        FancyBboxPatch((6.1, 1.2), 1.2, 0.6, boxstyle="round,pad=0.03", fc="0.93", ec="0.3")
    )
    top.text(6.7, 1.5, "prompt encoder\n(points, box)", ha="center", va="center", fontsize=8)
    top.annotate("", (6.7, 0.8), (6.7, 1.2), arrowprops={"arrowstyle": "->", "color": "0.3"})
    top.set(xlim=(-0.1, 9.0), ylim=(-0.1, 1.9), title="SAM: where the input size matters")
    top.axis("off")

    depth = int(df["depth"].max())
    for r, row in enumerate(df.itertuples(index=False)):
        y = len(df) - 1 - r
        glob = {int(b) for b in str(row.global_blocks).split(",")}
        for b in range(int(row.depth)):
            filled = b in glob
            bottom.add_patch(
                Rectangle((b, y + 0.1), 0.85, 0.8, fc="C3" if filled else "white", ec="0.2", lw=0.8)
            )
        sides = [f * int(row.base_side) for f in factors]
        patch = int(row.base_side) // int(row.grid)
        keys = ", ".join(f"{(s // patch) ** 2} at {s} px" for s in sides)
        bottom.text(
            depth + 0.5,
            y + 0.5,
            f"{row.model}: {row.depth} blocks, {len(glob)} global (red)\n"
            f"windowed: {row.windowed_keys} keys per row at any size\nglobal: {keys}",
            va="center",
            fontsize=8,
        )
    bottom.set(xlim=(-0.5, depth + 17), ylim=(-0.1, len(df)), xlabel="encoder block")
    bottom.set_yticks([])
    bottom.set_xticks(range(0, depth, 4))
    for side in ("top", "right", "left"):
        bottom.spines[side].set_visible(False)


def show_hiera_positions(
    model: object, sides: Sequence[int], token: tuple[float, float] = (0.5, 0.5)
) -> Figure:
    """SAM 2's position embedding at each input side, taken apart
    (:func:`basam_lite.hiera_positions.hiera_positions`): one row per side, three maps, the
    background table stretched to the grid, the window table tiled over it, and their sum; each
    map is the cosine similarity of every stride-4 token's vector with the vector at ``token``
    (a share of the grid: the centre by default, marked with a cross). Returns the figure."""
    from .hiera_positions import cosine_map, hiera_positions

    fig, axes = plt.subplots(len(sides), 3, figsize=(10, 3.3 * len(sides)), squeeze=False)
    for row, side in zip(axes, sides, strict=True):
        p = hiera_positions(model, side)
        t = (
            min(int(token[0] * p.grid[0]), p.grid[0] - 1),
            min(int(token[1] * p.grid[1]), p.grid[1] - 1),
        )
        parts = (
            (f"background {p.table_hw[0]} x {p.table_hw[1]} stretched", p.background),
            (f"window {p.window_side} x {p.window_side} tiled", p.window),
            ("sum (what Hiera adds)", p.total),
        )
        for ax, (title, table) in zip(row, parts, strict=True):
            im = ax.imshow(cosine_map(table, t), cmap="RdBu_r", vmin=-1, vmax=1)
            ax.plot(t[1], t[0], "k+", ms=10)
            ax.set_title(f"{side} px, {p.grid[0]} x {p.grid[1]} tokens:\n{title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=row.tolist(), shrink=0.8, label="cosine similarity with the cross")
    return fig


def show_hiera_blocks(model: object, sides: Sequence[int], ax: Axes | None = None) -> Axes:
    """A Hiera trunk's blocks (:func:`basam_lite.encoders.sam2_geometry.block_geometry`): one
    square per block, stages apart, the global blocks filled red, each windowed block labelled
    with its window side; beside each stage, the keys per softmax row at each of ``sides``."""
    from matplotlib.patches import Rectangle

    from .encoders.sam2_geometry import block_geometry, patch_stride, trunk_of

    trunk = trunk_of(model)
    geo = {side: block_geometry(trunk, side) for side in sides}
    first = geo[sides[0]]
    stride = patch_stride(trunk)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.9 + 0.55 * (len(set(g.grid for g in first)))))
    starts = [i for i, g in enumerate(first) if i == 0 or g.grid != first[i - 1].grid]
    ends = [*starts[1:], len(first)]
    for stage, (a, b) in enumerate(zip(starts, ends, strict=True)):
        y = len(starts) - 1 - stage
        for i in range(a, b):
            g = first[i]
            ax.add_patch(
                Rectangle(
                    (i - a, y + 0.1), 0.85, 0.8, fc="C3" if g.is_global else "white", ec="0.2"
                )
            )
            label = "G" if g.is_global else str(g.window)
            ax.text(i - a + 0.42, y + 0.5, f"{i}\n{label}", ha="center", va="center", fontsize=7)
        px = stride * (first[0].grid[0] // first[a].grid[0])  # px per token of this stage
        keys = []
        for side in sides:
            gs = geo[side][a:b]
            glob = {g.num_keys for g in gs if g.is_global}
            win = {g.num_keys for g in gs if not g.is_global}
            part = []
            if win:
                part.append(f"windowed {'/'.join(map(str, sorted(win)))}")
            if glob:
                part.append(f"global {'/'.join(map(str, sorted(glob)))}")
            keys.append(f"{side} px: " + ", ".join(part))
        ax.text(
            max(b - a for a, b in zip(starts, ends, strict=True)) + 0.3,
            y + 0.5,
            f"stage {stage + 1} ({px} px per token) - keys per row: " + "; ".join(keys),
            va="center",
            fontsize=8,
        )
    width = max(b - a for a, b in zip(starts, ends, strict=True))
    ax.set(xlim=(-0.3, width + 14), ylim=(-0.1, len(starts)))
    ax.set_title("Hiera's blocks: red = global (every token), the number = window side", fontsize=9)
    ax.axis("off")
    return ax


def show_variant_masks(
    sample: object, prompt: object, masks: dict[str, object], titles: dict[str, str] | None = None
) -> Figure:
    """One panel per variant: the input image, the variant's predicted mask (blue), the true
    outline (yellow), the box prompt and, for an extent sample, the target's region (red).
    ``masks`` maps variant -> ``(H, W)`` mask; ``titles`` maps variant -> its panel title."""
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, len(masks), figsize=(3.4 * len(masks), 3.6), squeeze=False)
    for ax, (name, mask) in zip(axes[0], masks.items(), strict=True):
        show_segmentation(sample.image, mask, ax, prompt, (titles or {}).get(name, name))
        show_outline(sample.mask, ax, color="yellow", linewidth=1.0)
        region = getattr(sample, "region", None)
        if region is not None and region != (0, 0, 0, 0):
            top, left, bottom, right = region
            ax.add_patch(
                Rectangle((left, top), right - left, bottom - top, fill=False, ec="red", lw=1)
            )
    return fig
