"""Exercise checkers of notebooks 01, 05, 06 and 07: each accepts the solution's answer and
rejects a wrong one (answers computed as in ``notebooks/solutions/NN_*.md``)."""

from __future__ import annotations

import math

import numpy as np
import torch

import basam_lite as bl
from basam_lite.datasets import Prompt
from basam_lite.exercises import Verdict, nb01, nb05, nb06, nb07
from basam_lite.sweep import SweepConfig

# --- notebook 01: quick start ----------------------------------------------------------------


def test_nb01_check_tokens_2x(capsys) -> None:
    assert nb01.check_tokens_2x((512 // 16) ** 2)
    assert not nb01.check_tokens_2x((256 // 16) ** 2 * 2)  # doubling the side is not 2x tokens
    assert not nb01.check_tokens_2x(None)
    out = capsys.readouterr().out
    assert "Correct" in out and "Not yet" in out and "1024" not in out


def test_nb01_check_lambda_half() -> None:
    assert nb01.check_lambda_half(bl.attention_scale((128 // 16) ** 2, train_keys=256))
    assert not nb01.check_lambda_half(bl.attention_scale((128 // 16) ** 2))  # n_train 4096
    assert not nb01.check_lambda_half("0.75x")


def test_nb01_check_scaled_box(capsys) -> None:
    box = Prompt(box=np.array([32, 48, 96, 160])).scaled((256, 256), (512, 512)).box
    assert nb01.check_scaled_box(box)
    assert nb01.check_scaled_box([64, 96, 192, 320])
    capsys.readouterr()
    assert not nb01.check_scaled_box((32, 48, 96, 160))
    assert "unchanged" in capsys.readouterr().out
    assert not nb01.check_scaled_box(None)
    assert not nb01.check_scaled_box((64, 96))


# --- notebook 05: attention maps -------------------------------------------------------------


def test_nb05_check_full_map_bytes(capsys) -> None:
    n = (2048 // 16) ** 2  # ViT-H, 16 heads, 2048 px
    assert nb05.check_full_map_bytes(16 * n * n * 4)
    assert not nb05.check_full_map_bytes(16 * n * n)  # forgot the 4 bytes
    assert "4 bytes" in capsys.readouterr().out
    assert not nb05.check_full_map_bytes(12 * n * n * 4)  # ViT-B's heads
    assert "ViT-B" in capsys.readouterr().out
    assert not nb05.check_full_map_bytes(16)  # GiB
    assert "unit" in capsys.readouterr().out
    assert str(16 * n * n * 4) not in capsys.readouterr().out


def test_nb05_check_uniform_entropy() -> None:
    assert nb05.check_uniform_entropy(math.log((512 // 16) ** 2))
    assert not nb05.check_uniform_entropy(math.log2((512 // 16) ** 2))  # bits, not nats
    assert not nb05.check_uniform_entropy(None)


def test_nb05_check_self_weight() -> None:
    mask = bl.bias_mode_mask((3, 3), 1, slopes=[1.0])[0, 0, 4]  # centre token's row
    assert nb05.check_self_weight(mask.softmax(-1)[4].item())
    assert not nb05.check_self_weight(1 / 9)  # uniform: the mask ignored
    assert not nb05.check_self_weight(torch.tensor(1.0))


# --- notebook 06: zero-shot experiments -------------------------------------------------------


def test_nb06_check_row_count() -> None:
    cfg = SweepConfig(
        models=("tiny",),
        variants=("vanilla", "paper", "resize"),
        resolutions=(128, 256, 512),
        dataset="synthetic:4",
        prompts=("box",),
    )
    assert nb06.check_row_count(4 * 3 * 1 * 3 * 1, cfg)
    assert not nb06.check_row_count(4 * 3 * 3 * 2, cfg)
    sharded = SweepConfig(**{**cfg.__dict__, "shard": (1, 3)})  # images 1 only of 0..3
    assert nb06.check_row_count(1 * 3 * 1 * 3 * 1, sharded)


def test_nb06_check_shard() -> None:
    assert nb06.check_shard(10 % 4)
    assert not nb06.check_shard(10 // 25)  # contiguous blocks of 25 images
    assert not nb06.check_shard(None)


# --- notebook 07: train short, test long -------------------------------------------------------


def test_nb07_check_lambda_4x() -> None:
    assert nb07.check_lambda_4x(bl.attention_scale((1024 // 16) ** 2, train_keys=256))
    assert not nb07.check_lambda_4x(bl.attention_scale((1024 // 16) ** 2))  # n_train 4096
    assert not nb07.check_lambda_4x(4)


def test_nb07_check_scenes_seen() -> None:
    assert nb07.check_scenes_seen(24 * 8, steps=24, batch_size=8)
    assert not nb07.check_scenes_seen(24, steps=24, batch_size=8)


def test_checkers_return_verdicts() -> None:
    v = nb05.check_uniform_entropy(None)
    assert isinstance(v, Verdict) and not v and repr(v).startswith("Not yet: ")
