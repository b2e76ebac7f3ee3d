"""basam_lite.explorer: cached attention maps across sizes and variants, and the widget."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

import basam_lite as bl
from basam_lite import analysis, explorer
from basam_lite.datasets import ProceduralScenes
from basam_lite.errors import UserError

QUERIES = {"centre": (0.5, 0.5), "corner": (0.1, 0.9)}


@pytest.fixture(scope="module")
def atlas():
    sam = bl.build_sam("tiny")
    image = ProceduralScenes(1, seed=0).sample(0, size=128).image
    return explorer.AttentionAtlas(sam, image, [128, 256], ["vanilla", "paper"], QUERIES)


def test_maps_are_distributions_on_the_grid(atlas):
    cap = atlas.capture(256, "paper")
    assert cap.grid == (16, 16) and cap.image.shape == (256, 256, 3)
    assert cap.tokens == [(8, 8), (1, 14)]
    for block, maps in cap.maps.items():
        assert maps.shape == (6, 2, 16, 16)
        np.testing.assert_allclose(maps.sum(axis=(-2, -1)), 1.0, atol=1e-5)
        if cap.window_sizes[block]:  # windowed: only the 4 x 4 window of the query
            assert int((maps[0, 0] > 0).sum()) == 16 and maps[0, 0, 8:12, 8:12].sum() > 0.999
    assert not bl.is_patched(atlas.sam) and bl.input_size(atlas.sam) == (256, 256)


def test_captures_are_cached(atlas):
    assert atlas.capture(128, "vanilla") is atlas.capture(128, "vanilla")
    with pytest.raises(ValueError, match="unknown variant"):
        atlas.capture(128, "bias")


def test_global_map_equals_the_explicit_softmax(atlas):
    """The vanilla map of a global block equals one computed by capture_attention directly."""
    block = atlas.global_blocks[-1]
    sam = atlas.sam
    x = torch.as_tensor(atlas.capture(256, "vanilla").image).permute(2, 0, 1).float()
    with bl.capture_attention(sam, blocks=[block], queries=[(8, 8)]) as cap:
        with torch.no_grad():
            sam.image_encoder(sam.preprocess(x)[None])
    direct = cap.grid_maps(block)[0, 3, 0].numpy()
    np.testing.assert_allclose(atlas.map(256, "vanilla", block, 3, "centre"), direct, atol=1e-6)


def test_paper_changes_global_blocks_only(atlas):
    g, w = atlas.global_blocks[-1], 0
    assert not np.allclose(
        atlas.map(256, "paper", g, 0, "centre"), atlas.map(256, "vanilla", g, 0, "centre")
    )
    np.testing.assert_allclose(
        atlas.map(256, "paper", w, 0, "centre"),
        atlas.map(256, "vanilla", w, 0, "centre"),
        atol=1e-6,
    )


def test_stats_and_figures(atlas):
    s = atlas.stats(256, "vanilla", atlas.global_blocks[0], 0, "corner")
    assert 0 < s["entropy"] <= s["uniform_entropy"] + 1e-6
    assert s["uniform_entropy"] == pytest.approx(np.log(256))
    assert s["distance_px"] > 0
    assert atlas.stats(256, "vanilla", 0, 0, "centre")["uniform_entropy"] == pytest.approx(
        np.log(16)
    )
    fig = atlas.across_sides(atlas.global_blocks[-1], 0, "centre")
    assert sum(1 for ax in fig.axes if ax.get_title()) == 4  # 2 variants x 2 sides (+ colour bars)
    slopes = bl.alibi_slopes(6).tolist()
    fig = atlas.heads(128, "paper", atlas.global_blocks[-1], "corner", slopes=slopes)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title().startswith("head")]
    assert len(titles) == 6 and titles[5].startswith(f"head 5, m = {slopes[5]:.3g}")


def test_map_helpers():
    p = np.zeros((3, 3))
    p[1, 1], p[1, 2] = 0.5, 0.5
    assert explorer.map_entropy(p) == pytest.approx(np.log(2))
    assert explorer.map_distance(p, (1, 1), patch=16) == pytest.approx(8.0)
    # the same numbers as analysis's batched statistics (one implementation)
    t = torch.as_tensor(p, dtype=torch.float32).reshape(1, 1, 1, 9)
    assert float(analysis.entropy(t)) == pytest.approx(explorer.map_entropy(p), rel=1e-6)
    img = explorer.resize_square(np.zeros((30, 50), dtype=np.uint8), 64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8


def test_scene_queries_land_on_object_and_background():
    sample = ProceduralScenes(1, seed=0).sample(0, size=128)
    q = explorer.scene_queries(sample.mask)
    for name, inside in (("object", True), ("background", False)):
        y, x = q[name]
        assert sample.mask[int(y * 128), int(x * 128)] == inside


def test_capture_cost():
    cost = explorer.capture_cost([256, 1024], heads=6, queries=5)
    assert list(cost["tokens"]) == [256, 4096]
    assert cost["full_map_MiB"].iloc[1] == pytest.approx(6 * 4096**2 * 4 / 2**20)
    assert cost["captured_rows_KiB"].iloc[1] == pytest.approx(6 * 5 * 4096 * 4 / 2**10)


def test_plot_statistics():
    stats = pd.DataFrame(
        [
            dict(
                side=s, variant=v, block=b, head=h, entropy=1.0 + h, distance_px=s / 4.0, image="x"
            )
            for s in (128, 256)
            for v in ("vanilla", "paper")
            for b in (2, 5)
            for h in range(2)
        ]
    )
    fig = explorer.plot_statistics(stats, metrics=("entropy", "distance_px"))
    assert len(fig.axes) == 4
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "ln N (uniform attention)" in labels and "paper" in labels
    assert fig.axes[0].get_xlabel() == "input side (px)"


class Click:
    """A synthetic matplotlib ``button_press_event``: what the canvas passes to the handler."""

    def __init__(self, ax, x: float, y: float) -> None:
        self.inaxes, self.xdata, self.ydata, self.button = ax, x, y, 1


def test_explorer_updates_one_figure_in_place(atlas):
    ui = explorer.attention_explorer(atlas.sam, atlas.image, atlas=atlas)
    ex = ui.explorer
    assert ex.atlas is atlas and ex.canvas in ui.children
    c = ex.controls
    assert c["side"].value == 256 and c["variant"].value == explorer.COMPARE
    assert c["block"].value == atlas.global_blocks[-1] and c["scale"].value == "log"
    fig, canvas = ex.figure, ex.canvas
    assert len(ex.images) == 2
    c["variant"].value = "paper"  # each change redraws
    c["side"].value = 128
    c["query"].value = "corner"
    c["scale"].value = "linear"
    assert ex.figure is fig and ex.canvas is canvas and fig.canvas is canvas
    assert len(ex.images) == 1 and ex.images[0].axes.figure is fig
    assert ex.images[0].norm.vmin == 0.0  # linear now
    shared = c["shared"]  # its label is shown whole (seen cut short in JupyterLab)
    assert shared.indent is False and shared.layout.width == "auto"
    bundle = ui._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/png"]  # the fallback a renderer without widgets shows


def test_a_click_selects_the_nearest_token(atlas):
    ex = explorer.AttentionExplorer(atlas, {"side": 256, "variant": "vanilla"})
    ax = ex.images[0].axes
    # 256 px, 16 x 16 tokens of 16 px: (x, y) = (70.0, 200.9) lies in column 4, row 12
    name = ex.on_click(Click(ax, 70.0, 200.9))
    assert ex.controls["query"].value == name
    assert atlas.token(256, name) == (12, 4)
    assert atlas.token(128, name) == (6, 2)  # the same image point at another side
    block = atlas.global_blocks[-1]
    sam = atlas.sam
    x = torch.as_tensor(atlas.capture(256, "vanilla").image).permute(2, 0, 1).float()
    with bl.capture_attention(sam, blocks=[block], queries=[(12, 4)]) as cap:
        with torch.no_grad():
            sam.image_encoder(sam.preprocess(x)[None])
    np.testing.assert_allclose(
        atlas.map(256, "vanilla", block, 0, name), cap.grid_maps(block)[0, 0, 0].numpy(), atol=1e-6
    )
    # the figure shows the new query's map
    np.testing.assert_allclose(
        np.ma.getdata(ex.images[0].get_array()), atlas.map(256, "vanilla", block, 0, name)
    )
    assert ex.on_click(Click(None, 10.0, 10.0)) is None  # outside any axes
    assert ex.on_click(Click(ax, None, None)) is None


def test_nearest_token_clamps_to_the_grid():
    assert explorer.nearest_token(0.0, 0.0, 256, (16, 16)) == (0, 0)
    assert explorer.nearest_token(255.9, 15.99, 256, (16, 16)) == (0, 15)
    assert explorer.nearest_token(300.0, -4.0, 256, (16, 16)) == (0, 15)


def test_compared_panels_share_one_colour_scale(atlas):
    block = atlas.global_blocks[-1]
    ex = explorer.AttentionExplorer(atlas, {"variant": explorer.COMPARE})
    limits = {im.get_clim() for im in ex.images}
    assert len(ex.images) == 2 and len(limits) == 1
    peak = max(atlas.map(256, v, block, 0, "centre").max() for v in atlas.variants)
    vmin, vmax = limits.pop()
    assert vmax == pytest.approx(peak) and vmin == pytest.approx(peak * 10**-explorer.DECADES)
    ex.controls["shared"].value = False
    own = [im.get_clim()[1] for im in ex.images]
    want = [atlas.map(256, v, block, 0, "centre").max() for v in atlas.variants]
    np.testing.assert_allclose(own, want, rtol=1e-6)
    fig = atlas.across_sides(block, 0, "centre")
    maps = [a.images[-1] for a in fig.axes if a.images and a.get_title()]
    assert len(maps) == 4 and len({im.get_clim() for im in maps}) == 1


def test_windowed_blocks_zoom_where_the_window_is_a_speck():
    sam = bl.build_sam("tiny")
    image = ProceduralScenes(1, seed=0).sample(0, size=128).image
    big = explorer.AttentionAtlas(sam, image, [256, 512], ["vanilla"], {"c": (0.5, 0.5)})
    assert big.view_box(256, 0, "c") is None  # 4 x 4 windows on 16 x 16 tokens: visible
    assert big.view_box(512, big.global_blocks[0], "c") is None  # global: whole image
    # 512 px: 32 x 32 tokens, the query (16, 16) is in the window of rows/cols 16-19
    assert big.view_box(512, 0, "c") == (12 * 16, 24 * 16, 12 * 16, 24 * 16)
    with pytest.raises(UserError, match="colour scale"):
        explorer.colour_norm([np.ones(3)], "sqrt")


def test_bad_queries_are_refused(atlas):
    with pytest.raises(ValueError, match="fractions"):
        explorer.AttentionAtlas(atlas.sam, atlas.image, [128], ["vanilla"], {"bad": (1.5, 0.2)})
    with pytest.raises(ValueError, match="unknown query"):
        atlas.capture(128, "vanilla", ["nowhere"])
    with pytest.raises(ValueError, match="not one of"):
        atlas.capture(512, "vanilla")
