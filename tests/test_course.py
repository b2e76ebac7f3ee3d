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


def test_resolve_accepts_every_registry_name_of_every_family(monkeypatch, tmp_path):
    """Each registry name resolves to a model build_sam builds, of the entry's own family and
    architecture, through weights.fetch (faked here: no network), before anything is built."""
    from basam_lite import weights
    from basam_lite.encoders.specs import MODELS
    from basam_lite.weights import REGISTRY

    fetched = []

    def fake_fetch(item):
        fetched.append(item)
        return tmp_path / item.name.replace("/", "--")

    monkeypatch.setattr(weights, "fetch", fake_fetch)
    families = set()
    for registry_name, item in REGISTRY.items():
        name, path = course._resolve(registry_name)
        got = fetched[-1]
        families.add(item.family)
        assert name in MODELS, registry_name
        if item.family == "hf" and item.model == "Sam2Model":  # the same weights as Meta's file
            expected = "sam2.1_hiera_" + registry_name.split("hiera-")[1].replace("-", "_")
            assert (name, got.name, got.family) == (expected, expected, "sam2")
            continue
        assert got is item and path == tmp_path / registry_name.replace("/", "--")
        assert MODELS[name].family == item.family
        if item.family == "segment_anything":
            assert name == registry_name  # vit_b, vit_l, vit_h
        if item.family == "sam2":
            assert name == item.filename.removesuffix(".pt") == registry_name
        if item.family == "mobilesam":
            assert name == "mobilesam"  # the official TinyViT-5M, mobile_sam.pt's layout
        if item.family == "hf":
            arch = {"base": "vit_b", "large": "vit_l", "huge": "vit_h"}[item.name.split("-")[-1]]
            assert name == f"hf-{arch}"
    assert families == {"segment_anything", "sam2", "mobilesam", "hf"}
    monkeypatch.undo()
    with pytest.raises(UserError) as info:  # an unknown name: one line naming the choices
        course._resolve("sam3_hiera_tiny")
    assert "\n" not in str(info.value) and "sam2.1_hiera_tiny" in str(info.value)


@pytest.mark.parametrize(("name", "filename"), [("sam2.1_hiera_tiny", "sam2.1_hiera_tiny.pt"),
                                                ("mobile_sam", "mobile_sam.pt")])  # fmt: skip
def test_other_families_are_fetched_as_vit_b_is(name, filename):
    # offline with an empty cache: fetch's one-line refusal names the file to put by hand
    with pytest.raises(UserError) as info:
        course_model(name)
    assert "\n" not in str(info.value) and filename in str(info.value)


def test_random_sam2_file_recognised_from_its_keys(tmp_path, capsys):
    pytest.importorskip("sam2")
    path = write_random_checkpoint("sam2.1_hiera_tiny", tmp_path / "random_sam2.1_tiny.pt")
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"model"}  # the released files' layout
    cm = course_model(str(path))
    assert (cm.name, cm.family, cm.real) == ("sam2.1_hiera_tiny", "sam2", True)
    assert cm.budget is BUDGETS["cpu"] and "a real-size SAM" in cm.summary()
    assert all(torch.equal(v, saved["model"][k]) for k, v in cm.sam.state_dict().items())
    trunk = cm.sam.image_encoder.trunk  # the sam2 package's own Hiera, read directly
    assert cm.global_blocks == list(trunk.global_att_blocks)
    assert cm.heads == trunk.blocks[trunk.global_att_blocks[0]].attn.num_heads
    assert cm.global_stride == 16  # stage 3 of Hiera: patch stride 4, then two 2x poolings
    sam1, description = cm.sam1_for("Section 9", "pos_embed")
    assert description == "tiny-vanilla" and hasattr(sam1.image_encoder, "pos_embed")
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "Section 9" in line and "sam2.1_hiera_tiny (sam2)" in line


def test_random_mobilesam_files_recognised_from_their_shapes(tmp_path, capsys):
    pytest.importorskip("mobile_sam")
    for name in ("mobilesam", "mobilesam-tiny"):
        path = write_random_checkpoint(name, tmp_path / f"random_{name}.pt")
        cm = course_model(str(path))
        saved = torch.load(path, weights_only=True)
        assert (cm.name, cm.family) == (name, "mobilesam")
        assert all(torch.equal(v, saved[k]) for k, v in cm.sam.state_dict().items())
    blocks = [b for layer in cm.sam.image_encoder.layers[1:] for b in layer.blocks]
    assert cm.global_blocks == list(range(len(blocks)))  # no global block: every block
    assert cm.heads == blocks[-1].attn.num_heads
    stand_in = cm.global_for("Notebook 03")  # the stated rule for a family without one
    assert (stand_in.name, stand_in.family, stand_in.real) == (
        "tiny-vanilla",
        "segment_anything",
        False,
    )
    enc = stand_in.sam.image_encoder  # segment_anything's own blocks: window_size 0 is global
    assert stand_in.global_blocks == [i for i, b in enumerate(enc.blocks) if b.window_size == 0]
    assert stand_in.budget is BUDGETS["full"]
    ref = build_sam("tiny-vanilla").state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in stand_in.sam.state_dict().items())
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "Notebook 03" in line and "has none" in line
    vit = course_model("tiny-vanilla")
    assert vit.global_for("x") is vit


def test_small_sam2_file_is_not_called_real(tmp_path):
    pytest.importorskip("sam2")
    path = write_random_checkpoint("sam2-tiny", tmp_path / "small.pt")
    cm = course_model(str(path))
    assert (cm.name, cm.real, cm.budget) == ("sam2-tiny", False, BUDGETS["full"])
    assert "a tiny sam2 model" in cm.summary()
    sam1, description = cm.sam1_for("x", "y")
    assert description == "tiny-vanilla" and hasattr(sam1.image_encoder, "pos_embed")
    vit = course_model("tiny-vanilla")
    assert vit.sam1_for("x", "y")[0] is vit.sam  # a SAM 1 runs its own lesson


def test_unrecognised_file_is_one_line(tmp_path):
    path = tmp_path / "weird.pt"
    torch.save({"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(7, 3, 7, 7)}, path)
    with pytest.raises(UserError) as info:
        course_model(str(path))
    assert "\n" not in str(info.value) and "no registered architecture" in str(info.value)


def test_random_checkpoint_has_no_all_zero_tables(tmp_path):
    path = write_random_checkpoint("vit_b", tmp_path / "random_vit_b.pth", seed=1)
    state = torch.load(path, weights_only=True)
    assert state["image_encoder.pos_embed"].std() > 0.01  # SAM's init leaves it at zero
    assert state["image_encoder.blocks.2.attn.rel_pos_h"].abs().max() > 0
    assert not [k for k, v in state.items() if v.is_floating_point() and not v.any()]


def test_bundled_tiny_sam2_is_taken_as_bundled():
    from basam_lite.models import tiny_checkpoint_path

    pytest.importorskip("sam2")
    if not tiny_checkpoint_path("tiny-sam2-vanilla").exists():
        pytest.skip("data/checkpoints/tiny-sam2-vanilla.pt is not in this checkout")
    cm = course_model("tiny-sam2-vanilla")
    assert (cm.name, cm.family, cm.real, cm.budget) == (
        "tiny-sam2-vanilla",
        "sam2",
        False,
        BUDGETS["full"],
    )
    assert cm.description == "tiny-sam2-vanilla" and "bundled tiny sam2 model" in cm.summary()
    ref = build_sam("tiny-sam2-vanilla").state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in cm.sam.state_dict().items())
