"""basam_lite.explorer: cached attention maps across sizes and variants, and the widget."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

import basam_lite as bl
from basam_lite import explorer
from basam_lite.analysis import entropy, mean_attention_distance
from basam_lite.datasets import ProceduralScenes

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
    fig = atlas.heads(128, "paper", atlas.global_blocks[-1], "corner")
    assert sum(1 for ax in fig.axes if ax.get_title().startswith("head")) == 6


def test_map_helpers():
    p = np.zeros((3, 3))
    p[1, 1], p[1, 2] = 0.5, 0.5
    assert float(entropy(p.reshape(-1))) == pytest.approx(np.log(2))
    distance = mean_attention_distance(p.reshape(1, -1), p.shape, [(1, 1)], patch=16)
    assert float(distance[0]) == pytest.approx(8.0)
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
    fig = explorer.plot_statistics(stats)
    assert len(fig.axes) == 4
    assert fig.axes[0].get_xlabel() == "input side (px)"


def test_explorer_widget_draws_and_redraws(atlas, capsys):
    ui = explorer.attention_explorer(atlas.sam, atlas.image, atlas=atlas)
    assert ui.atlas is atlas
    controls = ui.controls
    assert controls["side"].value == 256 and controls["variant"].value == explorer.COMPARE
    assert controls["block"].value == atlas.global_blocks[-1]
    controls["variant"].value = "paper"  # triggers a redraw
    controls["side"].value = 128
    controls["query"].value = "corner"
    controls["log"].value = True
    with pytest.raises(ValueError):
        explorer.AttentionAtlas(atlas.sam, atlas.image, [128], ["vanilla"], {"bad": (1.5, 0.2)})
