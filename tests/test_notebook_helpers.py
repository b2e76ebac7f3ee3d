"""Helpers added for notebooks 01-04: the scene table and its median rule, the token count,
the shared-scale figures, and the mistake diagnosis of the "implement it" checkers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

import basam_lite as bl
from basam_lite import quickstart, viz
from basam_lite.datasets import ProceduralScenes
from basam_lite.exercises import check_implementation
from basam_lite.exercises.mistakes import diagnose_mistakes
from basam_lite.patch import is_patched


def _table(diff: dict[int, list[float]], sizes=(128, 256)) -> pd.DataFrame:
    rows = []
    for scene, ds in diff.items():
        for size, d in zip(sizes, ds, strict=True):
            rows.append({"scene": scene, "variant": "vanilla", "size": size, "iou": 0.5})
            rows.append({"scene": scene, "variant": "paper", "size": size, "iou": 0.5 + d})
    return pd.DataFrame(rows)


def test_scene_differences_and_median_rule() -> None:
    table = _table({0: [0.1, 0.3], 1: [-0.2, 0.0], 2: [0.0, 0.0], 3: [0.4, 0.4]})
    diffs = quickstart.scene_differences(table)
    assert list(diffs.columns) == [128, 256, "mean"]
    assert diffs.loc[0, 128] == pytest.approx(0.1) and diffs.loc[1, "mean"] == pytest.approx(-0.1)
    # means: -0.1 (1), 0.0 (2), 0.2 (0), 0.4 (3): four scenes, the lower middle one is scene 2
    assert quickstart.median_scene(diffs) == 2
    odd = diffs.drop(index=3)  # -0.1, 0.0, 0.2: the median is scene 2 again
    assert quickstart.median_scene(odd) == 2
    ties = quickstart.scene_differences(_table({5: [0.0, 0.0], 4: [0.0, 0.0], 6: [1.0, 1.0]}))
    assert quickstart.median_scene(ties) == 5  # sorted 4, 5, 6 by (mean, scene)


def test_scene_table_matches_segment_grid() -> None:
    torch.set_num_threads(1)
    sam = bl.build_sam("tiny")
    scenes = ProceduralScenes(2, seed=0)
    table = quickstart.scene_table(sam, scenes, [128], variants=["vanilla", "paper"])
    assert len(table) == 2 * 2 and set(table["scene"]) == {0, 1}
    one = quickstart.segment(sam, scenes, 1, 128, "paper")
    row = table[(table.scene == 1) & (table.variant == "paper")].iloc[0]
    assert row["iou"] == pytest.approx(one.iou)
    assert not is_patched(sam)  # left as it was found: unpatched, at its base size
    assert tuple(bl.input_size(sam)) == (256, 256)


def test_count_tokens_runs_the_patch_embedding() -> None:
    sam = bl.build_sam("tiny")
    assert quickstart.count_tokens(sam, 512) == (512 // 16) ** 2
    assert quickstart.count_tokens(sam, 256) == 256


def test_plot_scene_differences_marks_the_chosen_scene() -> None:
    diffs = quickstart.scene_differences(_table({0: [0.1, 0.3], 1: [-0.2, 0.0], 2: [0.0, 0.1]}))
    ax = quickstart.plot_scene_differences(diffs, chosen=2)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "scene 2" in labels and "one scene" in labels and "mean, 95 % interval" in labels
    plt.close("all")


def test_shared_token_maps_share_colour_limits() -> None:
    fig, axes = viz.grid_figure(3, ncols=3)
    maps = [np.zeros((4, 4)), -np.ones((4, 4)), np.full((4, 4), -5.0)]
    viz.show_shared_token_maps(maps, axes, ["a", "b", "c"], label="M")
    clims = {ax.images[0].get_clim() for ax in axes}
    assert clims == {(-5.0, 0.0)}
    assert len(fig.axes) == 4  # three panels and one colour bar
    assert axes[1].get_ylabel() == "" and axes[0].get_ylabel() == "token row"
    plt.close(fig)


def test_reach_curves_have_one_legend_beside_both_panels() -> None:
    from test_figures import legends_clear_of_data

    gains = [0.0, 1.0]
    prior = pd.DataFrame({0.0: [100.0, 100.0], 1.0: [50.0, 80.0]})
    model = pd.DataFrame({0.0: [110.0, 90.0], 1.0: [55.0, 85.0]})
    fig, axes = plt.subplots(1, 2)
    viz.show_reach_curves(prior[gains], model[gains], [0.5, 0.25], axes, "m")
    assert axes[0].get_legend() is None  # the same heads in both panels: one legend
    right = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert right == ["head 0 (m = 0.5000)", "head 1 (m = 0.2500)", "mask alone (left panel)"]
    assert legends_clear_of_data(fig) == 1
    plt.close("all")


def test_distance_from_uniform_axes_start_at_zero() -> None:
    summary = pd.DataFrame(
        {
            "keys": [64, 256, 64, 256],
            "variant": ["a", "a", "b", "b"],
            "entropy": [3.5, 4.8, 3.4, 4.8],
        }
    )
    _, axes = plt.subplots(1, 2)
    viz.show_distance_from_uniform(summary, axes, base_keys=256)
    assert axes[0].get_ylim()[0] == 0 and axes[1].get_ylim() == (0, 1.02)
    assert "base size" in [t.get_text() for t in axes[1].get_legend().get_texts()]
    plt.close("all")


def test_diagnose_mistakes_names_the_matching_mistake() -> None:
    cases = [(np.arange(4.0),), (np.array([2.0, -1.0]),)]

    def reference(x):
        return x**2

    diagnose = diagnose_mistakes(
        cases, reference, [("cubed", lambda x: x**3), ("doubled", lambda x: 2 * x)]
    )
    assert diagnose(np.arange(4.0) ** 3, np.arange(4.0) ** 2) == "cubed"
    assert diagnose(np.array([4.0, -2.0]), np.array([4.0, 1.0])) == "doubled"
    assert diagnose(np.zeros(4), np.arange(4.0) ** 2) is None
    v = check_implementation(lambda x: 2 * x, reference, cases, diagnose=diagnose)
    assert not v and "doubled" in v.message
