r"""Attention maps of one image across input sizes, variants, blocks, heads and query points.

:class:`AttentionAtlas` runs the encoder once per (input side, variant) with the attention rows of
its query points captured in every block (:func:`basam_lite.capture_attention` recomputes only
those rows, so a 1024 px input on the tiny model, a 64 x 64 grid, costs a few query rows and not a
4096 x 4096 matrix) and caches them, so that switching block or head is free and each new (side,
variant) costs one forward pass. A query point added later (a click) costs one more forward pass
per (side, variant) it is drawn at. Query points are fractions (y, x) of the image, so the same
point is followed across sizes.

For one map :math:`p` (a query at grid position :math:`p_i`, keys :math:`j`) the figures report
the entropy :math:`H = -\sum_j p_j \ln p_j` (nats) and the mean attention distance
:math:`D = s \sum_j p_j \lVert p_i - p_j \rVert` (pixels of the resized input, patch size
:math:`s`), both computed by :mod:`basam_lite.analysis` (:func:`~basam_lite.analysis.entropy`,
:func:`~basam_lite.analysis.mean_attention_distance`).

Colour scale: maps are drawn on a log scale by default, spanning ``decades`` powers of ten below
the peak, so both the peak and a tail at the level of uniform attention (1/N: 2.4e-4 at a 64 x 64
grid) stay readable at every size. Panels drawn together share one scale unless asked otherwise.
Windowed blocks are zoomed to the query's window and its neighbours where the window would
otherwise be a speck (a 4 x 4-token window on a 64 x 64 grid); the title says so.

:func:`attention_explorer` builds :class:`AttentionExplorer`: controls above one matplotlib figure
(an ipympl canvas) that is redrawn in place; clicking the image makes the nearest token the query.
Rendered without a kernel, the widget's output falls back to a PNG of its default view.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.colors import LogNorm, Normalize
from torch import nn

from . import analysis
from .capture import capture_attention
from .config import BASAMConfig
from .encoders import adapter_for
from .errors import UserError
from .predictor import to_rgb_uint8
from .resolution import base_size
from .variants import variant_at

Point = tuple[float, float]

DEFAULT_QUERIES: dict[str, Point] = {
    "centre": (0.5, 0.5),
    "top left": (0.15, 0.15),
    "bottom right": (0.85, 0.85),
}
"""Query points as (y, x) fractions of the image, used when none are given."""

COMPARE = "compare"
"""The explorer's variant choice that draws every variant side by side."""

SCALES = ("log", "linear")
"""Colour scales of the maps: log10 of the probability (default) or the probability itself."""

DECADES = 4.0
"""Powers of ten the log colour scale spans below the peak."""


