"""The researcher's sweep (issue 25): a rerun fills only its own cells, widening is explicit,
checkpoint problems are one line before any file, random official weights only on purpose,
defaults follow the model, and a summary says what was skipped and why."""

from __future__ import annotations

import argparse
import hashlib
import json

import pytest
import torch

import basam_lite as bl
from basam_lite.__main__ import main
from basam_lite.errors import UserError
from basam_lite.sweep import (
    DEFAULT_RESOLUTIONS,
    EXTENT_RESOLUTIONS,
    SweepConfig,
    add_arguments,
    default_images,
    default_sizes,
    fill_defaults,
    read_meta,
    read_table,
    run_sweep,
)


@pytest.fixture(scope="module")
def tiny_models():
    return {"tiny": bl.build_sam("tiny")}


def cfg(**kw) -> SweepConfig:
    base = dict(
        models=("tiny",),
        variants=("vanilla", "paper"),
        resolutions=(128, 192),
        dataset="synthetic:2",
        prompts=("box",),
        limit=1,
    )
    return SweepConfig(**{**base, **kw})


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_a_rerun_fills_only_the_cells_it_asks_for(tmp_path, tiny_models, capsys):
    out = tmp_path / "t.csv"
    run_sweep(cfg(), out, progress=False, stop_after=1, models=tiny_models)  # 1 of 4 cells
    run_sweep(cfg(variants=("paper",)), out, progress=True, models=tiny_models)
    err = capsys.readouterr().err
    assert "plan: tiny x paper x 128 192 px x box on 1 image(s)" in err and "to run" in err
    df = read_table(out)
    vanilla = df[df["variant"] == "vanilla"]
    assert len(vanilla) == 1  # the one cell of the first run, no other vanilla cell added
    assert set(df[df["variant"] == "paper"]["resolution"]) == {128, 192}
    assert read_meta(out)["complete"] is False  # vanilla at 192 px is still missing
    run_sweep(cfg(), out, progress=False, models=tiny_models)  # the first command resumes
    assert len(read_table(out)) == 4 and read_meta(out)["complete"] is True


def test_widening_a_grid_is_refused_without_extend(tmp_path, tiny_models, capsys):
    out = tmp_path / "t.csv"
    run_sweep(cfg(), out, progress=False, models=tiny_models)
    before = out.read_bytes(), (tmp_path / "t.csv.meta.json").read_bytes()
    with pytest.raises(UserError) as e:
        run_sweep(cfg(variants=("paper",), resolutions=(256,)), out, models=tiny_models)
    msg = str(e.value)
    assert "\n" not in msg and "--extend" in msg and "resolutions [256]" in msg
    assert "2 new cell(s)" in msg  # vanilla and paper at 256 px: the whole wider grid
    assert (out.read_bytes(), (tmp_path / "t.csv.meta.json").read_bytes()) == before
    run_sweep(cfg(variants=("paper",), resolutions=(256,)), out, models=tiny_models, extend=True)
    assert "extending: this run will widen" in capsys.readouterr().err
    df = read_table(out)
    assert len(df) == 6 and set(df["resolution"]) == {128, 192, 256}
    assert read_meta(out)["identity"]["grid"]["resolutions"] == [128, 192, 256]


def test_random_official_weights_are_refused_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("BASAM_SAM_CHECKPOINT", raising=False)
    c = SweepConfig(models=("vit_b",), variants=("paper",), resolutions=(256,), limit=1)
    with pytest.raises(UserError, match="--random-weights") as e:
        run_sweep(c, tmp_path / "t.csv", progress=False)
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())
    with pytest.raises(UserError, match="BASAM_SAM_CHECKPOINT"):
        fill_defaults(parse(["--model", "vit_b"]))
    args = fill_defaults(parse(["--model", "vit_b", "--random-weights"]))
    assert args.checkpoint is None
    monkeypatch.setenv("BASAM_SAM_CHECKPOINT", "/w/sam_vit_b_01ec64.pth")
    args = fill_defaults(parse(["--model", "vit_b"]))
    assert args.checkpoint == "/w/sam_vit_b_01ec64.pth"
    assert args.out == "runs/sweep-vit_b.csv"  # never the project's committed results


