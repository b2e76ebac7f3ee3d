"""Training: a smoke run, bit-exact resume, fine-tuning, and the bundled checkpoints' cards."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest
import torch

import basam_lite as bl
from basam_lite.evaluation import evaluate
from basam_lite.models import tiny_checkpoint_path
from basam_lite.patch import patch_config
from basam_lite.train import TrainConfig, finetune, lr_factor, save_half, train

CHECKPOINTS = ("tiny-vanilla", "tiny-basam")


def tiny_config(**changes) -> TrainConfig:
    return TrainConfig(**{**dict(steps=4, batch_size=2, warmup=2, threads=1), **changes})


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(100, cfg) == pytest.approx(0.1)


def test_interrupted_training_resumes_bit_exact(tmp_path):
    cfg = tiny_config(preset="paper")
    whole = train(cfg, run_dir=tmp_path / "whole", progress=False)
    first = train(cfg, run_dir=tmp_path / "split", progress=False, stop_after=2)
    assert first.step == 2
    rest = train(cfg, run_dir=tmp_path / "split", progress=False)
    assert rest.step == whole.step == 4
    a, b = whole.model.state_dict(), rest.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in rest.history] == [h["loss"] for h in whole.history]
    # Training moved the weights.
    init = bl.build_sam("tiny").state_dict()
    assert not torch.equal(
        a["mask_decoder.iou_token.weight"], init["mask_decoder.iou_token.weight"]
    )


def test_training_restores_the_callers_thread_count():
    before = torch.get_num_threads()
    train(tiny_config(steps=1, threads=before + 1), progress=False)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "change",
    [
        {"lr": TrainConfig.lr / 2},
        {"spec": dataclasses.replace(bl.TINY, decoder_heads=8)},
        {"decoder_batched": False},
    ],
    ids=["learning rate", "architecture", "decoder path"],
)
def test_resume_refuses_another_config(tmp_path, change):
    train(tiny_config(), run_dir=tmp_path, progress=False, stop_after=1)
    with pytest.raises(ValueError, match="different config"):
        train(tiny_config(**change), run_dir=tmp_path, progress=False)


def test_a_run_saved_before_batched_decoding_reads_as_prompt_by_prompt():
    saved = TrainConfig().describe()
    del saved["decoder_batched"]  # the shipped checkpoints' run states have no such field
    assert TrainConfig.completed(saved)["decoder_batched"] is False
    del saved["spec"]["patch_size"]  # nor patch_size in their spec: it was always 16 then
    assert TrainConfig.completed(saved)["spec"] == dataclasses.asdict(bl.TINY)
    assert TrainConfig.completed(TrainConfig().describe())["decoder_batched"] is True


def test_spec_sets_the_architecture_of_a_model_trained_from_scratch():
    spec = dataclasses.replace(bl.TINY, prompt_dim=64, decoder_heads=2)
    model = train(tiny_config(steps=1, spec=spec), progress=False).model
    assert model.mask_decoder.transformer_dim == 64


def test_half_checkpoint_loads_through_build_sam(tmp_path):
    model = train(tiny_config(steps=1), progress=False).model
    path = tmp_path / "tiny-x.pt"
    sha = save_half(model, path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.stat().st_size < 10e6
    loaded = bl.build_sam("tiny", checkpoint=path)
    assert loaded.image_encoder.pos_embed.dtype == torch.float32
    ref = model.state_dict()["image_encoder.pos_embed"]
    assert torch.allclose(loaded.image_encoder.pos_embed, ref, atol=1e-3)
    assert set(evaluate(loaded, n=2)) == {"iou_box", "iou_point", "iou_center"}


def test_finetune_from_python(tmp_path):
    sam = finetune(init="tiny", preset="paper", steps=2, progress=False, batch_size=2, threads=1)
    assert bl.is_patched(sam) and not sam.training


def checkpoint_and_card(name: str):
    """The bundled checkpoint's path and its model card's text (skips where not trained)."""
    path = tiny_checkpoint_path(name)
    if not path.exists():
        pytest.skip(f"{path} not trained yet")
    return path, path.with_suffix(".md").read_text()


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_checkpoint_matches_its_card(name):
    path, card = checkpoint_and_card(name)
    match = re.search(r"sha256: `([0-9a-f]{64})`", card)
    assert match, "the card states the file's sha256"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == match.group(1)
    assert path.stat().st_size <= 10 * 1024 * 1024
    sam = bl.build_sam(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert not any("basam" in k for k in state)
    assert sam.image_encoder.patch_embed.proj.weight.dtype == torch.float32


def test_branch_from_a_vanilla_state_equals_the_full_run(tmp_path):
    vanilla = tiny_config(steps=4)
    train(vanilla, run_dir=tmp_path / "vanilla", progress=False, stop_after=2)
    branch = tiny_config(steps=4, name="tiny-basam", preset="paper", preset_from=2)
    warm = train(
        branch,
        run_dir=tmp_path / "warm",
        progress=False,
        warm_start=tmp_path / "vanilla" / "state.pt",
    )
    cold = train(branch, run_dir=tmp_path / "cold", progress=False)
    assert bl.is_patched(warm.model) and bl.is_patched(cold.model)
    a, b = warm.model.state_dict(), cold.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="cannot seed"):
        train(
            tiny_config(steps=4, lr=1e-4, preset="paper", preset_from=2),
            run_dir=tmp_path / "bad",
            warm_start=tmp_path / "vanilla" / "state.pt",
        )


def test_scene_targets_pairs_each_object_with_its_own_prompt():
    from basam_lite.datasets import ProceduralScenes
    from basam_lite.datasets.procedural import render_layers
    from basam_lite.train import batch_at

    cfg = tiny_config(batch_size=4, masks_per_image=3)
    ds = ProceduralScenes(10**6, seed=cfg.seed, size=cfg.size, split="train")
    batch = batch_at(ds, 7, cfg)
    again = batch_at(ds, 7, cfg)
    assert batch.names == [ds.name(7 * cfg.batch_size + b) for b in range(cfg.batch_size)]
    for b, (masks, image_prompts) in enumerate(zip(batch.masks, batch.prompts, strict=True)):
        index = 7 * cfg.batch_size + b
        # The scene's designated target comes first, exactly as the evaluation set shows it.
        assert (masks[0] == ds.sample(index).mask).all()
        assert (batch.images[b] == ds.sample(index).image).all()
        assert 1 <= len(masks) == len(image_prompts) <= cfg.masks_per_image
        labels = render_layers(ds.scene(index), cfg.size)[1]
        for mask, prompt in zip(masks, image_prompts, strict=True):
            assert mask.sum() >= cfg.min_object_area * mask.size
            # Each mask is exactly one object's visible region.
            assert len(set(labels[mask].tolist())) == 1
            if prompt.point_coords is not None:
                xs, ys = prompt.point_coords.round().astype(int).T
                assert mask[ys, xs].all()
        stacked = sum(m.astype(int) for m in masks)
        assert stacked.max() == 1  # objects' visible regions never overlap
        assert all((m == r).all() for m, r in zip(masks, again.masks[b], strict=True))
    assert len(list(batch.pairs())) == sum(len(p) for p in batch.prompts)


def test_evaluation_table_is_what_evaluate_averages():
    from basam_lite.datasets import ProceduralScenes
    from basam_lite.evaluation import breakdown, evaluation_table
    from basam_lite.metrics import grid_mask_iou

    sam = bl.build_sam("tiny")
    table = evaluation_table(sam, n=3, kinds=("box", "center"))
    assert list(table["scene"]) == [f"synthetic-test-s0-{i:05d}" for i in range(3)]
    assert table[["iou_box", "iou_center"]].stack().between(0, 1).all()
    means = evaluate(sam, n=3, kinds=("box", "center"))
    assert means == pytest.approx(
        {"iou_box": table["iou_box"].mean(), "iou_center": table["iou_center"].mean()}
    )
    scenes = ProceduralScenes(3, seed=0, size=256, split="test")
    grid = [grid_mask_iou(scenes[i].mask, 16) for i in range(3)]  # 16 px patches
    assert table["token_grid_iou"].tolist() == grid
    by = breakdown(table)
    assert by.loc["shape", "scenes"].sum() == 3
    assert by.loc["difficulty", "scenes"].sum() >= 3  # a scene counts under each of its tags


def test_paper_training_step_is_the_same_on_the_dense_path():
    # Training runs the patched encoder on the dense path (faster at 16 x 16 tokens): its loss
    # and gradients are those of the "auto" choice under autograd (folded).
    from basam_lite.datasets import ProceduralScenes
    from basam_lite.train import batch_at, batch_loss, initial_model

    cfg = tiny_config(preset="paper", precision="fp32", batch_size=2)
    batch = batch_at(ProceduralScenes(10**6, split="train"), 0, cfg)
    results = {}
    for path in ("dense", "folded"):
        sam = initial_model(cfg).train()
        bl.apply_basam(sam, bl.BASAMConfig.paper().with_(path=path))
        loss, _ = batch_loss(sam, batch, cfg)
        loss.backward()
        results[path] = (
            float(loss.detach()),
            sam.image_encoder.blocks[2].attn.qkv.weight.grad.clone(),
        )
    assert results["dense"][0] == pytest.approx(results["folded"][0], rel=1e-5)
    torch.testing.assert_close(results["dense"][1], results["folded"][1], rtol=1e-3, atol=1e-6)


def test_a_trained_paper_model_is_left_on_the_auto_path():
    result = train(tiny_config(steps=1, preset="paper"), progress=False)
    assert patch_config(result.model) == bl.BASAMConfig.paper()
    assert patch_config(result.model).path == "auto"


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_card_box_iou_is_what_the_checkpoint_scores(name):
    # The card's headline number, recomputed from the file (the card ran with 1 thread; other
    # thread counts change float summation order, hence the tolerance).
    _, card = checkpoint_and_card(name)
    scenes = int(re.search(r"at 256 px on (\d+) held-out scenes", card).group(1))
    stated = float(re.search(r"\| box \| ([0-9.]+) \|", card).group(1))
    sam = bl.build_sam(name)
    if name == "tiny-basam":
        bl.apply_basam(sam, bl.BASAMConfig.paper())
    assert evaluate(sam, n=scenes, kinds=("box",))["iou_box"] == pytest.approx(stated, abs=2e-3)


def test_time_steps_times_the_recipe_against_each_speed_up_undone(capsys):
    from basam_lite.__main__ import main
    from basam_lite.train import step_times

    times = step_times(tiny_config(batch_size=1), repeats=1)
    other = "fp32_encoder" if times["recipe_bf16"] else "bf16_encoder"
    variants = ("recipe", other, "per_prompt_decoder")
    ratios = (f"{other}_over_recipe", "per_prompt_decoder_over_recipe")
    assert set(times) == {f"{v}_s" for v in variants} | set(ratios) | {"recipe_bf16"}
    assert all(times[f"{v}_s"] > 0 for v in variants)
    for variant, ratio in zip(variants[1:], ratios, strict=True):
        assert times[ratio] == pytest.approx(times[f"{variant}_s"] / times["recipe_s"])
    assert main(["train", "--time-steps", "1", "--batch-size", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "fp32 encoder" in out and "bf16 encoder" in out and "prompt-by-prompt decoder" in out
    with pytest.raises(ValueError, match="--time-steps must be >= 1"):
        main(["--debug", "train", "--time-steps", "0"])


def test_evaluation_at_a_size_off_the_patch_grid_pads_the_token_grid_mask():
    from basam_lite.datasets import ProceduralScenes
    from basam_lite.evaluation import evaluation_table, padded_to
    from basam_lite.metrics import grid_mask_iou

    table = evaluation_table(bl.build_sam("tiny"), n=1, kinds=("box",), size=200)
    mask = ProceduralScenes(1, size=200)[0].mask
    padded = padded_to(mask, 16)
    assert padded.shape == (208, 208) and padded[:200, :200].sum() == mask.sum()
    assert table["token_grid_iou"].iloc[0] == grid_mask_iou(padded, 16)
