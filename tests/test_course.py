"""The notebooks' model switch, ``basam_lite.course`` (issue 27): which model, which budget.

Models: the bundled ``tiny-vanilla``; a random-weight tiny SAM saved to a file; a random-weight
ViT-B checkpoint file (``write_random_checkpoint``), loaded through ``weights.fetch`` and
``build_sam`` as a downloaded one is. Downloads are forbidden (``BASAM_OFFLINE=1``) and the
cache is a temporary folder, so nothing here touches the network.
"""

from __future__ import annotations

import pytest
import torch

from basam_lite import course
from basam_lite.course import BUDGETS, budget_for, course_model, write_random_checkpoint
from basam_lite.errors import UserError
from basam_lite.models import build_sam


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    for var in (course.MODEL_ENV, course.BUDGET_ENV, "BASAM_SAM_CHECKPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BASAM_OFFLINE", "1")
    monkeypatch.setenv("BASAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BASAM_THREADS", "1")


def test_budget_rule():
    assert budget_for(256, "cpu") is BUDGETS["full"]  # tiny: full everywhere
    assert budget_for(1024, "cuda") is BUDGETS["full"]  # a real SAM on a GPU
    assert budget_for(1024, "cpu") is BUDGETS["cpu"]
    assert budget_for(1024, "cuda", "test") is BUDGETS["test"]
    assert BUDGETS["full"].sides(256) == [128, 256, 512]
    assert BUDGETS["full"].sides(256, extra=4.0) == [128, 256, 512, 1024]
    assert BUDGETS["cpu"].sides(1024, extra=4.0) == [256, 512]  # no extra off the full budget
    assert BUDGETS["test"].sides(1024) == [128, 256]
    assert BUDGETS["full"].take(12) == 12 and BUDGETS["cpu"].take(12) == 4
    assert BUDGETS["test"].take(1) == 1
    assert BUDGETS["full"].steps(12) == BUDGETS["cpu"].steps(12) == 12  # a learner's run: all
    assert BUDGETS["test"].steps(12) == 2 and BUDGETS["test"].steps(1) == 1
    with pytest.raises(UserError, match="not a budget"):
        budget_for(1024, "cpu", "huge")


def test_default_is_bundled_tiny_vanilla():
    cm = course_model()
    sam, name, budget = cm
    assert name == "tiny-vanilla" and not cm.real and budget is BUDGETS["full"]
    ref = build_sam("tiny-vanilla").state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in sam.state_dict().items())
    assert "tiny SAM" in cm.summary() and "full budget" in cm.summary()


def test_env_override_loads_the_file(monkeypatch, tmp_path):
    torch.manual_seed(3)
    state = build_sam("tiny").state_dict()
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path / "mine.pth"
    torch.save(state, path)
    monkeypatch.setenv(course.MODEL_ENV, str(path))
    monkeypatch.setenv(course.BUDGET_ENV, "test")
    cm = course_model("tiny-vanilla")  # the environment wins over the notebook's cell
    assert cm.name == "tiny" and cm.description == f"tiny from {path}"
    assert cm.budget is BUDGETS["test"]
    assert all(torch.equal(v, state[k]) for k, v in cm.sam.state_dict().items())
    monkeypatch.delenv(course.MODEL_ENV)
    monkeypatch.setenv("BASAM_SAM_CHECKPOINT", str(path))  # the older variable still works
    assert course_model().description == f"tiny from {path}"


def test_random_vit_b_through_the_checkpoint_path(tmp_path):
    path = write_random_checkpoint("vit_b", tmp_path / "random_vit_b.pth")
    cm = course_model(str(path))
    assert cm.name == "vit_b" and cm.real and cm.device.type == "cpu"
    assert cm.budget is BUDGETS["cpu"] and cm.budget.sides(1024) == [256, 512]
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in cm.sam.state_dict().items())


def test_registry_name_goes_through_fetch(monkeypatch):
    # offline with an empty cache: fetch's own one-line refusal (URL and where to put the file)
    with pytest.raises(UserError) as info:
        course_model("vit_b")
    message = str(info.value)
    assert "\n" not in message and "sam_vit_b_01ec64.pth" in message


def test_bad_names_are_one_line():
    with pytest.raises(UserError, match="neither a registered checkpoint"):
        course_model("vit_q")
    for other_family in ("mobile_sam", "sam2.1_hiera_tiny"):  # refused before any download
        with pytest.raises(UserError, match="segment_anything models") as info:
            course_model(other_family)
        assert "\n" not in str(info.value) and "The SAM family" in str(info.value)


def test_random_checkpoint_has_no_all_zero_tables(tmp_path):
    path = write_random_checkpoint("vit_b", tmp_path / "random_vit_b.pth", seed=1)
    state = torch.load(path, weights_only=True)
    assert state["image_encoder.pos_embed"].std() > 0.01  # SAM's init leaves it at zero
    assert state["image_encoder.blocks.2.attn.rel_pos_h"].abs().max() > 0
    assert not [k for k, v in state.items() if v.is_floating_point() and not v.any()]
