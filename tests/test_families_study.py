"""The study across families (``study --plan families``): SAM 1 and SAM 2 models in one run, the
base-size table and the degradation read from it, the findings split per family (each model
against its own vanilla), the sharded and merged path equal to one run, and the attention-entropy
study reaching Hiera's global blocks. Random-weight tiny models, a few scenes, small sizes."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

import basam_lite as bl
from basam_lite.__main__ import main
from basam_lite.errors import UserError

SMALL = ["--plan", "families", "--model", "tiny", "sam2-tiny", "--images", "3",
         "--zoom-resolutions", "128", "--extent-resolutions", "384", "--threads", "1"]  # fmt: skip
TIMING = ["seconds", "encode_seconds"]


def _parse(argv: list[str]) -> argparse.Namespace:
    from basam_lite import study

    parser = argparse.ArgumentParser()
    study.add_arguments(parser)
    return study.apply_plan(parser.parse_args(argv))


def test_plans_fill_what_is_not_given_and_the_first_plan_is_the_committed_study():
    from basam_lite.study_plans import FAMILIES_VARIANTS, STUDY_PLANS
    from basam_lite.variants import variant_names

    first = _parse([])
    assert first.model == ["tiny-vanilla", "tiny-basam"] and first.prompt == ["box", "point"]
    assert first.images == 240 and first.zoom_resolutions == [128, 512, 1024]
    assert first.variants == list(variant_names()) and first.base is False
    assert first.out == "results/study/sweep.parquet"
    assert first.mechanism_variants == ["vanilla", "scale", "bias", "paper"]
    fam = _parse(["--plan", "families"])
    plan = STUDY_PLANS["families"]
    assert fam.model == list(plan.models) and fam.variants == list(FAMILIES_VARIANTS)
    assert fam.prompt == ["box"] and fam.base is True
    assert fam.out == "results/families/sweep.parquet"
    assert {"tiny-sam2-vanilla", "tiny-sam2-basam"} <= set(fam.model)
    assert {"yarn", "jin", "infoscale"} <= set(fam.mechanism_variants)
    given = _parse(["--plan", "families", "--images", "7", "--no-base", "--prompt", "point"])
    assert given.images == 7 and given.base is False and given.prompt == ["point"]


def test_bad_plan_and_bad_mechanism_variant_get_one_line(tmp_path, capsys):
    assert main(["study", "--plan", "everything", "--out", str(tmp_path / "x.csv")]) == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err
    out = str(tmp_path / "m.csv")
    argv = ["study", "--mechanism-only", "--mechanism-images", "1", "--model", "tiny",
            "--mechanism-variants", "scale", "resize", "--out", out]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mechanism-variants resize: it runs the model at its" in err
    assert not list(tmp_path.iterdir())


def test_base_table_needs_one_base_size():
    from basam_lite.study import base_side_of

    assert base_side_of(["tiny", "sam2-tiny"]) == 256
    with pytest.raises(UserError, match=r"models' differ \(tiny 256 px, vit_b 1024 px\)"):
        base_side_of(["tiny", "vit_b"])


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """One unsharded families study on the small grid (no mechanism)."""
    out = tmp_path_factory.mktemp("whole") / "s.csv"
    assert main(["study", *SMALL, "--mechanism-images", "0", "--out", str(out)]) == 0
    return out


def _table(path) -> pd.DataFrame:
    from basam_lite.sweep import read_table

    keys = ["model", "axis", "image", "resolution", "variant", "prompt"]
    df = read_table(path).drop(columns=[*TIMING, "row"])
    return df.sort_values(keys).reset_index(drop=True)


def test_sharded_and_merged_study_equals_one_run(whole, tmp_path, capsys):
    from basam_lite.study import base_path, extent_path

    shard = str(tmp_path / "s-{k}.csv")
    for k in (0, 1):
        argv = ["study", *SMALL, "--mechanism-images", "0", "--shard", f"{k}/2", "--out", shard]
        assert main(argv) == 0
        assert "merge the shards with `sweep --merge` (each axis and the base table)" in (
            capsys.readouterr().out
        )
    merged = tmp_path / "m.csv"
    parts = [tmp_path / f"s-{k}.csv" for k in (0, 1)]
    for path in (lambda p: p, extent_path, base_path):
        argv = ["sweep", "--merge", *map(str, map(path, parts)), "--out", str(path(merged))]
        assert main([*argv, "--no-plot"]) == 0
    for path in (lambda p: p, extent_path, base_path):
        pd.testing.assert_frame_equal(_table(path(merged)), _table(path(whole)))
    assert main(["study", "--plan", "families", "--findings-only", "--out", str(merged)]) == 0
    assert main(["study", "--plan", "families", "--findings-only", "--out", str(whole)]) == 0
    capsys.readouterr()
    same = [p.with_suffix(".findings.md").read_text() for p in (merged, whole)]
    assert same[0] == same[1]


def test_findings_compare_each_family_with_its_own_vanilla(whole):
    from basam_lite.study import tables

    text = whole.with_suffix(".findings.md").read_text()
    sam2 = text.split("### SAM 2 (Hiera)")[1].split("##")[0]
    sam1 = text.split("### segment_anything SAM")[1].split("##")[0]
    assert "| sam2-tiny |" in sam2 and "| tiny |" not in sam2
    assert "| tiny |" in sam1 and "| sam2-tiny |" not in sam1
    df = tables(whole)
    for block in (sam1, sam2):
        for line in block.splitlines():
            if not line.startswith(("| tiny |", "| sam2-tiny |")):
                continue
            model, axis, size, prompt, variant, mean = (
                c.strip() for c in line.strip("|").split("|")[:6]
            )
            part = df[(df["model"] == model) & (df["axis"] == axis)]
            part = part[(part["resolution"] == int(size)) & (part["prompt"] == prompt)]
            v = part[part["variant"] == variant].set_index("image")["iou"]
            ref = part[part["variant"] == "vanilla"].set_index("image")["iou"]
            assert float(mean) == pytest.approx(100 * (v - ref).mean(), abs=0.051)
    assert "cells differ from vanilla after Holm's correction across all 24" in text


def test_degradation_is_vanilla_at_the_size_minus_vanilla_at_the_base(whole):
    from basam_lite.study import base_path, tables
    from basam_lite.sweep import read_table

    text = whole.with_suffix(".findings.md").read_text()
    df, base = tables(whole), read_table(base_path(whole))
    assert set(base["resolution"]) == {256} and set(base["variant"]) == {"vanilla"}
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.split("Degradation:")[1].splitlines()
        if line.startswith(("| tiny |", "| sam2-tiny |"))
    ]
    assert len(rows) == 4  # 2 models x (zoom 128, extent 384)
    for model, axis, size, _prompt, mean, _ci, se, images, _holm in rows:
        at = df[(df["model"] == model) & (df["axis"] == axis) & (df["variant"] == "vanilla")]
        at = at[at["resolution"] == int(size)].set_index("image")["iou"]
        ref = base[base["model"] == model].set_index("image")["iou"]
        d = (at - ref.loc[at.index]).to_numpy()
        assert int(images) == d.size == 3
        assert float(mean) == pytest.approx(100 * d.mean(), abs=0.051)
        assert float(se) == pytest.approx(100 * d.std(ddof=1) / np.sqrt(d.size), abs=0.051)
    ceilings = text.split("Base size:")[1].split("Degradation:")[0]
    for model in ("tiny", "sam2-tiny"):
        (line,) = [x for x in ceilings.splitlines() if x.startswith(f"| {model} |")]
        cells = [c.strip() for c in line.strip("|").split("|")]
        ok = base[base["model"] == model]
        assert float(cells[4]) == pytest.approx(ok["iou"].mean(), abs=5e-4)
        assert float(cells[5]) == pytest.approx(ok["grid_iou"].mean(), abs=5e-4)


def test_degradation_of_a_hand_made_table():
    """Two images, one size: the difference, its SE and the pairing by image written out."""
    from basam_lite.degradation import degradation

    def rows(variant, size, ious, axis="zoom"):
        cell = dict(model="tiny", axis=axis, resolution=size, variant=variant, prompt="box")
        return [{**cell, "image": f"i{k}", "status": "ok", "iou": v} for k, v in enumerate(ious)]

    study = pd.DataFrame(rows("vanilla", 512, [0.5, 0.7]) + rows("scale", 512, [0.9, 0.9])
                         + rows("vanilla", 512, [0.6, 0.4], axis="extent"))  # fmt: skip
    base = pd.DataFrame(rows("vanilla", 256, [0.8, 0.8]))
    t = degradation(study, base).set_index("axis")
    assert t.loc["zoom", "mean"] == pytest.approx(((0.5 - 0.8) + (0.7 - 0.8)) / 2)
    assert t.loc["zoom", "se"] == pytest.approx(np.std([-0.3, -0.1], ddof=1) / np.sqrt(2))
    assert t.loc["extent", "mean"] == pytest.approx(((0.6 - 0.8) + (0.4 - 0.8)) / 2)
    assert (t["images"] == 2).all() and "variant" not in t.columns
    with pytest.raises(UserError, match="base table has no scored vanilla row"):
        degradation(study, base.assign(variant="scale"))


def test_mechanism_reaches_hieras_global_blocks():
    """A sam2 model's mechanism rows: one per global block (Hiera's stride-16 stage), keys the
    global grid's, each entropy that of the block's full attention row of the same token
    (captured for every query, no position mapping)."""
    from basam_lite.capture import capture_attention
    from basam_lite.datasets import open_dataset
    from basam_lite.encoders import adapter_for
    from basam_lite.mechanism import attention_along_axes, global_stride, object_tokens

    sam = bl.build_sam("sam2-tiny")
    assert global_stride(sam) == (16, 4)
    assert global_stride(bl.build_sam("tiny")) == (16, 1)
    ds = open_dataset("synthetic:2")
    blocks = adapter_for(sam).global_blocks()
    df = attention_along_axes(sam, ds, {"zoom": (256, 384)}, {"vanilla": None}, images=1, queries=3)
    assert set(df["block"]) == set(blocks) and len(blocks) == 2
    assert set(zip(df["resolution"], df["keys"], strict=True)) == {(256, 256), (384, 576)}
    assert (df["entropy"] <= np.log(df["keys"]) + 1e-6).all()
    # The same rows from the whole maps: the three query tokens the study draws (seeded).
    target = ds.sample(0, size=(256, 256))
    tokens = object_tokens(target.mask, 16)
    import zlib

    rng = np.random.default_rng([0, zlib.crc32(target.name.encode())])
    pick = tokens[np.sort(rng.choice(len(tokens), min(3, len(tokens)), False))]
    with capture_attention(sam, blocks=blocks) as cap:
        bl.predictor_for(sam).set_image(target.image)
    for b in blocks:
        rows, cols = cap.grids[b]
        assert (rows, cols) == (16, 16)
        probs = cap.maps[b][0][:, [r * cols + c for r, c in pick]]  # [heads, Q, N]
        ent = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean().item()
        got = df[(df["block"] == b) & (df["resolution"] == 256)]["entropy"].item()
        assert got == pytest.approx(ent, rel=1e-5)


def test_summary_is_generated_from_the_tables_and_fills_a_readme(whole, tmp_path, capsys):
    from basam_lite.degradation import degradation
    from basam_lite.family_summary import BEGIN, END, families_summary, readme_block
    from basam_lite.stats import paired_table
    from basam_lite.study import base_path, tables
    from basam_lite.sweep import read_table

    summary = whole.with_suffix(".summary.md").read_text().strip()
    assert summary == families_summary(whole)
    df = tables(whole)
    d = degradation(df, read_table(base_path(whole))).set_index(["model", "axis", "resolution"])
    grid = summary.split("**Away from the base size.**")[1].split("**What each rule")[0]
    (row,) = [x for x in grid.splitlines() if x.startswith("| sam2-tiny |")]
    cells = [c.strip() for c in row.strip("|").split("|")][1:]  # zoom 128, extent 384
    for cell, key in zip(cells, [("zoom", 128), ("extent", 384)], strict=True):
        r = d.loc[("sam2-tiny", *key)]
        assert cell.startswith(f"{100 * r['mean']:+.1f} [{100 * r['ci_low']:+.1f}, ")
    t = paired_table(df)
    rules = t[t["variant"] != "resize"]
    assert f"{len(rules)} cells of a temperature rule" in summary
    quiet = [(m, a, s) for (m, a, s), c in rules.groupby(["model", "axis", "resolution"])
             if not c["significant"].any()]  # fmt: skip
    for model in ("tiny", "sam2-tiny"):
        mine = [f"{a} {s} px" for m, a, s in quiet if m == model]
        line = [x for x in summary.splitlines() if x.startswith(f"- {model}: no rule differs")]
        assert bool(mine) == bool(line) and all(m in line[0] for m in mine)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nprose\n\n{BEGIN}\nold\n{END}\n\nmore prose\n")
    argv = ["study", "--plan", "families", "--findings-only", "--out", str(whole)]
    assert main([*argv, "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert readme_block(text) == summary
    assert text.startswith("# Title\n\nprose\n\n") and text.endswith("\n\nmore prose\n")
    plain = tmp_path / "notes.md"
    plain.write_text("no markers here\n")
    capsys.readouterr()
    assert main([*argv, "--readme", str(plain)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs one <!-- families:begin --> line" in err
    assert plain.read_text() == "no markers here\n"