@dataclass
class CapturedMaps:
    """The maps of one (side, variant): ``maps[block]`` is ``[heads, queries, rows, cols]``
    (float32; for windowed blocks, zero outside the query's window), queries in the order of
    ``names``."""

    side: int
    variant: str
    image: np.ndarray  # (side, side, 3) uint8, what the encoder saw
    grid: tuple[int, int]
    names: list[str]
    tokens: list[tuple[int, int]]  # (row, col) of each query on the grid
    maps: dict[int, np.ndarray]
    window_sizes: dict[int, int] = field(default_factory=dict)

    def extend(self, other: CapturedMaps) -> None:
        """Append the queries of ``other`` (same side and variant)."""
        self.names += other.names
        self.tokens += other.tokens
        for b in self.maps:
            self.maps[b] = np.concatenate([self.maps[b], other.maps[b]], axis=1)


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` (any format :func:`basam_lite.to_rgb_uint8` accepts) resized to side x side
    (bilinear, antialiased; the aspect ratio is not kept)."""
    rgb = torch.as_tensor(to_rgb_uint8(np.asarray(image))).permute(2, 0, 1).float()[None]
    x = F.interpolate(rgb, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def map_entropy(p: np.ndarray) -> float:
    """Entropy (nats) of one attention map (any shape, summing to 1): :func:`analysis.entropy`."""
    return float(analysis.entropy(torch.as_tensor(np.asarray(p, dtype=np.float64)).reshape(-1)))


def map_distance(p: np.ndarray, token: tuple[int, int], patch: int) -> float:
    """Mean attention distance (px) of a ``(rows, cols)`` map from the query ``token``:
    :func:`analysis.mean_attention_distance`."""
    p = np.asarray(p, dtype=np.float32)
    return float(analysis.mean_attention_distance(p.reshape(1, -1), p.shape, [token], patch)[0])


def colour_norm(
    maps: Sequence[np.ndarray], scale: str = "log", decades: float = DECADES
) -> Normalize:
    """One colour scale for ``maps``: from 0 (linear) or ``10**-decades`` of the peak (log) to
    the largest value of all of them."""
    if scale not in SCALES:
        raise UserError(f"colour scale {scale!r} is not one of {SCALES}: pick one of those")
    peak = max(float(np.max(m)) for m in maps)
    peak = peak if peak > 0 else 1.0
    if scale == "log":
        return LogNorm(vmin=peak * 10.0**-decades, vmax=peak, clip=False)
    return Normalize(vmin=0.0, vmax=peak)


def nearest_token(x: float, y: float, side: int, grid: tuple[int, int]) -> tuple[int, int]:
    """(row, col) of the token whose patch holds the image point (x, y), in px of a side x side
    image drawn with extent (0, side, side, 0), clamped onto the grid."""
    rows, cols = grid
    r = int(np.clip(np.floor(y / side * rows), 0, rows - 1))
    c = int(np.clip(np.floor(x / side * cols), 0, cols - 1))
    return r, c


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
        blocks: encoder blocks to capture (default: every block whose queries can be placed
            on its grid: all but the blocks that pool their queries, SAM 2's stage
            transitions, which capture refuses for chosen queries).
    """

    def __init__(
        self,
        sam: nn.Module,
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
        self.queries: dict[str, Point] = {}
        if not self.sides or not self.configs:
            raise UserError("give at least one side and one variant")
        for name, point in (DEFAULT_QUERIES if queries is None else queries).items():
            self.add_query(name, point)
        if not self.queries:
            raise UserError("give at least one query point, as name -> (y, x) fractions")
        self.adapter = adapter_for(sam)
        attention = self.adapter.attention_blocks()
        self.patch = self.adapter.patch_size()
        self.base = self.adapter.base_size()[0]
        n_blocks = len(attention)
        if blocks is None:
            base_hw = (self.base, self.base)
            blocks = [
                i
                for i in range(n_blocks)
                if (g := self.adapter.block_grids(i, base_hw)).query == g.key
            ]
        self.blocks = [b % n_blocks for b in blocks]
        self.global_blocks = [i for i in self.blocks if attention[i].is_global]
        self.num_heads = attention[0].heads
        self._cache: dict[tuple[int, str], CapturedMaps] = {}

    @property
    def variants(self) -> list[str]:
        return list(self.configs)

    def add_query(self, name: str, point: Point) -> str:
        """Register query point ``name`` at (y, x) fractions of the image; returns ``name``."""
        y, x = (float(v) for v in point)
        if not (0 <= y < 1 and 0 <= x < 1):
            raise UserError(f"query {name!r}: (y, x) must be fractions in [0, 1), got {(y, x)}")
        if name in self.queries and self.queries[name] != (y, x):
            raise UserError(f"query {name!r} already exists at {self.queries[name]}: rename it")
        self.queries[name] = (y, x)
        return name

    def add_token_query(self, side: int, token: tuple[int, int]) -> str:
        """Register the centre of ``token`` (row, col) on the grid at ``side`` as a query point
        (named after the token and side) and return its name."""
        rows, cols = self.adapter.block_grids(0, (side, side)).key
        r, c = token
        return self.add_query(f"token ({r}, {c}) @ {side} px", ((r + 0.5) / rows, (c + 0.5) / cols))

    def token(self, side: int, query: str) -> tuple[int, int]:
        """(row, col) of query point ``query`` on the first attention block's token grid at
        ``side`` (the grid :func:`~basam_lite.capture.capture_attention` reads queries on: the
        patch grid, or for MobileSAM the grid its first attention stage runs at)."""
        y, x = self.queries[query]
        rows, cols = self.adapter.block_grids(0, (side, side)).key
        return int(y * rows), int(x * cols)

    def window_size(self, block: int) -> int:
        """Window side (tokens) of ``block``; 0 for a global block."""
        return self.adapter.attention_blocks()[block].window

    @torch.no_grad()
    def _run(self, side: int, variant: str, names: list[str]) -> CapturedMaps:
        sam = self.sam
        tokens = [self.token(side, q) for q in names]
        image = resize_square(self.image, side)
        with variant_at(sam, self.configs[variant], side):
            x = torch.as_tensor(image).permute(2, 0, 1).float().to(sam.device)
            x = self.adapter.preprocess(x)[None]
            with capture_attention(sam, blocks=self.blocks, queries=tokens) as cap:
                self.adapter.encode(x)
            maps = {b: cap.grid_maps(b)[0].float().cpu().numpy() for b in self.blocks}
            grid = cap.grids[self.blocks[0]]
            windows = dict(cap.window_sizes)
        return CapturedMaps(side, variant, image, grid, list(names), tokens, maps, windows)

    def capture(
        self, side: int, variant: str, queries: Sequence[str] | None = None
    ) -> CapturedMaps:
        """The maps of every block at (side, variant) for ``queries`` (default: all registered),
        computed once; queries added later cost one forward pass for all of them together."""
        key = (int(side), variant)
        if variant not in self.configs:
            raise UserError(f"unknown variant {variant!r}: this atlas has {self.variants}")
        if key[0] not in self.sides:
            raise UserError(f"side {side} px is not one of this atlas's sides {self.sides}")
        wanted = list(self.queries) if queries is None else list(queries)
        for q in wanted:
            if q not in self.queries:
                raise UserError(f"unknown query {q!r}: add it with add_query first")
        have = self._cache.get(key)
        missing = [q for q in wanted if have is None or q not in have.names]
        if missing:
            new = self._run(key[0], variant, missing)
            if have is None:
                self._cache[key] = have = new
            else:
                have.extend(new)
        assert have is not None
        return have

    def map(self, side: int, variant: str, block: int, head: int, query: str) -> np.ndarray:
        """One ``(rows, cols)`` attention map."""
        cap = self.capture(side, variant, [query])
        return cap.maps[block][head, cap.names.index(query)]

    def block_token(self, side: int, block: int, query: str) -> tuple[tuple[int, int], float]:
        """The query's token on ``block``'s own grid and that grid's stride in px: the first
        grid's token and patch size, unless the block runs on a coarser grid (SAM 2's later
        stages), where it is the cell holding the query."""
        rows, cols = self.adapter.block_grids(block, (side, side)).key
        g_rows, g_cols = self.adapter.block_grids(0, (side, side)).key
        r, c = self.token(side, query)
        return (r * rows // g_rows, c * cols // g_cols), side / cols

    def stats(self, side: int, variant: str, block: int, head: int, query: str) -> dict:
        """Entropy (nats), its uniform bound ln N and the mean attention distance (px)."""
        p = self.map(side, variant, block, head, query)
        window = self.window_size(block)
        keys = p.size if window == 0 else window * window
        token, stride = self.block_token(side, block, query)
        return {
            "entropy": map_entropy(p),
            "uniform_entropy": float(np.log(keys)),
            "distance_px": map_distance(p, token, stride),  # type: ignore[arg-type]
        }

    def describe_block(self, block: int) -> str:
        ws = self.window_size(block)
        return f"block {block} (global)" if ws == 0 else f"block {block} ({ws}x{ws} windows)"

    def view_box(
        self, side: int, block: int, query: str
    ) -> tuple[float, float, float, float] | None:
        """(x0, x1, y0, y1) in px to zoom to for a windowed block whose window would be a speck
        (the query's window with one window of margin, when that is under half the image);
        None to show the whole image."""
        ws = self.window_size(block)
        (r, c), stride = self.block_token(side, block, query)
        g = round(side / stride)
        if ws == 0 or 3 * ws > g / 2:
            return None
        r0, c0 = (r // ws) * ws, (c // ws) * ws
        y0, y1 = max(0, r0 - ws), min(g, r0 + 2 * ws)
        x0, x1 = max(0, c0 - ws), min(g, c0 + 2 * ws)
        return x0 * stride, x1 * stride, y0 * stride, y1 * stride

    def draw(
        self,
        ax,
        side: int,
        variant: str,
        block: int,
        head: int,
        query: str,
        norm: Normalize | None = None,
        scale: str = "log",
        colorbar: bool = True,
        title: str | None = None,
    ):
        """One map over the resized image on ``ax``; ``norm`` (default: this map's own
        :func:`colour_norm`) sets the colour scale. Returns the map's ``AxesImage``."""
        cap = self.capture(side, variant, [query])
        p = self.map(side, variant, block, head, query)
        norm = colour_norm([p], scale) if norm is None else norm
        log = isinstance(norm, LogNorm)
        s = self.stats(side, variant, block, head, query)
        box = self.view_box(side, block, query)
        if title is None:
            title = (
                f"{variant} @ {side} px: H = {s['entropy']:.2f} nats "
                f"(max {s['uniform_entropy']:.2f}), D = {s['distance_px']:.0f} px"
            )
        if box is not None:
            title += "\n(zoomed to the query's window)"
        ax.imshow(cap.image, extent=(0, side, side, 0))
        data = np.ma.masked_less_equal(p, 0.0) if log else p
        im = ax.imshow(
            data,
            cmap="magma",
            norm=norm,
            alpha=0.75,
            extent=(0, side, side, 0),
            interpolation="nearest",
        )
        r, c = self.token(side, query)
        rows, cols = self.adapter.block_grids(0, (side, side)).key
        ax.scatter(
            [(c + 0.5) * side / cols],
            [(r + 0.5) * side / rows],
            marker="x",
            s=80,
            color="cyan",
            linewidths=2,
            zorder=3,
        )
        if box is not None:
            ax.set_xlim(box[0], box[1])
            ax.set_ylim(box[3], box[2])
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
        ax.set_title(title, fontsize=9)
        if colorbar:
            label = "attention probability" + (" (log scale)" if log else "")
            ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
        return im

    def _panels(
        self,
        fig,
        panels: Sequence[tuple[int, str, int, int, str]],
        ncols: int,
        scale: str,
        shared: bool,
        titles: Sequence[str | None] | None = None,
    ) -> list:
        """Draw ``panels`` ((side, variant, block, head, query) each) on ``fig`` in rows of
        ``ncols``; one colour scale for all of them when ``shared``. Returns the AxesImages."""
        maps = [self.map(*p) for p in panels]
        common = colour_norm(maps, scale) if shared else None
        nrows = -(-len(panels) // ncols)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(panels) :]:
            ax.axis("off")
        images = []
        for i, (ax, p) in enumerate(zip(axes, panels, strict=False)):
            norm = common if shared else colour_norm([maps[i]], scale)
            last_in_row = (i % ncols == ncols - 1) or i == len(panels) - 1
            images.append(
                self.draw(
                    ax,
                    *p,
                    norm=norm,
                    scale=scale,
                    colorbar=(not shared) or last_in_row,
                    title=None if titles is None else titles[i],
                )
            )
            if i % ncols:
                ax.set_ylabel("")
        return images

    def _scale_note(self, scale: str, shared: bool) -> str:
        base = f"log scale, {DECADES:.0f} decades below the peak" if scale == "log" else "linear"
        return base + (", one colour scale for all panels" if shared else ", own scale per panel")

    def draw_view(
        self,
        fig,
        side: int,
        block: int,
        head: int,
        query: str,
        variants: Sequence[str] | None = None,
        scale: str = "log",
        shared: bool = True,
    ) -> list:
        """The explorer's view on ``fig`` (cleared first): one panel per variant at one side,
        for one block, head and query. Returns the panels' AxesImages."""
        variants = self.variants if variants is None else list(variants)
        fig.clear()
        images = self._panels(
            fig, [(side, v, block, head, query) for v in variants], len(variants), scale, shared
        )
        fig.suptitle(
            f"{self.describe_block(block)}, head {head}, query '{query}' at token "
            f"{self.token(side, query)} ({self._scale_note(scale, shared)})",
            fontsize=10,
        )
        fig.tight_layout()
        return images

    def figure(
        self,
        side: int,
        block: int,
        head: int,
        query: str,
        variants: Sequence[str] | None = None,
        scale: str = "log",
        shared: bool = True,
        size: float = 4.2,
    ):
        """:meth:`draw_view` on a new pyplot figure."""
        import matplotlib.pyplot as plt

        n = len(self.variants if variants is None else variants)
        fig = plt.figure(figsize=(size * 1.25 * n, size))
        self.draw_view(fig, side, block, head, query, variants, scale, shared)
        return fig

    def across_sides(
        self,
        block: int,
        head: int,
        query: str,
        variants: Sequence[str] | None = None,
        scale: str = "log",
        shared: bool = True,
        size: float = 3.0,
    ):
        """A grid: one row per variant, one column per side, one block/head/query."""
        import matplotlib.pyplot as plt

        variants = self.variants if variants is None else list(variants)
        fig = plt.figure(figsize=(size * 1.3 * len(self.sides), size * len(variants)))
        panels = [(s, v, block, head, query) for v in variants for s in self.sides]
        titles = []
        for p in panels:
            st = self.stats(*p)
            titles.append(
                f"{p[1]} @ {p[0]} px\nH = {st['entropy']:.2f}, D = {st['distance_px']:.0f} px"
            )
        self._panels(fig, panels, len(self.sides), scale, shared, titles)
        fig.suptitle(
            f"{self.describe_block(block)}, head {head}, query '{query}' "
            f"({self._scale_note(scale, shared)})",
            fontsize=11,
        )
        fig.tight_layout()
        return fig

    def heads(
        self,
        side: int,
        variant: str,
        block: int,
        query: str,
        scale: str = "log",
        shared: bool = True,
        ncols: int = 3,
        slopes: Sequence[float] | None = None,
    ):
        """Every head of one block at one side and variant, for one query; ``slopes`` (one per
        head, e.g. the mask's ALiBi slopes) go into the panel titles."""
        import matplotlib.pyplot as plt

        nrows = -(-self.num_heads // ncols)
        fig = plt.figure(figsize=(3.6 * 1.2 * ncols, 3.6 * nrows))
        panels = [(side, variant, block, h, query) for h in range(self.num_heads)]
        titles = []
        for h, p in enumerate(panels):
            st = self.stats(*p)
            slope = "" if slopes is None else f", m = {slopes[h]:.3g}"
            titles.append(
                f"head {h}{slope}\nH = {st['entropy']:.2f}, D = {st['distance_px']:.0f} px"
            )
        self._panels(fig, panels, ncols, scale, shared, titles)
        fig.suptitle(
            f"{variant} @ {side} px, {self.describe_block(block)}, query '{query}' "
            f"({self._scale_note(scale, shared)})",
            fontsize=11,
        )
        fig.tight_layout()
        return fig


class AttentionExplorer:
    """Controls above one figure that is redrawn in place (an ipympl canvas).

    ``widget`` is what a notebook displays; :meth:`on_click` is the canvas's
    ``button_press_event`` handler (a click on a map makes the nearest token the query, at every
    side); :attr:`figure` stays the same object across updates. Rendered without a kernel (an
    HTML export, a notebook reopened without running it), the output falls back to a PNG of the
    view drawn when it was displayed.
    """

    def __init__(self, atlas: AttentionAtlas, default: Mapping[str, object] | None = None) -> None:
        import ipywidgets as widgets
        from matplotlib.figure import Figure

        try:
            from ipympl.backend_nbagg import Canvas, FigureManager
        except ImportError as e:  # pragma: no cover - ipympl is a declared dependency
            raise UserError(
                "the explorer needs ipympl: pip install -e '.[notebooks]' (or pip install ipympl)"
            ) from e

        self.atlas = atlas
        last_global = atlas.global_blocks[-1] if atlas.global_blocks else atlas.blocks[-1]
        state = {
            "side": atlas.base if atlas.base in atlas.sides else atlas.sides[0],
            "variant": COMPARE,
            "block": last_global,
            "head": 0,
            "query": next(iter(atlas.queries)),
            "scale": "log",
            "shared": True,
            **(default or {}),
        }
        self.controls = {
            "side": widgets.SelectionSlider(options=atlas.sides, description="side (px)"),
            "variant": widgets.ToggleButtons(
                options=[*atlas.variants, COMPARE], description="variant"
            ),
            "block": widgets.Dropdown(
                options=[(atlas.describe_block(b), b) for b in atlas.blocks], description="block"
            ),
            "head": widgets.IntSlider(min=0, max=atlas.num_heads - 1, description="head"),
            "query": widgets.Dropdown(options=list(atlas.queries), description="query"),
            "scale": widgets.ToggleButtons(options=list(SCALES), description="colours"),
            # not indented and as wide as its text: the default width cut it to "...all pan..."
            "shared": widgets.Checkbox(
                description="one colour scale for all panels",
                indent=False,
                layout=widgets.Layout(width="auto"),
            ),
        }
        for name, w in self.controls.items():
            w.value = state[name]
        self.status = widgets.HTML()
        n = len(atlas.variants)
        self.figure = Figure(figsize=(4.2 * 1.25 * n, 4.6), dpi=90)
        self.canvas = Canvas(self.figure)
        self.manager = FigureManager(self.canvas, 0)
        self.canvas.header_visible = False
        self.canvas.toolbar_visible = False
        self.canvas.mpl_connect("button_press_event", self.on_click)
        self.images: list = []
        self._quiet = False
        self.update()
        for w in self.controls.values():
            w.observe(self.update, names="value")
        c = self.controls
        self.widget = _explorer_box_class()(
            [
                widgets.HBox([c["side"], c["variant"]]),
                widgets.HBox([c["block"], c["head"]]),
                widgets.HBox([c["query"], c["scale"], c["shared"]]),
                self.status,
                self.canvas,
            ],
            explorer=self,
        )

    def settings(self) -> dict:
        return {k: w.value for k, w in self.controls.items()}

    def update(self, _change: object = None) -> None:
        """Redraw the view of the current settings on the same figure."""
        if self._quiet:
            return
        s = self.settings()
        chosen = None if s["variant"] == COMPARE else [s["variant"]]
        self.status.value = "<i>drawing...</i>"
        self.images = self.atlas.draw_view(
            self.figure,
            s["side"],
            s["block"],
            s["head"],
            s["query"],
            chosen,
            s["scale"],
            s["shared"],
        )
        self.canvas.draw_idle()
        self.status.value = (
            "Click a token on a map to make it the query (the presets are in the query list). "
            "A new side, variant or point costs one forward pass; what was seen is cached."
        )

    def select_token(self, token: tuple[int, int]) -> str:
        """Make ``token`` (row, col) at the current side the query and redraw; returns the
        query's name."""
        side = self.controls["side"].value
        name = self.atlas.add_token_query(side, token)
        q = self.controls["query"]
        if name not in q.options:
            self._quiet = True  # new options may reset the value: draw once, below
            try:
                q.options = [*q.options, name]
            finally:
                self._quiet = False
        if q.value == name:
            self.update()
        else:
            q.value = name  # triggers update()
        return name

    def on_click(self, event) -> str | None:
        """``button_press_event`` handler: the token nearest the click on any map panel."""
        if event.inaxes is None or event.xdata is None or event.ydata is None:
            return None
        if not any(im.axes is event.inaxes for im in self.images):
            return None  # a colour bar, not a map
        side = self.controls["side"].value
        grid = (side // self.atlas.patch, side // self.atlas.patch)
        return self.select_token(nearest_token(event.xdata, event.ydata, side, grid))

    def png(self) -> bytes:
        """The current view as PNG bytes."""
        import io

        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=self.figure.dpi)
        return buf.getvalue()


@functools.cache
def _explorer_box_class():
    import ipywidgets as widgets

    class ExplorerBox(widgets.VBox):
        """The explorer's VBox, whose display bundle also carries a PNG of the view, shown
        wherever the live widget cannot be (an HTML export without widget state)."""

        def __init__(self, children, explorer: AttentionExplorer, **kwargs) -> None:
            super().__init__(children, **kwargs)
            self.explorer = explorer

        def _repr_mimebundle_(self, **kwargs):
            import base64

            data = super()._repr_mimebundle_(**kwargs) or {}
            data["image/png"] = base64.b64encode(self.explorer.png()).decode("ascii")
            return data

    return ExplorerBox


def attention_explorer(
    sam: nn.Module,
    image: np.ndarray,
    sides: Sequence[int] | None = None,
    variants: Sequence[str] | Mapping[str, BASAMConfig] = ("vanilla", "paper"),
    queries: Mapping[str, Point] | None = None,
    default: Mapping[str, object] | None = None,
    atlas: AttentionAtlas | None = None,
):
    """The explorer's widget (side, variant or all side by side, block, head, query, colour
    scale): controls above one figure redrawn in place; a click on a map picks the query.

    Needs a running kernel; without one (a reopened notebook, an HTML export) the output shows a
    PNG of the default view. Captures are cached per (side, variant) in the
    :class:`AttentionAtlas` (pass ``atlas`` to share one that is already filled).

    Args:
        sides: input sides; default half, one, two and four times the model's base size.
        default: starting values for ``side``, ``variant``, ``block``, ``head``, ``query``,
            ``scale``, ``shared``; default: the base size, every variant side by side
            (``"compare"``), the last global block, head 0, the first query, log scale shared by
            the panels.

    Returns the widget; ``widget.explorer`` is the :class:`AttentionExplorer`.
    """
    if atlas is None:
        if sides is None:
            b = base_size(sam)[0]
            sides = [b // 2, b, 2 * b, 4 * b]
        atlas = AttentionAtlas(sam, image, sides, variants, queries)
    return AttentionExplorer(atlas, default).widget


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


def stretching_reference(
    stats: pd.DataFrame, metric: str, reference_side: int, variant: str = "vanilla"
) -> pd.DataFrame:
    """What ``metric`` would be at every side if ``variant``'s maps at ``reference_side`` simply
    stretched with the image (:func:`basam_lite.analysis.stretch_map`): ``below_uniform``
    (``ln N - H``) stays at its value there, ``distance_px`` grows in proportion to the side,
    ``entropy`` grows by ``ln`` of the token ratio. One row per (block, image when present,
    side), column ``metric`` (mean over heads)."""
    if metric not in ("below_uniform", "distance_px", "entropy"):
        raise ValueError(f"no stretching reference for {metric!r}")
    keys = ["block", "image"] if "image" in stats else ["block"]
    at = stats[(stats["variant"] == variant) & (stats["side"] == reference_side)]
    if at.empty:
        raise ValueError(f"no {variant!r} rows at side {reference_side} to stretch from")
    start = at.groupby(keys)[metric].mean()
    rows = []
    for key, value in start.items():
        key = key if isinstance(key, tuple) else (key,)
        for side in sorted(stats["side"].unique()):
            k = side / reference_side
            if metric == "distance_px":
                v = value * k
            elif metric == "entropy":
                v = value + np.log(k * k)
            else:
                v = value
            rows.append({**dict(zip(keys, key, strict=True)), "side": side, metric: v})
    return pd.DataFrame(rows)


def plot_statistics(
    stats: pd.DataFrame,
    metrics: Sequence[str] = ("below_uniform", "distance_px"),
    patch: int = 16,
    height: float = 3.2,
    reference_side: int | None = None,
):
    """Line plots of :func:`basam_lite.analysis.attention_statistics` output: one row per
    metric, one column per block, x = input side (log2 axis), hue = variant, style = image (when
    an ``image`` column is present); the band is the spread over heads (95% interval).
    The entropy panels add its ceiling ln N (uniform attention) as a dotted line. With
    ``reference_side``, grey lines show what vanilla's maps at that side would give at every
    side if they simply stretched with the image (:func:`stretching_reference`): flat for
    ``ln N - H``, proportional to the side for the distance. The legend sits outside the axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    labels = {
        "entropy": "entropy H (nats)",
        "normalised_entropy": "H / ln N",
        "below_uniform": "ln N - H (nats below uniform)",
        "distance_px": "mean attention distance (px)",
    }
    blocks = sorted(stats["block"].unique())
    sides = sorted(stats["side"].unique())
    style = "image" if "image" in stats else None
    dashes = ["--", "-.", ":", (0, (5, 1))]
    fig, axes = plt.subplots(
        len(metrics),
        len(blocks),
        figsize=(1.35 * height * len(blocks) + 1.5, height * len(metrics)),
        squeeze=False,
    )
    for r, metric in enumerate(metrics):
        ref = (
            stretching_reference(stats, metric, reference_side)
            if reference_side is not None and metric in ("below_uniform", "distance_px", "entropy")
            else None
        )
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
            if ref is not None:
                mine = ref[ref["block"] == block]
                groups = mine.groupby("image") if "image" in mine else [(None, mine)]
                for i, (_, g) in enumerate(groups):
                    ax.plot(g["side"], g[metric], color="0.45", lw=1.2, ls=dashes[i % len(dashes)])
            ax.set_xscale("log", base=2)
            ax.set_xticks(sides, [str(s) for s in sides])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            if metric == "below_uniform":
                ax.set_ylim(bottom=0)
            ax.set(
                title=f"block {block}: {labels.get(metric, metric)}",
                xlabel="input side (px)",
                ylabel=labels.get(metric, metric),
            )
    legend = axes[0, -1].get_legend()
    if legend is not None:  # seaborn's legend, plus the lines drawn by hand
        handles = list(legend.legend_handles)
        texts = [t.get_text() for t in legend.get_texts()]
        if "entropy" in metrics:
            handles.append(Line2D([], [], color="k", ls=":", lw=1))
            texts.append("ln N (uniform attention)")
        if reference_side is not None:
            images = sorted(stats["image"].unique()) if "image" in stats else [None]
            for i, image in enumerate(images):
                handles.append(Line2D([], [], color="0.45", lw=1.2, ls=dashes[i % len(dashes)]))
                texts.append(
                    f"vanilla at {reference_side} px, stretched" + (f" ({image})" if image else "")
                )
        legend.remove()
        axes[0, -1].legend(handles, texts, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    fig.tight_layout()
    return fig
