"""Training the tiny SAM 2 (``train --model sam2-tiny``): bit-exact resume, the saved checkpoint
(under 10 MB, sam2's ``{"model": state_dict}`` layout, loads and scores as trained), and the
refusals of what cannot be trained."""

from __future__ import annotations

import json

import pytest
import torch

import basam_lite as bl
from basam_lite.__main__ import main
from basam_lite.encoders.specs import load_model
from basam_lite.errors import UserError
from basam_lite.evaluation import evaluate
from basam_lite.train import TrainConfig, check_savable, train

pytest.importorskip("sam2", reason="the tiny SAM 2 needs the sam2 extra")


def sam2_config(**changes) -> TrainConfig:
    base = dict(
        name="tiny-sam2-test", model="sam2-tiny", steps=2, batch_size=2, warmup=1, threads=1
    )
    return TrainConfig(**{**base, "masks_per_image": 2, **changes})


def test_sam2_training_resumes_bit_exact_and_moves_the_weights(tmp_path):
    cfg = sam2_config(preset="paper")
    whole = train(cfg, run_dir=tmp_path / "whole", progress=False)
    first = train(cfg, run_dir=tmp_path / "split", progress=False, stop_after=1)
    assert first.step == 1
    rest = train(cfg, run_dir=tmp_path / "split", progress=False)
    a, b = whole.model.state_dict(), rest.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in rest.history] == [h["loss"] for h in whole.history]
    init = load_model("sam2-tiny").state_dict()
    key = "sam_mask_decoder.iou_token.weight"
    assert not torch.equal(a[key], init[key])
    # each step records its wall and CPU seconds
    assert all(h["wall_s"] > 0 and h["cpu_s"] > 0 for h in whole.history)


def test_the_seed_sets_the_initial_sam2_weights():
    a = load_model("sam2-tiny", seed=0).state_dict()
    b = load_model("sam2-tiny", seed=1).state_dict()
    same = bl.build_sam("sam2-tiny").state_dict()  # build_sam's random weights are seed 0
    assert all(torch.equal(a[k], same[k]) for k in a)
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_train_cli_saves_a_small_sam2_checkpoint_that_scores_as_trained(tmp_path, capsys):
    out = tmp_path / "tiny-sam2-cli.pt"
    args = ["train", "--model", "sam2-tiny", "--steps", "2", "--batch-size", "2"]
    args += ["--threads", "1", "--eval-n", "2", "--run-dir", str(tmp_path / "run")]
    assert main([*args, "--out", str(out)]) == 0
    assert out.stat().st_size < 10e6
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {"model"}  # sam2's own checkpoint layout
    assert all(v.dtype != torch.float32 for v in saved["model"].values())  # fp16 floats
    model = bl.build_sam("sam2-tiny", checkpoint=out)
    for k, v in saved["model"].items():
        assert torch.equal(model.state_dict()[k], v.to(model.state_dict()[k].dtype))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    again = evaluate(model, n=2)  # the card's numbers are what the saved file scores
    assert again["iou_box"] == pytest.approx(metrics["iou_box"], abs=1e-12)
    card = out.with_suffix(".md").read_text()
    assert "`sam2-tiny`" in card and "token grids per stage at 256 px: 64 x 64" in card


def test_training_continues_a_saved_sam2_from_exactly_its_weights(tmp_path, capsys):
    """``--init FILE.pt`` with ``--model sam2-tiny`` reads the file as a tiny SAM 2 (not as a
    tiny SAM 1), starts from exactly its weights, and the card says where it began."""
    from basam_lite.train import initial_model

    first = tmp_path / "first.pt"
    args = ["train", "--model", "sam2-tiny", "--steps", "1", "--batch-size", "2"]
    args += ["--threads", "1", "--eval-n", "1"]
    assert main([*args, "--run-dir", str(tmp_path / "a"), "--out", str(first)]) == 0
    saved = torch.load(first, weights_only=True)["model"]
    start = initial_model(sam2_config(init=str(first))).state_dict()
    assert all(torch.equal(start[k], v.to(start[k].dtype)) for k, v in saved.items())
    second = tmp_path / "second.pt"
    more = ["--init", str(first), "--name", "tiny-sam2-more", "--seed", "1"]
    assert main([*args, *more, "--run-dir", str(tmp_path / "b"), "--out", str(second)]) == 0
    card = second.with_suffix(".md").read_text()
    assert f"initialised from `{first}` and trained 1 steps more" in card
    assert "trained from scratch" not in card
    assert f"`{(tmp_path / 'b').as_posix()}/state.pt`" in card  # where a rerun resumes


