"""Exercise checkers of notebooks 01, 05, 06 and 07: each accepts the solution's answer and
rejects a wrong one (answers computed as in ``notebooks/solutions/NN_*.md``)."""

from __future__ import annotations

import numpy as np
import torch

import basam_lite as bl
from basam_lite.datasets import Prompt
from basam_lite.exercises import Verdict, nb01, nb05, nb06, nb07
from basam_lite.sweep import SweepConfig

# --- notebook 01: quick start ----------------------------------------------------------------


def test_nb01_check_tokens_prediction(capsys) -> None:
    measured = (1024 // 16) ** 2
    assert nb01.check_tokens_prediction(4096, measured, base_tokens=256)
    capsys.readouterr()
    assert not nb01.check_tokens_prediction(1024, measured, base_tokens=256)
    assert "4 x the base tokens" in capsys.readouterr().out
    assert not nb01.check_tokens_prediction(64, measured, base_tokens=256)
    assert "one side" in capsys.readouterr().out
    assert not nb01.check_tokens_prediction(None, measured)


def test_nb01_check_mask_iou_accepts_library_and_rejects_mistakes(capsys) -> None:
    assert nb01.check_mask_iou(bl.metrics.mask_iou)

    def inter(p, g):
        return np.count_nonzero(np.asarray(p) & np.asarray(g))

    def dice(p, g):
        s = np.count_nonzero(p) + np.count_nonzero(g)
        return 2 * inter(p, g) / s if s else 1.0

    def recall(p, g):
        return inter(p, g) / np.count_nonzero(g) if np.count_nonzero(g) else 1.0

    def nan_on_empty(p, g):
        with np.errstate(invalid="ignore"):
            return np.float64(inter(p, g)) / np.count_nonzero(np.asarray(p) | np.asarray(g))

    capsys.readouterr()
    for wrong, why in [(dice, "Dice"), (recall, "recall"), (nan_on_empty, "empty")]:
        assert not nb01.check_mask_iou(wrong)
        out = capsys.readouterr().out
        assert why in out and "case" in out, out


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


def _iou_at(set_size=True, render=True, kind="box", restore=True):
    """An ``iou_at`` as a learner might write it; the defaults are the right one."""
    from basam_lite.evaluation import evaluation_table

    def iou_at(model, size, n):
        if set_size:
            bl.set_input_size(model, size)
        extra = {"size": size} if render else {}
        table = evaluation_table(model, n=n, kinds=(kind,), **extra)
        if restore:
            bl.restore_input_size(model)
        return table[f"iou_{kind}"].mean()

    return iou_at


def test_nb07_check_iou_at_runs_the_learners_code_against_the_library(capsys) -> None:
    assert nb07.check_iou_at(_iou_at())
    assert "left as found" in capsys.readouterr().out
    cases = [
        (_iou_at(restore=False), "the model was left at 384 px"),
        (_iou_at(set_size=False), "still ran at its base size"),
        (_iou_at(render=False), "rendered at the base size"),
        (_iou_at(kind="point"), "point prompt"),
        (lambda model, size, n: None, "not the mean box IoU"),
        (lambda model, size, n: 1 / 0, "raised ZeroDivisionError"),
    ]
    for learner, hint in cases:
        assert not nb07.check_iou_at(learner)
        out = capsys.readouterr().out
        assert hint in out, out
    # the answer is never printed: the library's value at either size
    from basam_lite.exercises.nb07 import _iou_at_reference

    torch.manual_seed(0)
    model = bl.apply_basam(bl.build_sam("tiny"), bl.BASAMConfig.paper())
    want = [_iou_at_reference(model, s, 2) for s in nb07.IOU_AT_SIZES]
    nb07.check_iou_at(_iou_at(kind="point"))
    out = capsys.readouterr().out
    assert not any(f"{w:.3f}" in out for w in want)


def test_checkers_return_verdicts() -> None:
    v = nb05.check_self_weight(None)
    assert isinstance(v, Verdict) and not v and repr(v).startswith("Not yet: ")
