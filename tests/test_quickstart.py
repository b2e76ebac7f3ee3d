"""basam_lite.quickstart: segmenting a scene per variant and size, tables, figures, evaluation."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import basam_lite as bl
from basam_lite import quickstart
from basam_lite.datasets import ProceduralScenes


@pytest.fixture(scope="module")
def sam():
    return bl.build_sam("tiny")


@pytest.fixture(scope="module")
def scenes():
    return ProceduralScenes(2, seed=0)


def untouched(sam) -> bool:
    return not bl.is_patched(sam) and bl.input_size(sam) == (256, 256)


def test_segment_runs_at_the_size_and_restores_the_model(sam, scenes):
    run = quickstart.segment(sam, scenes, 0, 128, "paper", "box")
    assert run.image.shape == (128, 128, 3) and run.gt.shape == (128, 128)
    assert run.mask.shape == (128, 128) and run.mask.dtype == bool
    assert 0.0 <= run.iou <= 1.0 and math.isfinite(run.score)
    assert run.prompt.box is not None and run.prompt.box.max() < 128
    assert untouched(sam)


def test_segment_matches_a_manual_run(sam, scenes):
    run = quickstart.segment(sam, scenes, 1, 192, "vanilla", "point")
    sample = scenes.sample(1, size=192)
    bl.set_input_size(sam, 192)
    predictor = bl.BASAMPredictor(sam)
    predictor.set_image(sample.image)
    masks, _, _ = predictor.predict(
        point_coords=run.prompt.point_coords,
        point_labels=run.prompt.point_labels,
        multimask_output=False,
    )
    bl.restore_input_size(sam)
    assert np.array_equal(masks[0], run.mask)


def test_variant_that_cannot_run_gives_nan(sam, scenes):
    run = quickstart.segment(sam, scenes, 0, 128, "official")
    assert run.mask is None and math.isnan(run.iou) and "official" in run.reason
    assert untouched(sam)


def test_unknown_names_are_refused(sam, scenes):
    with pytest.raises(ValueError, match="unknown variant"):
        quickstart.segment(sam, scenes, 0, 128, "papr")
    with pytest.raises(ValueError, match="unknown prompt"):
        quickstart.segment(sam, scenes, 0, 128, "paper", "circle")


def test_grid_table_and_figure(sam, scenes):
    runs = quickstart.segment_grid(sam, scenes, 0, [64, 128], ["paper", "vanilla"])
    table = quickstart.iou_table(runs)
    assert list(table.index) == ["paper", "vanilla"] and list(table.columns) == [64, 128]
    assert table.loc["vanilla", 128] == pytest.approx(runs[3].iou)
    fig = quickstart.plot_segmentations(runs, title="t")
    assert len(fig.axes) == 3 * 2
    assert "IoU" in fig.axes[2].get_title()
    scores = quickstart.iou_table(runs, value="score")
    assert scores.loc["paper", 64] == pytest.approx(runs[0].score)


def test_evaluate_at_sizes_keeps_the_patch_and_restores_the_size(sam):
    bl.apply_basam(sam, bl.BASAMConfig.paper())
    try:
        df = quickstart.evaluate_at_sizes(sam, [64, 128], n=2, kinds=("box",))
        assert bl.is_patched(sam) and bl.input_size(sam) == (256, 256)
    finally:
        bl.remove_basam(sam)
    assert list(df.columns) == ["size", "x_base", "iou_box"]
    assert list(df["x_base"]) == [0.25, 0.5]
    assert df["iou_box"].between(0, 1).all()
    ax = quickstart.plot_size_curves(df.assign(kind="box"), "iou_box", hue="kind")
    assert ax.get_xlabel() == "input size (px)"


def test_paired_difference_counts_images():
    rows = []
    for image, (a, b) in enumerate([(0.5, 0.4), (0.2, 0.3), (0.6, 0.6)]):
        for variant, iou in (("paper", a), ("vanilla", b)):
            rows.append(
                dict(
                    model="m",
                    prompt="box",
                    resolution=512,
                    image=f"i{image}",
                    variant=variant,
                    status="ok",
                    iou=iou,
                )
            )
    rows.append(
        dict(
            model="m",
            prompt="box",
            resolution=512,
            image="i9",
            variant="paper",
            status="ok",
            iou=1.0,
        )
    )  # no vanilla pair: ignored
    out = quickstart.paired_difference(pd.DataFrame(rows), "paper")
    row = out.loc[("m", "box", 512)]
    assert row["mean_iou_difference"] == pytest.approx(0.0)
    assert row["standard_error"] == pytest.approx(0.1 / np.sqrt(3))
    assert (row["better"], row["worse"], row["images"]) == (1, 1, 3)
    with pytest.raises(ValueError, match="no image"):
        quickstart.paired_difference(pd.DataFrame(rows), "bias")


def test_optional_sam_reports_a_missing_checkpoint(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BASAM_DATA_DIR", str(tmp_path))
    assert quickstart.optional_sam("tiny-basam") is None
    assert "tiny-basam is not available" in capsys.readouterr().out
    assert quickstart.optional_sam("tiny") is not None
