r"""Attention maps of one image across input sizes, variants, blocks, heads and query points.

:class:`AttentionAtlas` runs the encoder once per (input side, variant), captures the attention
rows of a few query points in every block (:func:`basam_lite.capture_attention` recomputes only
those rows, so a 1024 px input on the tiny model, a 64 x 64 grid, costs a few query rows and not
a 4096 x 4096 matrix) and caches them, so that switching block, head or query is free and each new
(side, variant) costs one forward pass. Query points are given as fractions (y, x) of the image, so
the same point is followed across sizes.

For one map :math:`p` (a query at grid position :math:`p_i`, keys :math:`j`) the figures report

.. math:: H = -\sum_j p_j \ln p_j, \qquad D = s \sum_j p_j \lVert p_i - p_j \rVert,

the entropy (nats) and the mean attention distance (pixels of the resized input, patch size
:math:`s`).

:func:`attention_explorer` wraps an atlas in ipywidgets controls and also draws the default view
as a static figure, so a notebook shows something when rendered without a live kernel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

from .analysis import entropy, mean_attention_distance
from .capture import capture_attention
from .patch import BASAMConfig, apply_basam, remove_basam
from .predictor import to_rgb_uint8
from .resolution import base_size, patch_size, restore_input_size, set_input_size

Point = tuple[float, float]

DEFAULT_QUERIES: dict[str, Point] = {
    "centre": (0.5, 0.5),
    "top left": (0.15, 0.15),
    "bottom right": (0.85, 0.85),
}
"""Query points as (y, x) fractions of the image, used when none are given."""

COMPARE = "compare"
"""The explorer's variant choice that draws every variant side by side."""


