"""The sweep's extent axis: rows at extent 1 equal the zoom rows at the base size, metrics on the
target's region, resume, shards and merge as on the zoom axis, the two-axis main job."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import basam_lite as bl
from basam_lite.axes import AxisSampler, axis_columns, scored
from basam_lite.datasets import ProceduralScenes
from basam_lite.errors import UserError
from basam_lite.metrics import grid_mask_iou, segmentation_metrics
from basam_lite.sweep import KEY, SweepConfig, merge_shards, run_sweep

TIMING = ["seconds", "encode_seconds"]


@pytest.fixture(scope="module")
def tiny_models() -> dict:
    return {"tiny": bl.build_sam("tiny")}


def config(**changes) -> SweepConfig:
    base = dict(
        models=("tiny",),
        variants=("vanilla", "paper"),
        resolutions=(128, 256, 384),
        dataset="synthetic:3",
        prompts=("box", "point"),
        axis="extent",
    )
    return SweepConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def extent_table(tmp_path_factory, tiny_models) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("extent") / "sweep.csv"
    return run_sweep(config(), out, progress=False, models=tiny_models)


def test_extent_one_rows_equal_the_zoom_rows_at_the_base_size(tmp_path, tiny_models, extent_table):
    zoom = run_sweep(
        config(axis="zoom", resolutions=(256,)), tmp_path / "z.csv", progress=False,
        models=tiny_models,
    )  # fmt: skip
    ext = extent_table[extent_table["resolution"] == 256]
    keys = ["model", "image", "variant", "prompt"]
    cols = [c for c in zoom.columns if c not in (*TIMING, "row", "axis")]
    a = zoom.sort_values(keys)[cols].reset_index(drop=True)
    b = ext.sort_values(keys)[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert set(zoom["axis"]) == {"zoom"} and set(extent_table["axis"]) == {"extent"}


def test_extent_rows_record_tokens_extent_and_the_constant_target(extent_table):
    ok = extent_table[extent_table["status"] == "ok"]
    assert set(ok["tokens"]) <= {64, 256, 576}
    assert (ok["extent"] == ok["resolution"] / 256).all()
    # The target's size in tokens and its grid ceiling do not change with the extent.
    per_image = ok.groupby("image")[["target_tokens", "grid_iou"]].nunique()
    assert (per_image == 1).all().all()
    # Windows that cannot hold the target are skipped with the reason, not silently dropped.
    skipped = extent_table[extent_table["status"] == "skipped"]
    assert (skipped["resolution"] == 128).all()
    assert skipped["reason"].str.contains("does not fit").all()


def test_resume_shards_and_merge_on_the_extent_axis(tmp_path, tiny_models, extent_table):
    out = tmp_path / "resumed.csv"
    run_sweep(config(), out, progress=False, models=tiny_models, stop_after=5)
    resumed = run_sweep(config(), out, progress=False, models=tiny_models)
    drop = [*TIMING]
    pd.testing.assert_frame_equal(
        resumed.drop(columns=drop), extent_table.drop(columns=drop), check_like=False
    )
    shards = []
    for k in range(2):
        path = tmp_path / f"shard{k}.csv"
        run_sweep(config(shard=(k, 2)), path, progress=False, models=tiny_models)
        shards.append(path)
    merged = merge_shards(shards, tmp_path / "merged.csv")
    pd.testing.assert_frame_equal(merged.drop(columns=drop), extent_table.drop(columns=drop))
    assert not merged.duplicated(list(KEY)).any()


def test_metrics_are_computed_on_the_target_region():
    scenes = ProceduralScenes(n=4, seed=0, size=64)
    sample = AxisSampler(scenes, "extent").sample(0, 192, base=64)
    t, lft, b, r = sample.region
    logits = torch.full(sample.hw, -8.0)
    logits[t:b, lft:r] = torch.where(torch.from_numpy(sample.target_mask), 8.0, -8.0)
    clean = scored(logits, sample)
    assert clean["iou"] == pytest.approx(1.0) and clean["canvas_iou"] == pytest.approx(1.0)
    # A false positive on a neighbour changes the canvas IoU, not the target's scores.
    noisy = logits.clone()
    noisy[:t, :] = 8.0
    got = scored(noisy, sample)
    assert got["iou"] == clean["iou"] and got["dice"] == clean["dice"]
    assert got["canvas_iou"] < 0.5
    # The target's scores are the metrics of the region alone, written out.
    prob = torch.sigmoid(noisy).double().numpy()[t:b, lft:r]
    want = segmentation_metrics(prob, sample.target_mask)
    assert got["mae"] == pytest.approx(want["mae"])
    cols = axis_columns(sample, "extent", 192, 64, 16)
    assert cols["tokens"] == 144 and cols["extent"] == 3.0
    assert cols["target_tokens"] == sample.target_mask.sum() / 256
    assert cols["grid_iou"] == grid_mask_iou(sample.target_mask, 16)


def test_bad_axis_is_refused():
    with pytest.raises(UserError, match="unknown axis 'length'"):
        config(axis="length")
    with pytest.raises(UserError, match="unknown axis"):
        AxisSampler([], "diagonal")


def test_main_job_runs_both_axes_and_one_figure(tmp_path, capsys):
    from basam_lite.__main__ import main

    out = tmp_path / "sweep.csv"
    code = main(
        ["sweep", "--model", "tiny", "--variants", "vanilla", "scale", "--resolutions", "128",
         "256", "--extent-resolutions", "256", "512", "--dataset", "synthetic:2",
         "--prompt", "box", "--threads", "1", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "== zoom axis" in text and "== extent axis" in text
    zoom = pd.read_csv(out)
    extent = pd.read_csv(tmp_path / "sweep_extent.csv")
    assert set(zoom["axis"]) == {"zoom"} and sorted(set(zoom["resolution"])) == [128, 256]
    assert set(extent["axis"]) == {"extent"} and sorted(set(extent["resolution"])) == [256, 512]
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    assert np.isfinite(extent["iou"]).all()


def test_study_command_writes_both_tables_and_generated_findings(tmp_path, capsys):
    from basam_lite.__main__ import main

    out = tmp_path / "study" / "sweep.csv"
    argv = ["study", "--images", "2", "--model", "tiny", "--variants", "vanilla", "scale",
            "--zoom-resolutions", "256", "--extent-resolutions", "256", "512",
            "--prompt", "box", "--threads", "1", "--out", str(out),
            "--mechanism-images", "1", "--mechanism-zoom", "256",
            "--mechanism-extent", "256", "512"]  # fmt: skip
    assert main(argv) == 0
    mech = pd.read_csv(out.with_suffix(".mechanism.csv"))
    assert set(mech["axis"]) == {"zoom", "extent"} and set(mech["keys"]) == {256, 1024}
    assert out.with_suffix(".mechanism.png").exists()
    text = capsys.readouterr().out
    findings = out.with_suffix(".findings.md").read_text()
    assert "| tiny | extent | 512 | box | scale |" in findings and findings.strip() in text
    assert "cells differ from vanilla after Holm's correction" in findings
    assert "Largest standard error" in findings
    # Reporting again from the tables gives the same text.
    mechanism = out.with_suffix(".mechanism.md").read_text()
    assert "| tiny | extent | 512 | 1024 | scale |" in mechanism
    assert main([*argv, "--findings-only"]) == 0
    assert out.with_suffix(".findings.md").read_text() == findings
    assert out.with_suffix(".mechanism.md").read_text() == mechanism
    assert main([*argv, "--findings-only", "--figure"]) == 0
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert main(["study", "--images", "1"]) == 2
    assert "at least 2 images" in capsys.readouterr().err