def test_random_weights_are_seeded_and_recorded():
    from basam_lite.sweep import RANDOM_OFFICIAL_INIT, build_official_random, model_weights

    a, b = build_official_random("vit_b"), build_official_random("vit_b")
    assert torch.equal(
        a.image_encoder.blocks[0].attn.qkv.weight, b.image_encoder.blocks[0].attn.qkv.weight
    )
    assert model_weights("vit_b", None)["init"] == RANDOM_OFFICIAL_INIT


def _official_name(path, model="vit_b"):
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    return path.rename(path.with_name(f"sam_{model}_{digest[:6]}.pth"))


def test_checkpoint_problems_are_one_line_before_any_file(tmp_path):
    out = tmp_path / "out" / "t.csv"
    bad = tmp_path / "sam_vit_b_01ec64.pth"  # an official name whose MD5 does not match
    bad.write_bytes(b"not the weights")
    tiny = tmp_path / "tiny.pth"
    torch.save(bl.build_sam("tiny").state_dict(), tiny)
    tiny = _official_name(tiny)  # another model's weights under a correct official name
    cases = {bad: "MD5", tiny: "looks like tiny"}
    for path, expected in cases.items():
        c = SweepConfig(models=("vit_b",), checkpoint=str(path), resolutions=(256,), limit=1)
        with pytest.raises(UserError, match=expected) as e:
            run_sweep(c, out, progress=False)
        assert "\n" not in str(e.value)
        assert not out.parent.exists()  # no lock, no meta, no table


def test_defaults_follow_the_model(capsys):
    assert default_sizes(["tiny-vanilla"], "zoom") == DEFAULT_RESOLUTIONS
    assert default_sizes(["tiny"], "extent") == EXTENT_RESOLUTIONS
    assert default_sizes(["vit_b"], "zoom") == (512, 768, 1024, 1536, 2048, 3072)
    assert default_sizes(["vit_h"], "extent") == (768, 1024, 2048)
    assert default_images(["tiny"]) == 12 and default_images(["vit_l"]) == 3
    args = fill_defaults(parse(["--model", "vit_b", "--random-weights", "--axis", "extent"]))
    assert args.resolutions == [768, 1024, 2048] and args.dataset == "synthetic:3"
    args = fill_defaults(parse([]))
    assert args.out == "results/sweep.csv" and args.extent_resolutions == list(EXTENT_RESOLUTIONS)
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "512 768 1024 1536 2048 3072 for vit_b/l/h" in text
    assert "768 1024 2048 for vit_b/l/h" in text and "--random-weights" in text


def test_summary_says_how_many_rows_were_skipped_and_why(tmp_path, capsys):
    out = tmp_path / "t.csv"
    argv = ["sweep", "--model", "tiny", "--variants", "official", "--resolutions", "128",
            "--dataset", "synthetic:1", "--prompt", "box", "--axis", "zoom", "--no-plot",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "1 of 1 rows skipped:" in text and "no scored row" in text
    assert "Empty DataFrame" not in text


def test_committed_results_are_never_suggested_for_overwrite(tmp_path):
    from pathlib import Path

    from basam_lite import sweep

    committed = Path(sweep.__file__).resolve().parents[1] / "results" / "sweep.csv"
    msg = str(sweep._refuse(committed, "holds a table of another run"))
    assert "--overwrite" not in msg and "committed" in msg
    assert "--overwrite" in str(sweep._refuse(tmp_path / "t.csv", "holds another run"))


def test_identity_records_how_vanilla_runs(tmp_path, tiny_models):
    out = tmp_path / "t.csv"
    run_sweep(cfg(), out, progress=False, models=tiny_models)
    ident = json.loads((tmp_path / "t.csv.meta.json").read_text())["identity"]
    assert set(ident["attention"]) == {"vanilla"} and "fused" in ident["attention"]["vanilla"]
