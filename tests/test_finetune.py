"""Fine-tuning a SAM on a dataset (basam_lite.finetune, ``train --dataset``): a random ViT-B
saved under the official file name as the stand-in checkpoint, a tiny SAM on a small folder;
resume is bit-identical; decoder-only and LoRA train only what they say; bad input is one line."""

from __future__ import annotations

import shutil

import pytest
import torch

import basam_lite as bl
from basam_lite.__main__ import main
from basam_lite.errors import UserError
from basam_lite.finetune import (
    FinetuneConfig,
    epoch_batches,
    export_state,
    finetune,
    parameter_role,
)
from basam_lite.standin import write_scene_folder, write_standin_checkpoint


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_scene_folder(tmp_path_factory.mktemp("scenes"), n=5, size=192)


@pytest.fixture(scope="module")
def vit_b_standin(tmp_path_factory):
    return write_standin_checkpoint("vit_b", tmp_path_factory.mktemp("weights"))


def tiny_cfg(folder, **kw) -> FinetuneConfig:
    base = dict(
        model="tiny", dataset=f"folder:{folder}", size=256, tune="decoder", epochs=1,
        batch_size=1, val_fraction=0.2, prompts=("box",),
    )  # fmt: skip
    return FinetuneConfig(**{**base, **kw})


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_two_steps_on_a_random_vit_b_then_sweep_on_the_result(
    tmp_path, folder, vit_b_standin, capsys
):
    out = tmp_path / "ft" / "vit_b-ft.pth"
    argv = ["train", "--dataset", f"folder:{folder}", "--init", "vit_b",
            "--checkpoint", str(vit_b_standin), "--size", "256", "--tune", "full",
            "--epochs", "1", "--batch-size", "1", "--limit", "3", "--val-fraction", "0.34",
            "--run-dir", str(tmp_path / "run"), "--out", str(out), "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr()
    assert "epoch 1/1 step 2/2" in text.err  # 2 training images, batch 1: two steps
    assert out.is_file() and out.with_suffix(".md").is_file()
    card = out.with_suffix(".md").read_text()
    assert "best epoch: 1" in card and "never on a test split" in card and "Scale:" in card
    before = bl.build_sam("vit_b", vit_b_standin).state_dict()
    after = bl.build_sam("vit_b", out).state_dict()  # a plain ViT-B checkpoint
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("image_encoder.") for k in moved)
    assert any(k.startswith("mask_decoder.") for k in moved)
    from basam_lite.sweep import SweepConfig, run_sweep

    df = run_sweep(
        SweepConfig(
            models=("vit_b",),
            checkpoint=str(out),
            variants=("paper",),
            resolutions=(256,),
            dataset=f"folder:{folder}",
            prompts=("box",),
            limit=1,
        ),
        tmp_path / "sweep.csv",
        progress=False,
    )
    assert list(df["status"]) == ["ok"] and 0 <= float(df["iou"].iloc[0]) <= 1


def test_decoder_only_trains_only_the_decoder(folder):
    start = snapshot(bl.build_sam("tiny"))
    result = finetune(tiny_cfg(folder, tune="decoder", lr=1e-3), None, progress=False)
    end = result.model.state_dict()
    for k, v in start.items():
        changed = not torch.equal(v, end[k])
        if k.startswith("mask_decoder.") and k.endswith("weight") and "norm" not in k:
            continue  # trained (most of them move)
        if not k.startswith("mask_decoder."):
            assert not changed, f"frozen {k} changed"
    assert any(not torch.equal(start[k], end[k]) for k in start if k.startswith("mask_decoder."))
    assert result.trainable == {"mask_decoder": sum(
        p.numel() for p in bl.build_sam("tiny").mask_decoder.parameters())}  # fmt: skip


