"""apply_basam / remove_basam against the unpatched model and an explicit-softmax reference."""

from __future__ import annotations

import pytest
import torch
from reference import expected_terms, reference_attention

import basam_lite as bl
from basam_lite.patch import BASAMConfig, patch_config
from basam_lite.patch_state import block_patch

PRESETS = ["vanilla", "scale", "bias", "paper", "official"]


def randomise_rel_pos(sam) -> None:
    """Trained SAMs have non-zero rel-pos tables; make the random tiny model's non-zero too."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for blk in sam.image_encoder.blocks:
            blk.attn.rel_pos_h.copy_(0.3 * torch.randn(blk.attn.rel_pos_h.shape, generator=g))
            blk.attn.rel_pos_w.copy_(0.3 * torch.randn(blk.attn.rel_pos_w.shape, generator=g))


@pytest.mark.parametrize("size", [256, 384, (256, 384)])
def test_vanilla_patch_equals_unpatched(tiny_sam, size) -> None:
    randomise_rel_pos(tiny_sam)
    bl.set_input_size(tiny_sam, size)
    h, w = bl.input_size(tiny_sam)
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        ref = tiny_sam.image_encoder(x)
        bl.apply_basam(tiny_sam, BASAMConfig.vanilla())
        out = tiny_sam.image_encoder(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("grid", [(16, 16), (24, 24), (12, 20)])
def test_block_attention_equals_explicit_softmax(tiny_sam, preset: str, grid) -> None:
    """Each patched global and windowed attention equals the explicit reference (1e-4)."""
    randomise_rel_pos(tiny_sam)
    config = BASAMConfig.preset(preset)
    enc = tiny_sam.image_encoder
    bl.apply_basam(tiny_sam, config)
    for index in (0, 2):  # 0 windowed (4x4 windows), 2 global
        blk = enc.blocks[index]
        attn = blk.attn
        shape = grid if blk.window_size == 0 else (blk.window_size, blk.window_size)
        x = torch.randn(2, *shape, enc.patch_embed.proj.out_channels)
        active = config.blocks == "all" or blk.window_size == 0
        train = 256 if blk.window_size == 0 else blk.window_size**2
        n = shape[0] * shape[1]
        if config.scale == "official" and active and n < train:
            with pytest.raises(ValueError, match="official BA-SAM scale cannot run"):
                attn(x)
            continue
        lam, slopes, coef = expected_terms(config, attn.num_heads, n, train, active)
        with torch.no_grad():
            got = attn(x)
            want = reference_attention(attn, x, lam, slopes, config.metric, coef)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev", "flat"])
@pytest.mark.parametrize("path", ["dense", "chunked"])
def test_every_metric_and_path(tiny_sam, metric: str, path: str) -> None:
    randomise_rel_pos(tiny_sam)
    config = BASAMConfig.paper().with_(metric=metric, gain=0.7, path=path)
    bl.apply_basam(tiny_sam, config)
    attn = tiny_sam.image_encoder.blocks[2].attn
    x = torch.randn(1, 10, 14, attn.qkv.in_features)
    lam, slopes, _ = expected_terms(config, attn.num_heads, 140, 256)
    with torch.no_grad():
        torch.testing.assert_close(
            attn(x), reference_attention(attn, x, lam, slopes, metric), atol=1e-4, rtol=0
        )


def test_remove_restores_exactly(tiny_sam) -> None:
    randomise_rel_pos(tiny_sam)
    x = torch.randn(1, 3, 256, 256)
    before = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    with torch.no_grad():
        ref = tiny_sam.image_encoder(x)
        for preset in PRESETS:
            bl.apply_basam(tiny_sam, BASAMConfig.preset(preset))
            tiny_sam.image_encoder(x)
            bl.remove_basam(tiny_sam)
            assert not bl.is_patched(tiny_sam)
            assert "forward" not in tiny_sam.image_encoder.__dict__
            assert all("forward" not in b.attn.__dict__ for b in tiny_sam.image_encoder.blocks)
            torch.testing.assert_close(tiny_sam.image_encoder(x), ref, atol=0, rtol=0)
    after = tiny_sam.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_set_attention_path_keeps_the_patch_and_its_learned_values(tiny_sam) -> None:
    from basam_lite.patch import set_attention_path

    with pytest.raises(ValueError, match="no BA-SAM patch to switch"):
        set_attention_path(tiny_sam, "dense")
    randomise_rel_pos(tiny_sam)
    config = BASAMConfig.paper().with_(learnable_gain=True, path="dense")
    bl.apply_basam(tiny_sam, config)
    gain = tiny_sam.image_encoder.blocks[2].attn.basam_gain
    with torch.no_grad():
        gain.fill_(0.6)  # a "learned" value that re-applying the preset would reset to 1
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        dense = tiny_sam.image_encoder(x)
        set_attention_path(tiny_sam, "chunked")
        chunked = tiny_sam.image_encoder(x)
    assert patch_config(tiny_sam) == config.with_(path="chunked")
    assert all(block_patch(b.attn).config.path == "chunked" for b in tiny_sam.image_encoder.blocks)
    assert tiny_sam.image_encoder.blocks[2].attn.basam_gain is gain
    assert float(gain.detach()) == pytest.approx(0.6)
    torch.testing.assert_close(chunked, dense, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="attention path"):
        set_attention_path(tiny_sam, "fastest")


def test_zero_shot_presets_add_no_state(tiny_sam) -> None:
    keys = set(tiny_sam.state_dict())
    n_params = len(list(tiny_sam.parameters()))
    for preset in ["vanilla", "scale", "bias", "paper"]:
        bl.apply_basam(tiny_sam, BASAMConfig.preset(preset))
        assert set(tiny_sam.state_dict()) == keys
        assert len(list(tiny_sam.parameters())) == n_params


def test_finetuning_configs_add_only_what_they_name(tiny_sam) -> None:
    keys = set(tiny_sam.state_dict())
    bl.apply_basam(tiny_sam, BASAMConfig.official())
    added = set(tiny_sam.state_dict()) - keys
    assert added == {f"image_encoder.blocks.{i}.attn.basam_rel_pos_coef" for i in range(6)}
    bl.apply_basam(tiny_sam, BASAMConfig.paper().with_(learnable_gain=True))
    added = set(tiny_sam.state_dict()) - keys
    assert added == {
        "image_encoder.blocks.2.attn.basam_gain",
        "image_encoder.blocks.5.attn.basam_gain",
    }
    bl.remove_basam(tiny_sam)
    assert set(tiny_sam.state_dict()) == keys


def test_state_dict_round_trip(tmp_path) -> None:
    """A fine-tuned official model saves and loads into a freshly patched model exactly."""
    src = bl.build_sam("tiny")
    bl.apply_basam(src, BASAMConfig.official())
    with torch.no_grad():
        for blk in src.image_encoder.blocks:
            blk.attn.basam_rel_pos_coef.fill_(0.37)
            blk.attn.rel_pos_h.normal_()
    torch.save(src.state_dict(), tmp_path / "ft.pt")
    dst = bl.apply_basam(bl.build_sam("tiny"), BASAMConfig.official())
    dst.load_state_dict(torch.load(tmp_path / "ft.pt", weights_only=True))
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(dst.image_encoder(x), src.image_encoder(x), atol=0, rtol=0)


def test_official_preset_behaviour(tiny_sam) -> None:
    randomise_rel_pos(tiny_sam)
    enc = tiny_sam.image_encoder
    saved = enc.blocks[0].attn.rel_pos_h.clone()
    bl.apply_basam(tiny_sam, BASAMConfig.official())
    # rel-pos tables dropped (zero), so the official "mask" is exactly zero before fine-tuning
    assert all(torch.all(b.attn.rel_pos_h == 0) for b in enc.blocks)
    assert all(b.attn.basam_rel_pos_coef.item() == pytest.approx(0.1) for b in enc.blocks)
    # absolute position embedding off: the output does not change when pos_embed does
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        a = enc(x)
        enc.pos_embed.add_(1.0)
        torch.testing.assert_close(enc(x), a)
        enc.pos_embed.sub_(1.0)
    # scale only where the length changes: lambda = 1 in windowed blocks at any size
    assert block_patch(enc.blocks[0].attn).scale_for(16) == 1.0
    bl.remove_basam(tiny_sam)
    torch.testing.assert_close(enc.blocks[0].attn.rel_pos_h, saved, atol=0, rtol=0)


def test_official_fails_below_training_size(tiny_sam) -> None:
    bl.apply_basam(tiny_sam, BASAMConfig.official())
    with pytest.raises(ValueError, match="official BA-SAM scale cannot run"):
        bl.set_input_size(tiny_sam, 128)
    bl.remove_basam(tiny_sam)
    bl.set_input_size(tiny_sam, 192)
    with pytest.raises(ValueError, match="official BA-SAM scale cannot run"):
        bl.apply_basam(tiny_sam, BASAMConfig.official())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scale": "sqrt"}, "unknown scale mode 'sqrt'"),
        ({"bias": "alibi"}, "unknown bias mode 'alibi'"),
        ({"metric": "cosine"}, "unknown distance metric"),
        ({"blocks": "windowed"}, "unknown blocks choice"),
        ({"path": "magic"}, "unknown attention path"),
        ({"gain": -1.0}, "gain must be finite"),
        ({"train_keys": 1}, "train_keys must be None or an integer >= 2"),
        ({"learnable_gain": True}, "learnable_gain needs bias='alibi2d'"),
    ],
)
def test_bad_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BASAMConfig(**kwargs)


def test_bad_targets() -> None:
    with pytest.raises(ValueError, match="unknown BA-SAM preset 'fancy'"):
        BASAMConfig.preset("fancy")
    with pytest.raises(
        TypeError, match="expected a SAM-family model, image encoder or predictor, got Linear"
    ):
        bl.apply_basam(torch.nn.Linear(2, 2), BASAMConfig.paper())
    with pytest.raises(TypeError, match="config must be a BASAMConfig"):
        bl.apply_basam(bl.build_sam("tiny"), {"scale": "log_ratio"})


def test_training_gradients_flow(tiny_sam) -> None:
    bl.apply_basam(tiny_sam, BASAMConfig.paper().with_(learnable_gain=True))
    tiny_sam.train()
    out = tiny_sam.image_encoder(torch.randn(1, 3, 256, 256))
    out.square().mean().backward()
    gain = tiny_sam.image_encoder.blocks[2].attn.basam_gain
    assert gain.grad is not None and torch.isfinite(gain.grad)
    assert tiny_sam.image_encoder.blocks[2].attn.rel_pos_h.grad is not None
