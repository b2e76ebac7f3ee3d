"""scripts/recipe_study.py: its studies are well-formed configs of the real training."""

import argparse
import sys
from pathlib import Path

import pytest

import basam_lite as bl
from basam_lite.models import build_tiny_sam
from basam_lite.train import TrainConfig, add_arguments, config_from_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import recipe_study


def test_first_tiny_is_the_shipped_architecture():
    assert recipe_study.FIRST_TINY == bl.TINY


@pytest.mark.parametrize("name", sorted(recipe_study.STUDIES))
def test_every_study_is_a_train_config_and_a_buildable_sam(name):
    cfg = recipe_study.study_config(name, steps=10)
    assert isinstance(cfg, TrainConfig) and cfg.steps == 10 and cfg.threads == 1
    changes = recipe_study.STUDIES[name].get("spec", {})
    assert all(getattr(cfg.spec, k) == v for k, v in changes.items())
    build_tiny_sam(cfg.spec)  # segment_anything accepts the dimensions


def test_a_two_thread_study_is_what_the_train_command_runs():
    # With threads=2 and the CLI's step count a study is the `train --variant vanilla` config,
    # so a study result can be checked against a training run's saved state.
    p = argparse.ArgumentParser()
    add_arguments(p)
    cli = config_from_args(p.parse_args(["--variant", "vanilla"]))
    assert recipe_study.study_config("recipe", cli.steps, threads=2) == cli
    per_prompt = config_from_args(p.parse_args(["--variant", "vanilla", "--per-prompt-decoder"]))
    study = recipe_study.study_config("recipe", cli.steps, threads=2, decoder_batched=False)
    assert study == per_prompt and not study.decoder_batched


def test_the_wider_decoder_study_fits_the_file_limit_in_fp16():
    spec = recipe_study.study_config("decoder-256-encoder-160", 10).spec
    # fp16 weights plus about 80 kB of state_dict keys stay under the 10 MB file limit
    assert spec.parameter_count() * 2 < 9.9e6
    assert spec != bl.TINY


def test_the_finer_grid_study_builds_8_px_patches_and_32_x_32_tokens():
    spec = recipe_study.study_config("patch-8", 10).spec
    assert spec.patch_size == 8 and spec.grid == 32 and bl.TINY.patch_size == 16
    sam = build_tiny_sam(spec)
    assert sam.image_encoder.patch_embed.proj.kernel_size == (8, 8)
    assert sam.prompt_encoder.image_embedding_size == (32, 32)
