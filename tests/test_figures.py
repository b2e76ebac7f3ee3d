"""The figure audit, as tests: no legend over data (every legend the library's plotting helpers
draw lies outside its axes), masks visible on every background (a mask overlay is edged by an
outline on a black halo), colour scales stated (a scalar map comes with a labelled colour bar)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from basam_lite import quickstart, viz


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def legends_clear_of_data(fig) -> int:
    """Assert that no legend of ``fig`` overlaps any axes' plotting area; return how many."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    count = 0
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        count += 1
        box = legend.get_window_extent(renderer)
        for other in fig.axes:
            if other.get_label() == "<colorbar>":
                continue
            assert not box.overlaps(other.get_window_extent(renderer)), (
                f"legend of {ax.get_title()!r} lies over the axes {other.get_title()!r}"
            )
    return count


def test_size_curves_and_scene_differences_keep_their_legends_off_the_data() -> None:
    df = pd.DataFrame(
        {
            "size": [128, 256, 512] * 2,
            "x_base": [0.5, 1, 2] * 2,
            "iou": [0.5, 0.7, 0.6, 0.55, 0.72, 0.66],
            "variant": ["vanilla"] * 3 + ["paper"] * 3,
        }
    )
    ax = quickstart.plot_size_curves(df, "iou", hue="variant")
    assert legends_clear_of_data(ax.figure) == 1
    diffs = pd.DataFrame({128: [0.1, -0.2, 0.0], 256: [0.0, 0.1, 0.3]})
    diffs["mean"] = diffs.mean(axis=1)
    ax = quickstart.plot_scene_differences(diffs, chosen=1)
    assert legends_clear_of_data(ax.figure) == 1


def test_distance_from_uniform_has_one_legend_beside_both_panels() -> None:
    summary = pd.DataFrame(
        {
            "keys": [256, 1024, 4096] * 2,
            "variant": ["plain"] * 3 + ["with lambda"] * 3,
            "entropy": [4.5, 5.8, 7.1, 4.4, 5.6, 6.8],
        }
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    viz.show_distance_from_uniform(summary, axes, base_keys=256)
    assert legends_clear_of_data(fig) == 1


@pytest.mark.parametrize("background", ["white", "black", "mask colour"])
def test_a_mask_is_edged_so_it_shows_on_any_background(background: str) -> None:
    colour = (1.0, 0.85, 0.0)
    fill = {"white": (1, 1, 1), "black": (0, 0, 0), "mask colour": colour}[background]
    image = np.ones((32, 32, 3)) * np.array(fill)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    fig, ax = plt.subplots()
    ax.imshow(image)
    viz.show_mask(mask, ax, color=colour)
    outlines = [c for c in ax.collections if c.get_path_effects()]
    assert len(outlines) == 1  # the outline, with its halo
    (halo,) = outlines[0].get_path_effects()
    assert halo._gc["foreground"] == "black"  # dark edge: visible on white and on the colour
    assert np.allclose(outlines[0].get_edgecolor()[0][:3], colour)  # bright line: on black
    fig.canvas.draw()
    viz.show_mask(np.zeros((4, 4), bool), ax)  # nothing to outline: no warning, no contour
    viz.show_mask(np.ones((4, 4), bool), ax)


def test_scalar_maps_state_their_colour_scale() -> None:
    fig, axes = plt.subplots(1, 2)
    viz.show_token_map(np.arange(16.0).reshape(4, 4), axes[0], label="distance (tokens)")
    viz.show_matrix(np.eye(4), axes[1], label="mask value M")
    labels = [a.get_ylabel() for a in fig.axes if a.get_label() == "<colorbar>"]
    assert labels == ["distance (tokens)", "mask value M"]