def test_lora_trains_only_its_adapters_and_merges_into_the_global_qkv(folder):
    start = snapshot(bl.build_sam("tiny"))
    result = finetune(tiny_cfg(folder, tune="lora", lr=1e-2, lora_rank=4), None, progress=False)
    assert result.lora_targets == [
        "image_encoder.blocks.2.attn.qkv",
        "image_encoder.blocks.5.attn.qkv",
    ]
    state = result.model.state_dict()
    lora = [k for k in state if parameter_role(k) == "lora"]
    assert lora and result.trainable == {"lora": sum(state[k].numel() for k in lora)}
    for k, v in state.items():  # every base weight is the starting one
        if parameter_role(k) != "lora":
            plain = k.replace(".base_layer", "")
            assert torch.equal(v, start[plain]), f"frozen {k} changed"
    assert any(k.endswith("lora_B.default.weight") and state[k].abs().sum() > 0 for k in lora)
    merged, learned = export_state(result.model)
    assert set(merged) == set(start) and not learned
    changed = sorted(k for k in start if not torch.equal(start[k], merged[k]))
    assert changed == [f"image_encoder.blocks.{i}.attn.qkv.weight" for i in (2, 5)]
    # merged: W + (alpha / r) B A, exactly what the adapters added
    b = [k for k in lora if "blocks.2" in k]
    a_w = state[next(k for k in b if "lora_A" in k)]
    b_w = state[next(k for k in b if "lora_B" in k)]
    expected = start["image_encoder.blocks.2.attn.qkv.weight"] + (16.0 / 4) * b_w @ a_w
    assert torch.allclose(merged["image_encoder.blocks.2.attn.qkv.weight"], expected, atol=1e-6)


def test_basam_tune_trains_only_the_gains(folder):
    start = snapshot(bl.build_sam("tiny"))
    result = finetune(tiny_cfg(folder, tune="basam", lr=0.05), None, progress=False)
    merged, learned = export_state(result.model)
    assert sorted(learned) == [f"image_encoder.blocks.{i}.attn.basam_gain" for i in (2, 5)]
    assert any(float(v) != 1.0 for v in learned.values())
    assert all(torch.equal(start[k], merged[k]) for k in start)


def test_resume_gives_bit_identical_weights(tmp_path, folder):
    cfg = tiny_cfg(folder, tune="full", epochs=2, lr=1e-3, accumulate=2)
    whole = finetune(cfg, tmp_path / "a", progress=False)
    first = finetune(cfg, tmp_path / "b", progress=False, stop_after=1, save_every=1)
    assert first.epoch == 0 and first.step == 1
    resumed = finetune(cfg, tmp_path / "b", progress=False)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.best == resumed.best
    assert [h for h in whole.history] == [h for h in resumed.history]
    with pytest.raises(UserError, match="saved by another run"):
        finetune(tiny_cfg(folder, tune="full", epochs=3), tmp_path / "b", progress=False)


def test_accumulation_plans_whole_steps():
    cfg = FinetuneConfig(model="tiny", dataset="x", batch_size=2, accumulate=2)
    plan = epoch_batches(list(range(7)), 0, cfg)
    assert [len(s) for s in plan] == [2, 2] and sum(len(b) for s in plan for b in s) == 7
    assert plan == epoch_batches(list(range(7)), 0, cfg) != epoch_batches(list(range(7)), 1, cfg)