@dataclass
class CapturedMaps:
    """The maps of one (side, variant): ``maps[block]`` is ``[heads, queries, rows, cols]``
    (float32; for windowed blocks, zero outside the query's window)."""

    side: int
    variant: str
    image: np.ndarray  # (side, side, 3) uint8, what the encoder saw
    grid: tuple[int, int]
    tokens: list[tuple[int, int]]  # (row, col) of each query on the grid
    maps: dict[int, np.ndarray]
    window_sizes: dict[int, int]


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` (any format :func:`basam_lite.to_rgb_uint8` accepts) resized to side x side
    (bilinear, antialiased; the aspect ratio is not kept)."""
    rgb = torch.as_tensor(to_rgb_uint8(np.asarray(image))).permute(2, 0, 1).float()[None]
    x = F.interpolate(rgb, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _configs(variants: Sequence[str] | Mapping[str, BASAMConfig]) -> dict[str, BASAMConfig]:
    if isinstance(variants, Mapping):
        return dict(variants)
    return {name: BASAMConfig.preset(name) for name in variants}


class AttentionAtlas:
    """Cached attention maps of ``image`` for a SAM at several input sides and variants.

    Args:
        sam: the model (left unpatched at its base size after every capture).
        image: an (H, W, 3) image; it is resized to side x side for each side.
        sides: input sides in px (multiples of the patch size).
        variants: preset names (``"vanilla"``, ``"scale"``, ``"bias"``, ``"paper"``) or a
            mapping name -> :class:`BASAMConfig`.
        queries: name -> (y, x) fractions of the image (default :data:`DEFAULT_QUERIES`).
        blocks: encoder blocks to capture (default: all).
    """

    def __init__(
        self,
        sam: Sam,
        image: np.ndarray,
        sides: Sequence[int],
        variants: Sequence[str] | Mapping[str, BASAMConfig] = ("vanilla", "paper"),
        queries: Mapping[str, Point] | None = None,
        blocks: Sequence[int] | None = None,
    ) -> None:
        self.sam = sam
        self.image = to_rgb_uint8(np.asarray(image))
        self.sides = [int(s) for s in sides]
        self.configs = _configs(variants)
        self.queries = dict(DEFAULT_QUERIES if queries is None else queries)
        if not self.sides or not self.configs or not self.queries:
            raise ValueError("give at least one side, one variant and one query point")
        for name, (y, x) in self.queries.items():
            if not (0 <= y < 1 and 0 <= x < 1):
                raise ValueError(
                    f"query {name!r}: (y, x) must be fractions in [0, 1), got {(y, x)}"
                )
        enc = sam.image_encoder
        self.patch = patch_size(enc)
        self.base = base_size(enc)[0]
        n_blocks = len(enc.blocks)
        self.blocks = list(range(n_blocks)) if blocks is None else [b % n_blocks for b in blocks]
        self.global_blocks = [i for i in self.blocks if enc.blocks[i].window_size == 0]
        self.num_heads = enc.blocks[0].attn.num_heads
        self._cache: dict[tuple[int, str], CapturedMaps] = {}

    @property
    def variants(self) -> list[str]:
        return list(self.configs)

    def token(self, side: int, query: str) -> tuple[int, int]:
        """(row, col) of query point ``query`` on the token grid at ``side``."""
        y, x = self.queries[query]
        g = side // self.patch
        return int(y * g), int(x * g)

    @torch.no_grad()
    def capture(self, side: int, variant: str) -> CapturedMaps:
        """The maps of every block for every query at (side, variant), computed once."""
        key = (int(side), variant)
        if key in self._cache:
            return self._cache[key]
        if variant not in self.configs:
            raise ValueError(f"unknown variant {variant!r}: this atlas has {self.variants}")
        sam, names = self.sam, list(self.queries)
        tokens = [self.token(side, q) for q in names]
        image = resize_square(self.image, side)
        try:
            set_input_size(sam, side)
            apply_basam(sam, self.configs[variant])
            x = torch.as_tensor(image).permute(2, 0, 1).float().to(sam.device)
            x = sam.preprocess(x)[None]
            with capture_attention(sam, blocks=self.blocks, queries=tokens) as cap:
                sam.image_encoder(x)
            maps = {b: cap.grid_maps(b)[0].float().cpu().numpy() for b in self.blocks}
            grid = cap.grids[self.blocks[0]]
            windows = dict(cap.window_sizes)
        finally:
            remove_basam(sam)
            restore_input_size(sam)
        captured = CapturedMaps(key[0], variant, image, grid, tokens, maps, windows)
        self._cache[key] = captured
        return captured

    def map(self, side: int, variant: str, block: int, head: int, query: str) -> np.ndarray:
        """One ``(rows, cols)`` attention map."""
        cap = self.capture(side, variant)
        return cap.maps[block][head, list(self.queries).index(query)]

    def stats(self, side: int, variant: str, block: int, head: int, query: str) -> dict:
        """Entropy (nats), its uniform bound ln N and the mean attention distance (px)."""
        p = self.map(side, variant, block, head, query)
        window = self.capture(side, variant).window_sizes[block]
        keys = p.size if window == 0 else window * window
        return {
            "entropy": float(entropy(p.reshape(-1))),
            "uniform_entropy": float(np.log(keys)),
            "distance_px": float(
                mean_attention_distance(
                    p.reshape(1, -1), p.shape, [self.token(side, query)], self.patch
                )[0]
            ),
        }

    def describe_block(self, block: int) -> str:
        ws = self.sam.image_encoder.blocks[block].window_size
        return f"block {block} (global)" if ws == 0 else f"block {block} ({ws}x{ws} windows)"

    def draw(
        self,
        ax,
        side: int,
        variant: str,
        block: int,
        head: int,
        query: str,
        log: bool = False,
        colorbar: bool = True,
        vmax: float | None = None,
    ):
        """One map over the resized image on ``ax`` (title: variant, side, entropy, distance)."""
        from .viz import show_attention

        cap = self.capture(side, variant)
        s = self.stats(side, variant, block, head, query)
        title = (
            f"{variant} @ {side} px: H = {s['entropy']:.2f} nats "
            f"(max {s['uniform_entropy']:.2f}), D = {s['distance_px']:.0f} px"
        )
        return show_attention(
            self.map(side, variant, block, head, query),
            ax,
            image=cap.image,
            query=self.token(side, query),
            title=title,
            log=log,
            colorbar=colorbar,
            vmax=vmax,
        )

    def figure(
        self,
        side: int,
        block: int,
        head: int,
        query: str,
        variants: Sequence[str] | None = None,
        log: bool = False,
        size: float = 4.2,
    ):
        """The explorer's view: one panel per variant at one side, for one block, head, query."""
        import matplotlib.pyplot as plt

        variants = self.variants if variants is None else list(variants)
        fig, axes = plt.subplots(1, len(variants), figsize=(size * 1.25 * len(variants), size))
        for ax, v in zip(np.atleast_1d(axes), variants, strict=True):
            self.draw(ax, side, v, block, head, query, log=log)
        fig.suptitle(
            f"{self.describe_block(block)}, head {head}, query '{query}' at token "
            f"{self.token(side, query)}",
            fontsize=11,
        )
        fig.tight_layout()
        return fig

    def across_sides(
        self,
        block: int,
        head: int,
        query: str,
        variants: Sequence[str] | None = None,
        log: bool = True,
        size: float = 3.0,
    ):
        """A grid: one row per variant, one column per side, one block/head/query."""
        import matplotlib.pyplot as plt

        variants = self.variants if variants is None else list(variants)
        fig, axes = plt.subplots(
            len(variants),
            len(self.sides),
            figsize=(size * 1.3 * len(self.sides), size * len(variants)),
            squeeze=False,
        )
        for r, v in enumerate(variants):
            for c, side in enumerate(self.sides):
                ax = axes[r, c]
                self.draw(ax, side, v, block, head, query, log=log)
                s = self.stats(side, v, block, head, query)
                ax.set_title(
                    f"{v} @ {side} px\nH = {s['entropy']:.2f}, D = {s['distance_px']:.0f} px",
                    fontsize=9,
                )
                if c:
                    ax.set_ylabel("")
        fig.suptitle(
            f"{self.describe_block(block)}, head {head}, query '{query}'"
            + (" (log10 scale)" if log else ""),
            fontsize=11,
        )
        fig.tight_layout()
        return fig

    def heads(self, side: int, variant: str, block: int, query: str, log: bool = True, ncols=3):
        """Every head of one block at one side and variant, for one query."""
        from .viz import grid_figure

        fig, axes = grid_figure(self.num_heads, ncols=ncols, size=3.6)
        for h, ax in enumerate(axes):
            self.draw(ax, side, variant, block, h, query, log=log)
            s = self.stats(side, variant, block, h, query)
            ax.set_title(
                f"head {h}: H = {s['entropy']:.2f}, D = {s['distance_px']:.0f} px", fontsize=9
            )
        fig.suptitle(
            f"{variant} @ {side} px, {self.describe_block(block)}, query '{query}'"
            + (" (log10 scale)" if log else ""),
            fontsize=11,
        )
        fig.tight_layout()
        return fig


def attention_explorer(
    sam: Sam,
    image: np.ndarray,
    sides: Sequence[int] | None = None,
    variants: Sequence[str] | Mapping[str, BASAMConfig] = ("vanilla", "paper"),
    queries: Mapping[str, Point] | None = None,
    default: Mapping[str, object] | None = None,
    atlas: AttentionAtlas | None = None,
    show_default: bool = True,
):
    """An ipywidgets explorer of attention maps (side, variant, block, head, query, log scale).

    Draws the default view as a static figure first, so the notebook shows it without a live
    kernel, then returns the widget (a ``VBox``: controls and an
    output area that redraws when a control moves). Captures are cached per (side, variant) in
    the :class:`AttentionAtlas` (pass ``atlas`` to share one that is already filled).

    Args:
        sides: input sides; default half, one, two and four times the model's base size.
        default: starting values for ``side``, ``variant``, ``block``, ``head``, ``query``,
            ``log``; default: the base size, every variant side by side (``"compare"``), the last
            global block, head 0, the first query, linear scale.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    if atlas is None:
        if sides is None:
            b = base_size(sam.image_encoder)[0]
            sides = [b // 2, b, 2 * b, 4 * b]
        atlas = AttentionAtlas(sam, image, sides, variants, queries)
    last_global = atlas.global_blocks[-1] if atlas.global_blocks else atlas.blocks[-1]
    state = {
        "side": atlas.base if atlas.base in atlas.sides else atlas.sides[0],
        "variant": COMPARE,
        "block": last_global,
        "head": 0,
        "query": next(iter(atlas.queries)),
        "log": False,
        **(default or {}),
    }
    controls = {
        "side": widgets.SelectionSlider(options=atlas.sides, description="side (px)"),
        "variant": widgets.ToggleButtons(options=[*atlas.variants, COMPARE], description="variant"),
        "block": widgets.Dropdown(
            options=[(atlas.describe_block(b), b) for b in atlas.blocks], description="block"
        ),
        "head": widgets.IntSlider(min=0, max=atlas.num_heads - 1, description="head"),
        "query": widgets.Dropdown(options=list(atlas.queries), description="query"),
        "log": widgets.Checkbox(description="log10 scale"),
    }
    for name, w in controls.items():
        w.value = state[name]
    out = widgets.Output()

    def view() -> dict:
        return {k: w.value for k, w in controls.items()}

    def draw(settings: Mapping[str, object]):
        s = dict(settings)
        chosen = None if s["variant"] == COMPARE else [s["variant"]]
        return atlas.figure(s["side"], s["block"], s["head"], s["query"], chosen, s["log"])

    def redraw(_change=None) -> None:
        with out:
            out.clear_output(wait=True)
            fig = draw(view())
            display(fig)
            plt.close(fig)

    for w in controls.values():
        w.observe(redraw, names="value")
    if show_default:
        fig = draw(state)
        display(fig)
        plt.close(fig)
    caption = widgets.HTML(
        "The figure above is the default view. Move a control to draw another view here "
        "(each new side or variant costs one forward pass, then it is cached)."
    )
    ui = widgets.VBox(
        [
            widgets.HBox([controls["side"], controls["variant"]]),
            widgets.HBox([controls["block"], controls["head"]]),
            widgets.HBox([controls["query"], controls["log"]]),
            caption,
            out,
        ]
    )
    ui.atlas = atlas  # for callers and tests
    ui.controls = controls
    return ui


def scene_queries(mask: np.ndarray) -> dict[str, Point]:
    """Two query points for an image with an object ``mask``: the innermost object pixel
    ("object") and the innermost background pixel ("background"), as (y, x) fractions."""
    from .datasets import center_point

    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    out = {}
    for name, region in (("object", m), ("background", ~m)):
        x, y = center_point(region)[0][0]
        out[name] = ((y + 0.5) / h, (x + 0.5) / w)
    return out


def capture_cost(
    sides: Sequence[int], heads: int, queries: int, patch: int = 16, batch: int = 1
) -> pd.DataFrame:
    """Memory of one global block's fp32 attention probabilities per input side: the full
    ``[B, heads, N, N]`` map against the ``queries`` rows :func:`capture_attention` keeps."""
    rows = []
    for side in sides:
        n = (side // patch) ** 2
        rows.append(
            {
                "side": side,
                "tokens": n,
                "full_map_MiB": batch * heads * n * n * 4 / 2**20,
                "captured_rows_KiB": batch * heads * queries * n * 4 / 2**10,
            }
        )
    return pd.DataFrame(rows)


def plot_statistics(
    stats: pd.DataFrame,
    metrics: Sequence[str] = ("entropy", "distance_px"),
    patch: int = 16,
    height: float = 3.2,
):
    """Line plots of :func:`basam_lite.analysis.attention_statistics` output: one row per
    metric, one column per block, x = input side (log2 axis), hue = variant, style = image (when
    an ``image`` column is present); the band is the spread over heads (95% interval).
    The entropy panels add its ceiling ln N (uniform attention) as a dotted line."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    labels = {
        "entropy": "entropy H (nats)",
        "normalised_entropy": "H / ln N",
        "distance_px": "mean attention distance (px)",
    }
    blocks = sorted(stats["block"].unique())
    sides = sorted(stats["side"].unique())
    style = "image" if "image" in stats else None
    fig, axes = plt.subplots(
        len(metrics),
        len(blocks),
        figsize=(1.35 * height * len(blocks) + 1.5, height * len(metrics)),
        squeeze=False,
    )
    for r, metric in enumerate(metrics):
        for c, block in enumerate(blocks):
            ax = axes[r, c]
            part = stats[stats["block"] == block]
            sns.lineplot(
                data=part,
                x="side",
                y=metric,
                hue="variant",
                style=style,
                markers=True,
                errorbar=("ci", 95),
                n_boot=200,
                seed=0,
                ax=ax,
                legend=(r == 0 and c == len(blocks) - 1),
            )
            if metric == "entropy":
                ax.plot(sides, [np.log((s // patch) ** 2) for s in sides], "k:", lw=1, label="ln N")
            ax.set_xscale("log", base=2)
            ax.set_xticks(sides, [str(s) for s in sides])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.set(
                title=f"block {block}: {labels.get(metric, metric)}",
                xlabel="input side (px)",
                ylabel=labels.get(metric, metric),
            )
    handles = axes[0, -1].get_legend()
    if handles is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    fig.tight_layout()
    return fig
