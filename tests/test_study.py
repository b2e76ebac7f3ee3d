"""The study's parts: binary-only metrics (IoU, Dice and MAE as in the full set, the S/E/F
measures left NaN, a separate run identity), the attention-entropy change from the base size
(against the arithmetic written out), and the study command's sharded and mechanism-only paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import basam_lite as bl
from basam_lite.errors import UserError
from basam_lite.mechanism import entropy_change
from basam_lite.metrics import SOD_COLUMNS, segmentation_metrics
from basam_lite.sweep import SweepConfig, run_sweep


def test_binary_metrics_equal_the_full_set_and_leave_sod_nan():
    rng = np.random.default_rng(0)
    prob = rng.random((40, 50))
    gt = rng.random((40, 50)) > 0.6
    full = segmentation_metrics(prob, gt)
    fast = segmentation_metrics(prob, gt, sod=False)
    for k in ("iou", "dice", "mae"):
        assert fast[k] == full[k]
    assert set(fast) == set(full)
    assert all(np.isnan(fast[k]) for k in SOD_COLUMNS)
    assert all(np.isfinite(full[k]) for k in SOD_COLUMNS)
    with pytest.raises(ValueError, match="toolbox_normalize applies to the SOD columns"):
        segmentation_metrics(prob, gt, sod=False, toolbox_normalize=True)


def _cfg(**changes) -> SweepConfig:
    base = dict(models=("tiny",), variants=("vanilla", "paper"), resolutions=(128, 256),
                dataset="synthetic:2", prompts=("box",), limit=1)  # fmt: skip
    return SweepConfig(**{**base, **changes})


def test_binary_sweep_rows_match_the_full_rows_and_are_another_run(tmp_path):
    models = {"tiny": bl.build_sam("tiny")}
    full = run_sweep(_cfg(), tmp_path / "full.csv", progress=False, models=models)
    fast = run_sweep(_cfg(metrics="binary"), tmp_path / "fast.csv", progress=False, models=models)
    keys = ["model", "image", "resolution", "variant", "prompt"]
    m = full.merge(fast, on=keys, suffixes=("", "_b"))
    assert len(m) == len(full) == len(fast) == 4
    for c in ("iou", "dice", "mae", "canvas_iou", "legacy_iou", "grid_iou"):
        np.testing.assert_allclose(m[c], m[f"{c}_b"], rtol=1e-6, atol=1e-9)
    assert fast[list(SOD_COLUMNS)].isna().all().all()
    # A binary run cannot resume (or silently extend) a table of every metric.
    with pytest.raises(UserError, match="metrics: table all, this run binary"):
        run_sweep(_cfg(metrics="binary"), tmp_path / "full.csv", progress=False, models=models)


def test_bad_metric_sets_get_one_line(tmp_path, capsys):
    from basam_lite.__main__ import main

    with pytest.raises(UserError, match="metrics 'sod': choose from all, binary"):
        SweepConfig(metrics="sod")
    code = main(["sweep", "--metrics", "binary", "--metric", "s_measure", "--axis", "zoom",
                 "--model", "tiny", "--out", str(tmp_path / "x.csv")])  # fmt: skip
    assert code == 2 and not (tmp_path / "x.csv").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--metric s_measure is left empty by --metrics binary" in err[0]


def _mechanism_rows() -> pd.DataFrame:
    """Two images, one block, vanilla and scale, base 256 and 512 px on the extent axis."""
    rows = []
    values = {  # (variant, image, size) -> entropy
        ("vanilla", "a", 256): 3.0, ("vanilla", "a", 512): 4.0,
        ("vanilla", "b", 256): 2.0, ("vanilla", "b", 512): 2.5,
        ("scale", "a", 256): 3.0, ("scale", "a", 512): 3.25,
        ("scale", "b", 256): 2.0, ("scale", "b", 512): 2.25,
    }  # fmt: skip
    for (variant, image, size), h in values.items():
        for block, shift in ((2, 0.0), (5, 1.0)):  # block 5 is block 2 plus one nat
            rows.append({"image": image, "axis": "extent", "resolution": size,
                         "keys": (size // 16) ** 2, "extent": size / 256, "variant": variant,
                         "block": block, "entropy": h + shift})  # fmt: skip
    return pd.DataFrame(rows)


def test_entropy_change_is_the_mean_over_images_of_the_block_mean_change():
    t = entropy_change(_mechanism_rows().assign(model="m"), n_boot=200)
    assert len(t) == 2 and set(t["resolution"]) == {512}  # the base size is the reference
    van = t[t["variant"] == "vanilla"].iloc[0]
    sc = t[t["variant"] == "scale"].iloc[0]
    assert van["change"] == pytest.approx((1.0 + 0.5) / 2)  # the block shift cancels
    assert sc["change"] == pytest.approx((0.25 + 0.25) / 2)
    assert sc["vs_vanilla"] == pytest.approx(0.25 - 0.75) and van["vs_vanilla"] == 0
    assert van["uniform"] == pytest.approx(np.log(1024) - np.log(256))
    assert van["images"] == 2 and van["low"] <= van["change"] <= van["high"]
    assert sc["low"] == sc["high"] == pytest.approx(0.25)  # no spread, no width


def test_entropy_change_on_a_real_model_grows_less_with_lambda():
    from basam_lite.datasets import ProceduralScenes
    from basam_lite.mechanism import attention_along_axes

    sam = bl.build_sam("tiny")
    ds = ProceduralScenes(3, seed=0, size=256)
    df = attention_along_axes(sam, ds, {"extent": (256, 512)}, images=1, queries=2)
    t = entropy_change(df.assign(model="tiny")).set_index("variant")
    # lambda > 1 at 4x the keys sharpens every row, so its entropy grows less than vanilla's.
    assert t.loc["scale", "change"] < t.loc["vanilla", "change"]
    assert t.loc["scale", "vs_vanilla"] < 0


def test_study_shard_stops_after_its_tables_and_mechanism_only_needs_images(tmp_path, capsys):
    from basam_lite.__main__ import main

    out = tmp_path / "s-{k}.csv"
    argv = ["study", "--images", "2", "--model", "tiny", "--variants", "vanilla", "scale",
            "--zoom-resolutions", "128", "--extent-resolutions", "256", "--prompt", "box",
            "--threads", "1", "--out", str(out), "--shard", "0/2",
            "--mechanism-images", "0"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "shard 0/2 written; merge the shards" in text
    assert (tmp_path / "s-0.csv").exists() and (tmp_path / "s-0_extent.csv").exists()
    assert not list(tmp_path.glob("*.findings.md"))
    table = pd.read_csv(tmp_path / "s-0.csv")
    assert table[list(SOD_COLUMNS)].isna().all().all()  # the study's default: binary metrics
    bad = ["study", "--mechanism-only", "--mechanism-images", "0", "--out", str(tmp_path / "m.csv")]
    assert main(bad) == 2
    assert "--mechanism-only runs the attention-entropy study" in capsys.readouterr().err
    assert main(["study", "--figure", "--out", str(tmp_path / "m.csv")]) == 2
    assert "--figure goes with --findings-only" in capsys.readouterr().err


def test_study_command_line_for_a_real_sam():
    """``study --model vit_b --checkpoint ... --dataset ...``: the checkpoint reaches the sweep,
    and ``--images`` takes the first N images of the dataset on both axes; by default the study
    is the committed one (240 procedural scenes at the key sizes, binary metrics)."""
    import argparse

    from basam_lite import study

    parser = argparse.ArgumentParser()
    study.add_arguments(parser)
    real = study.sweep_args(parser.parse_args(
        ["--model", "vit_b", "--checkpoint", "w.pth", "--dataset", "dis5k:/d", "--images", "5",
         "--zoom-resolutions", "512", "2048"]))  # fmt: skip
    assert real.model == ["vit_b"] and real.checkpoint == "w.pth"
    assert real.limit == real.extent_limit == 5 and real.dataset == "dis5k:/d"
    assert real.resolutions == [512, 2048] and real.metrics == "binary"
    default = study.sweep_args(parser.parse_args([]))
    assert default.dataset == "synthetic:240" and default.limit is None
    assert default.resolutions == [128, 512, 1024] and default.extent_resolutions == [128, 512]
    assert default.out == "results/study/sweep.parquet"


def test_findings_of_a_killed_run_say_so_on_screen_and_in_the_file(tmp_path, capsys):
    """``study --findings-only`` on a table whose run stopped: the warning heads both the
    printed findings and ``OUT.findings.md``."""
    import json

    from basam_lite.__main__ import main
    from basam_lite.study import extent_path
    from basam_lite.sweep import meta_path

    models = {"tiny": bl.build_sam("tiny")}
    out = tmp_path / "study.csv"
    both = dict(dataset="synthetic:3", limit=None, resolutions=(256, 512))
    run_sweep(_cfg(**both), out, progress=False, models=models, stop_after=10)  # killed
    run_sweep(_cfg(axis="extent", **both), extent_path(out), progress=False, models=models)
    assert json.loads(meta_path(out).read_text())["complete"] is False
    assert main(["study", "--findings-only", "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    written = out.with_suffix(".findings.md").read_text()
    for text in (shown, written):
        assert text.lstrip().startswith(f"**Incomplete table: {out} is incomplete")
    # Its own findings are replaced by a rerun; a file it did not write is never replaced.
    assert main(["study", "--findings-only", "--out", str(out)]) == 0
    capsys.readouterr()
    for suffix, argv in [
        (".findings.md", []),
        (".png", ["--figure"]),
        (".mechanism.md", ["--mechanism-only", "--mechanism-images", "1"]),
        (".mechanism.csv", ["--mechanism-only", "--mechanism-images", "1"]),
        (".mechanism.png", ["--mechanism-only", "--mechanism-images", "1"]),
    ]:
        foreign = out.with_suffix(suffix)
        saved = foreign.read_bytes() if foreign.exists() else None
        foreign.write_text("the user's own notes\n")
        mode = [] if "--mechanism-only" in argv else ["--findings-only"]
        assert main(["study", *mode, *argv, "--out", str(out)]) == 2, suffix
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{foreign} exists and is not" in err, err
        assert foreign.read_text() == "the user's own notes\n"
        if saved is None:
            foreign.unlink()
        else:
            foreign.write_bytes(saved)