def test_default_names_follow_the_family():
    from argparse import ArgumentParser

    from basam_lite.train import add_arguments, config_from_args

    p = ArgumentParser()
    add_arguments(p)
    assert config_from_args(p.parse_args(["--model", "sam2-tiny"])).name == "tiny-sam2-vanilla"
    cfg = config_from_args(p.parse_args(["--model", "sam2-tiny", "--variant", "basam"]))
    assert (cfg.name, cfg.preset, cfg.model) == ("tiny-sam2-basam", "paper", "sam2-tiny")
    assert config_from_args(p.parse_args([])).name == "tiny-vanilla"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "sam2.1_hiera_tiny"}, "would exceed the project's 10 MB file limit"),
        ({"model": "hf-tiny"}, "the hf family cannot be trained here yet"),
        ({"init": "tiny-vanilla"}, "--init tiny-vanilla: with --model sam2-tiny give a .pt file"),
        ({"init": "tiny-sam2-nonexistent"}, "or a bundled sam2-tiny \\(tiny-sam2-vanilla, "),
    ],
)
def test_what_cannot_be_trained_is_refused_before_training(changes, message):
    with pytest.raises(UserError, match=message):
        check_savable(sam2_config(**changes))


def test_an_unknown_model_is_one_line_at_the_cli(capsys):
    assert main(["train", "--model", "sam3-tiny", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "--model 'sam3-tiny': choose one of" in err and "Traceback" not in err


def test_docs_state_the_ceiling_of_each_sam2_token_grid():
    """docs/sam2.md's ceilings: grid_mask_iou of the 200 test scenes at the stride of each of
    sam2-tiny's stage grids (read off the model), as the README computes the tiny SAM 1's."""
    from pathlib import Path

    import numpy as np

    from basam_lite.datasets import ProceduralScenes
    from basam_lite.encoders import adapter_for
    from basam_lite.metrics import grid_mask_iou

    adapter = adapter_for(bl.build_sam("sam2-tiny"))
    base = adapter.base_size()
    strides = sorted(
        {base[0] // adapter.block_grids(b.index, base).query[0] for b in adapter.attention_blocks()}
    )
    assert strides == [4, 8, 16, 32]
    scenes = ProceduralScenes(200, split="test")
    ceilings = [np.mean([grid_mask_iou(s.mask, c) for s in scenes]) for c in reversed(strides)]
    doc = (Path(__file__).parents[1] / "docs" / "sam2.md").read_text()
    row = "| mean IoU ceiling, 200 test scenes | " + " | ".join(f"{c:.3f}" for c in ceilings)
    assert row + " |" in doc


BUNDLED_SAM2 = ("tiny-sam2-vanilla", "tiny-sam2-basam")


@pytest.mark.parametrize("name", BUNDLED_SAM2)
def test_bundled_sam2_checkpoint_matches_its_card_and_round_trips(name, tmp_path):
    import hashlib
    import re

    from basam_lite.models import tiny_checkpoint_path
    from basam_lite.train import save_half

    path = tiny_checkpoint_path(name)
    card = path.with_suffix(".md").read_text()
    match = re.search(r"sha256: `([0-9a-f]{64})`", card)
    assert match, "the card states the file's sha256"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == match.group(1)
    assert path.stat().st_size <= 10 * 1024 * 1024
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert set(saved) == {"model"}, "sam2's own checkpoint layout"
    assert not any("basam" in k for k in saved["model"])
    sam = bl.build_sam(name)
    assert type(sam).__name__ == "SAM2Base" and not sam.training
    # round trip: the loaded model saved again holds the same fp16 tensors
    save_half(sam, tmp_path / "again.pt", "sam2-tiny")
    again = torch.load(tmp_path / "again.pt", map_location="cpu", weights_only=True)["model"]
    assert again.keys() == saved["model"].keys()
    assert all(torch.equal(again[k], saved["model"][k]) for k in again)


@pytest.mark.parametrize("name", BUNDLED_SAM2)
def test_bundled_sam2_scores_what_its_card_says(name):
    import re

    from basam_lite.models import tiny_checkpoint_path

    card = tiny_checkpoint_path(name).with_suffix(".md").read_text()
    scenes = int(re.search(r"at 256 px on (\d+) held-out scenes", card).group(1))
    stated = float(re.search(r"\| box \| ([0-9.]+) \|", card).group(1))
    sam = bl.build_sam(name)
    if name.endswith("basam"):
        bl.apply_basam(sam, bl.BASAMConfig.paper())
    # the card ran with 1 thread; other thread counts change float summation order
    assert evaluate(sam, n=scenes, kinds=("box",))["iou_box"] == pytest.approx(stated, abs=2e-3)


def test_the_tiny_sam2_decodes_single_masks_without_the_stability_fallback():
    # trained on mask token 0 only: SAM 2's eval-mode fallback to its (untrained) multimask
    # outputs is off for the tiny architecture, on for the official ones
    from basam_lite.encoders.specs import meta_model

    assert not load_model("sam2-tiny").sam_mask_decoder.dynamic_multimask_via_stability
    official = meta_model("sam2.1_hiera_tiny")
    assert official.sam_mask_decoder.dynamic_multimask_via_stability


def test_a_missing_bundled_sam2_names_the_command_that_trains_it(tmp_path, monkeypatch, capsys):
    from basam_lite.models import DATA_ENV

    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="train --model sam2-tiny --variant basam"):
        bl.build_sam("tiny-sam2-basam")
    assert main(["sweep", "--model", "tiny-sam2-basam", "--out", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert "--variant basam --write-bundled" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()
