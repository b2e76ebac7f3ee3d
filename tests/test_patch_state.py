"""Patch state: patched models survive deepcopy, pickle and torch.save, and remove_basam
restores the original exactly."""

from __future__ import annotations

import copy
import io
import pickle
from pathlib import Path

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT, Sam
from segment_anything.modeling.image_encoder import Attention

import basam_lite as bl
from basam_lite.patch import BASAMConfig, patch_config
from basam_lite.patch_state import block_parameter, block_patch, encoder_patch

PRESETS = ("vanilla", "scale", "bias", "paper", "official")


def _encode(sam: Sam, size: int) -> torch.Tensor:
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return sam.image_encoder(x)


def _round_trip(sam: Sam, how: str, tmp_path: Path) -> Sam:
    """The model through deepcopy, pickle or a whole-object torch.save / torch.load (what a
    user does to keep a patched model; the library itself never loads pickles)."""
    if how == "deepcopy":
        return copy.deepcopy(sam)
    if how == "pickle":
        buffer = io.BytesIO()
        pickle.dump(sam, buffer)
        return pickle.loads(buffer.getvalue())
    path = tmp_path / "model.pt"
    torch.save(sam, path)
    loaded = torch.load(path, weights_only=False)
    path.unlink()
    return loaded


def _check_round_trips(
    sam: Sam,
    size: int,
    tmp_path: Path,
    ways: tuple[str, ...] = ("deepcopy", "pickle", "torch.save"),
) -> None:
    want = _encode(sam, size)
    config = patch_config(sam)
    for how in ways:
        twin = _round_trip(sam, how, tmp_path)
        assert patch_config(twin) == config, how
        assert bl.input_size(twin) == bl.input_size(sam), how
        assert torch.equal(_encode(twin, size), want), how
        assert twin.state_dict().keys() == sam.state_dict().keys(), how
        bl.remove_basam(twin)
        bl.restore_input_size(twin)
        assert type(twin) is Sam and type(twin.image_encoder) is ImageEncoderViT, how
        assert all(type(b.attn) is Attention for b in twin.image_encoder.blocks), how


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("size", [256, 384])
def test_tiny_round_trips(tiny_sam, preset: str, size: int, tmp_path) -> None:
    bl.set_input_size(tiny_sam, size)
    bl.apply_basam(tiny_sam, BASAMConfig.preset(preset))
    if preset == "official":
        with torch.no_grad():  # learned values must travel too
            for b in tiny_sam.image_encoder.blocks:
                block_parameter(b.attn, "rel_pos_coef").fill_(0.37)
    _check_round_trips(tiny_sam, size, tmp_path)


def test_tiny_round_trip_of_a_learnable_gain_and_a_resized_unpatched_model(
    tiny_sam, tmp_path
) -> None:
    bl.apply_basam(tiny_sam, BASAMConfig.paper().with_(learnable_gain=True))
    _check_round_trips(tiny_sam, 256, tmp_path)
    bl.remove_basam(tiny_sam)
    bl.set_input_size(tiny_sam, (192, 128))
    x = torch.rand(1, 3, 192, 128)
    with torch.no_grad():
        want = tiny_sam.image_encoder(x)
    twin = copy.deepcopy(tiny_sam)
    with torch.no_grad():
        assert torch.equal(twin.image_encoder(x), want)
    assert bl.input_size(twin) == (192, 128)


@pytest.fixture(scope="module")
def vit_b() -> Sam:
    torch.manual_seed(0)
    return bl.build_sam("vit_b")  # random weights: no checkpoint


@pytest.mark.parametrize("preset", PRESETS)
def test_vit_b_round_trips(vit_b, preset: str, tmp_path) -> None:
    """A random-weight ViT-B at 256 px (one small input). The official rule refuses inputs
    below its training size, so that preset is told the 256 px grid is its training size."""
    config = BASAMConfig.preset(preset)
    if preset == "official":
        config = config.with_(train_keys=16 * 16)
    bl.set_input_size(vit_b, 256)
    bl.apply_basam(vit_b, config)
    try:
        _check_round_trips(vit_b, 256, tmp_path, ways=("deepcopy", "torch.save"))
    finally:
        bl.remove_basam(vit_b)
        bl.restore_input_size(vit_b)


def test_remove_restores_classes_parameters_and_outputs(tiny_sam) -> None:
    with torch.no_grad():
        for b in tiny_sam.image_encoder.blocks:
            b.attn.rel_pos_h.normal_()
    state = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    params = [id(p) for p in tiny_sam.parameters()]
    want = _encode(tiny_sam, 256)
    for preset in PRESETS:
        bl.set_input_size(tiny_sam, 384)
        bl.apply_basam(tiny_sam, BASAMConfig.preset(preset))
        assert type(tiny_sam.image_encoder.blocks[0].attn) is not Attention
        bl.remove_basam(tiny_sam)
        bl.restore_input_size(tiny_sam)
        assert type(tiny_sam) is Sam and type(tiny_sam.image_encoder) is ImageEncoderViT
        assert all(type(b.attn) is Attention for b in tiny_sam.image_encoder.blocks)
        assert encoder_patch(tiny_sam.image_encoder) is None
        assert all(block_patch(b.attn) is None for b in tiny_sam.image_encoder.blocks)
        now = tiny_sam.state_dict()
        assert now.keys() == state.keys()
        assert all(torch.equal(now[k], state[k]) for k in state)
        assert [id(p) for p in tiny_sam.parameters()] == params
        assert torch.equal(_encode(tiny_sam, 256), want)