def test_bad_input_is_one_line(tmp_path, folder, capsys):
    tiny = tmp_path / "weights" / "sam_vit_b_000000.pth"  # a tiny SAM under a ViT-B name
    tiny.parent.mkdir()
    torch.save(bl.build_sam("tiny").state_dict(), tiny)
    other = tmp_path / "other.pth"  # another family's checkpoint: no image_encoder.* keys
    torch.save({"trunk.weight": torch.zeros(2)}, other)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ["--dataset", f"folder:{tmp_path / 'missing'}", "--init", "tiny"],
        ["--dataset", f"folder:{empty}", "--init", "tiny"],
        ["--dataset", f"folder:{folder}", "--init", "vit_b", "--checkpoint", str(tiny)],
        ["--dataset", f"folder:{folder}", "--init", "vit_b", "--checkpoint", str(other)],
        ["--dataset", f"folder:{folder}", "--init", str(other)],
        ["--dataset", f"folder:{folder}", "--init", "tiny", "--tune", "basam", "--preset", "scale"],
        ["--dataset", f"folder:{folder}", "--init", "tiny", "--device", "cuda:7"],
    ]
    for argv in cases:
        run_dir = tmp_path / "run"
        code = main(["train", *argv, "--run-dir", str(run_dir), "--epochs", "1"])
        err = capsys.readouterr().err.strip()
        assert code == 2, (argv, err)
        assert "\n" not in err and "Traceback" not in err, (argv, err)
        assert not run_dir.exists(), argv
        shutil.rmtree(run_dir, ignore_errors=True)


def test_official_model_without_weights_is_refused(tmp_path, folder, monkeypatch, capsys):
    monkeypatch.delenv("BASAM_SAM_CHECKPOINT", raising=False)
    code = main(["train", "--dataset", f"folder:{folder}", "--init", "vit_b",
                 "--run-dir", str(tmp_path / "r")])  # fmt: skip
    assert code == 2 and "--random-weights" in capsys.readouterr().err


def test_official_weights_come_from_the_environment(tmp_path, folder, monkeypatch, capsys):
    """No --checkpoint: an official model takes $BASAM_SAM_CHECKPOINT (said on stderr); with
    --random-weights the variable is ignored and no weights are loaded."""
    import argparse

    from basam_lite.finetune import config_from_args
    from basam_lite.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)  # train's options, fine-tuning's among them
    monkeypatch.setenv("BASAM_SAM_CHECKPOINT", str(tmp_path / "sam_vit_b_01ec64.pth"))
    cfg = config_from_args(parser.parse_args(["--dataset", f"folder:{folder}", "--init", "vit_b"]))
    assert cfg.checkpoint == str(tmp_path / "sam_vit_b_01ec64.pth")
    assert "BASAM_SAM_CHECKPOINT" in capsys.readouterr().err
    args = ["--dataset", f"folder:{folder}", "--init", "vit_b", "--random-weights"]
    assert config_from_args(parser.parse_args(args)).checkpoint is None
    tiny = ["--dataset", f"folder:{folder}", "--init", "tiny"]
    assert config_from_args(parser.parse_args(tiny)).checkpoint is None


def test_one_writer_and_no_foreign_file_replaced(tmp_path, folder, capsys):
    """A second fine-tuning into a held run folder is refused; --out, its card and its BA-SAM
    file never replace a file this project did not write; both before any work."""
    from basam_lite.outputs import hold_folder

    run_dir = tmp_path / "run"
    base = ["train", "--dataset", f"folder:{folder}", "--init", "tiny", "--epochs", "1",
            "--batch-size", "1", "--limit", "3", "--val-fraction", "0.34", "--size", "256",
            "--run-dir", str(run_dir)]  # fmt: skip
    lock = hold_folder(run_dir)  # another process's run
    try:
        assert main([*base, "--out", str(tmp_path / "a.pth")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another run is writing" in err, err
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
        assert not (tmp_path / "a.pth").exists()
    finally:
        lock.release()
    for name in ("notes.pth", "notes.md", "notes.basam.pt"):
        foreign = tmp_path / name
        foreign.write_text("the user's own file\n")
        assert main([*base, "--out", str(tmp_path / "notes.pth")]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{foreign} exists and is not" in err, err
        assert foreign.read_text() == "the user's own file\n"
        foreign.unlink()
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing trained
    # Its own outputs are replaced by a rerun.
    out = tmp_path / "ft.pth"
    assert main([*base, "--out", str(out)]) == 0
    shutil.rmtree(run_dir)
    assert main([*base, "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".md").read_text().startswith("# ")
