"""SAM 2 (Hiera, the official ``sam2`` package) under BA-SAM, on random-weight models.

Models: the tiny SAM 2 (``TINY_SAM2``: Hiera embed_dim 32, heads 1-2-4-8, stages 1-2-4-2,
global blocks 4 and 6, windows 8-4-4-2, 7x7 position background, FPN width 128, 256 px base).
Sizes: 256 (native) and 384 px. SAM 2 cannot make a query-pooling block global (its own
``MultiScaleBlock.forward`` divides by the window size), so pooled queries, a query grid smaller
than the key grid, occur in windowed blocks: tested with ``blocks="all"``.
"""

from __future__ import annotations

import copy
import io
import math
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("sam2", reason="SAM 2 tests need the optional extra basam-lite[sam2]")

import basam_lite as bl
from basam_lite.encoders import adapter_for, global_blocks, sam2_models
from basam_lite.encoders.sam2 import BASAMHieraAttention, Sam2Adapter
from basam_lite.encoders.sam2_geometry import block_geometry, check_sam2_size
from basam_lite.encoders.sam2_models import (
    TINY_SAM2,
    TinySam2Spec,
    build_sam2,
    build_tiny_sam2,
)
from basam_lite.encoders.sam2_predictor import Sam2Predictor
from basam_lite.errors import UserError
from basam_lite.patch import BASAMConfig
from basam_lite.predictor import predictor_for

SIZES = (256, 384)


def _image(side: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _features(model, side: int) -> list[torch.Tensor]:
    with torch.no_grad():
        return [f.clone() for f in model.forward_image(_image(side))["backbone_fpn"]]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_sam2()


# ---------------------------------------------------------------- build and sizes


def test_tiny_configuration_is_what_the_docs_state(tiny):
    trunk = tiny.image_encoder.trunk
    assert global_blocks(tiny) == [4, 6]
    assert isinstance(adapter_for(tiny), Sam2Adapter)
    assert [b.attn.num_heads for b in trunk.blocks] == [1, 2, 2, 4, 4, 4, 4, 8, 8]
    assert [b.dim_out // b.attn.num_heads for b in trunk.blocks] == [32] * 9
    assert tiny.image_size == 256 and tuple(trunk.pos_embed.shape[-2:]) == (7, 7)
    geo = block_geometry(tiny, 256)
    assert [g.num_keys for g in geo if g.is_global] == [256, 256]  # 16 x 16 stride-16 grid
    assert [g.index for g in geo if g.q_stride == 2] == [1, 3, 7]
    assert "base size 256 px" in TINY_SAM2.describe()


@pytest.mark.parametrize("bad", [240, 272, 16, 0, -32])
def test_sizes_off_the_32_px_rule_are_refused_in_one_line(tiny, bad):
    with pytest.raises(UserError, match="multiple of 32") as e:
        check_sam2_size(tiny, bad)
    assert "\n" not in str(e.value)


def test_a_global_block_cannot_pool_queries_in_sam2_so_the_spec_refuses_it(tiny):
    from sam2.modeling.backbones.hieradet import MultiScaleBlock

    block = MultiScaleBlock(8, 16, 1, q_stride=(2, 2), window_size=0)
    with pytest.raises(ZeroDivisionError), torch.no_grad():
        block(torch.zeros(1, 4, 4, 8))
    with pytest.raises(ValueError, match="cannot be global"):
        TinySam2Spec(global_att_blocks=(3, 6))


def test_non_square_and_non_integer_sizes_are_refused(tiny):
    with pytest.raises(UserError, match="square"):
        check_sam2_size(tiny, (256, 384))
    with pytest.raises(UserError, match="whole pixels"):
        check_sam2_size(tiny, 256.0)
    assert check_sam2_size(tiny, (384, 384)) == 384


def test_the_refused_sizes_really_fail_in_sam2_itself(tiny):
    """The rule is SAM 2's: its own forward breaks at 240 px (the window tile)."""
    with pytest.raises(RuntimeError, match="size of tensor"), torch.no_grad():
        tiny.forward_image(_image(240))


def test_set_input_size_moves_what_is_fixed_at_build_and_comes_back_exactly(tiny):
    model = copy.deepcopy(tiny)
    pe = model.sam_prompt_encoder
    before = (model.image_size, pe.image_embedding_size, pe.input_image_size, pe.mask_input_size)
    bl.set_input_size(model, 384)
    assert model.image_size == 384 and model.sam_image_embedding_size == 24
    assert pe.image_embedding_size == (24, 24) and pe.input_image_size == (384, 384)
    assert pe.mask_input_size == (96, 96)
    bl.set_input_size(model, 256)
    after = (model.image_size, pe.image_embedding_size, pe.input_image_size, pe.mask_input_size)
    assert after == before and type(model.image_encoder.trunk).__name__ == "Hiera"


# ---------------------------------------------------------------- vanilla = SAM 2's own forward


@pytest.mark.parametrize("side", SIZES)
def test_vanilla_equals_sam2s_own_forward_bit_for_bit(tiny, side):
    model = copy.deepcopy(tiny)
    bl.set_input_size(model, side)
    own = _features(model, side)
    bl.apply_basam(model, BASAMConfig.vanilla())
    assert all(isinstance(b.attn, BASAMHieraAttention) for b in model.image_encoder.trunk.blocks)
    ours = _features(model, side)
    for a, b in zip(own, ours, strict=True):
        assert torch.equal(a, b)  # tolerance 0: the same SDPA call


def test_presets_change_the_output_at_another_size(tiny):
    model = copy.deepcopy(tiny)
    bl.set_input_size(model, 384)
    own = _features(model, 384)
    for name in ("scale", "bias", "paper", "paper_base", "official"):
        bl.apply_basam(model, BASAMConfig.preset(name))
        diff = max(
            (a - b).abs().max().item() for a, b in zip(own, _features(model, 384), strict=True)
        )
        assert diff > 1e-4, name
        bl.remove_basam(model)


# ---------------------------------------------------------------- block-by-block reference


def _press_slopes(heads: int) -> list[float]:
    """Press's ALiBi slopes for a power-of-two head count: 2^(-8k/heads), k = 1..heads."""
    return [2.0 ** (-8.0 * k / heads) for k in range(1, heads + 1)]


def _reference_attention(attn, x, lam, slopes, unit, metric="euclidean"):
    """Hiera attention with BA-SAM written out: qkv, 2x2 max-pooled queries placed at the centre
    of their four key cells, softmax(lam * q.k / sqrt(d) - slope * unit * dist) @ v, proj."""
    b, rows, cols, _ = x.shape
    heads = attn.num_heads
    qkv = x.reshape(b, rows * cols, -1) @ attn.qkv.weight.T + attn.qkv.bias
    qkv = qkv.reshape(b, rows * cols, 3, heads, -1)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [b, N, heads, d]
    d = q.shape[-1]
    key_pos = [(r, c) for r in range(rows) for c in range(cols)]
    if attn.q_pool is not None:
        qg = q.reshape(b, rows, cols, heads * d)
        qg = qg.reshape(b, rows // 2, 2, cols // 2, 2, heads * d).amax(dim=(2, 4))
        q_rows, q_cols = rows // 2, cols // 2
        q = qg.reshape(b, q_rows * q_cols, heads, d)
        query_pos = [(2 * r + 0.5, 2 * c + 0.5) for r in range(q_rows) for c in range(q_cols)]
    else:
        q_rows, q_cols, query_pos = rows, cols, key_pos
    qp = torch.tensor(query_pos, dtype=torch.float64)
    kp = torch.tensor(key_pos, dtype=torch.float64)
    delta = (qp[:, None, :] - kp[None, :, :]).abs()
    dist = delta.pow(2).sum(-1).sqrt() if metric == "euclidean" else delta.sum(-1)
    out = torch.empty(b, q_rows * q_cols, heads, d, dtype=torch.float64)
    for h in range(heads):
        logits = lam * (q[:, :, h].double() @ k[:, :, h].double().transpose(1, 2)) / math.sqrt(d)
        logits = logits - slopes[h] * unit * dist
        out[:, :, h] = logits.softmax(-1) @ v[:, :, h].double()
    out = out.reshape(b, q_rows, q_cols, heads * d).float()
    return out @ attn.proj.weight.T + attn.proj.bias


def _block_inputs(model, side):
    """The input of every block's attention module during one forward at ``side``."""
    seen: dict[int, torch.Tensor] = {}
    hooks = [
        blk.attn.register_forward_hook(
            lambda m, args, out, i=i: seen.__setitem__(i, (args[0].detach(), out.detach()))
        )
        for i, blk in enumerate(model.image_encoder.trunk.blocks)
    ]
    try:
        _features(model, side)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("preset", ["scale", "bias", "paper", "paper_base"])
def test_presets_equal_the_written_out_reference_block_by_block(preset):
    model = build_tiny_sam2()
    side, base = 384, 256
    bl.set_input_size(model, side)
    config = BASAMConfig.preset(preset)
    bl.apply_basam(model, config)
    seen = _block_inputs(model, side)
    blocks = model.image_encoder.trunk.blocks
    checked = 0
    for i, blk in enumerate(blocks):
        x, out = seen[i]
        if blk.window_size != 0:  # windowed blocks are untouched by the global-block presets
            continue
        rows, cols = x.shape[1:3]
        base_rows = rows * base // side
        n, n_train = rows * cols, base_rows * base_rows  # keys per softmax row, now and at base
        lam = math.log(n) / math.log(n_train) if config.scale == "log_ratio" else 1.0
        slopes = _press_slopes(blk.attn.num_heads) if config.bias == "alibi2d" else [0.0] * 8
        unit = base_rows / rows if config.mask_units == "base" else 1.0
        ref = _reference_attention(blk.attn, x, lam, slopes, unit)
        torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
        checked += 1
    assert checked == 2


def test_all_blocks_mask_follows_the_reference_in_pooled_windows():
    """blocks="all": the mask in windowed blocks, pooled windows (8 x 8 keys, 4 x 4 queries)
    included; lambda is 1 there (a window has as many keys at every size)."""
    model = build_tiny_sam2()
    bl.set_input_size(model, 384)
    bl.apply_basam(model, BASAMConfig.paper().with_(blocks="all", metric="manhattan"))
    seen = _block_inputs(model, 384)
    for i in (1, 2, 3, 7):  # pooled windowed (1, 3, 7) and plain windowed (2)
        x, out = seen[i]
        attn = model.image_encoder.trunk.blocks[i].attn
        slopes = _press_slopes(attn.num_heads)
        ref = _reference_attention(attn, x, 1.0, slopes, 1.0, metric="manhattan")
        torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


def test_official_preset_scales_by_the_integer_rule_and_drops_positions(tiny):
    model = copy.deepcopy(tiny)
    with pytest.raises(ValueError, match="official BA-SAM scale cannot run"):
        bl.set_input_size(model, 128)
        bl.apply_basam(model, BASAMConfig.official())
    bl.set_input_size(model, 512)
    bl.apply_basam(model, BASAMConfig.official())
    trunk = model.image_encoder.trunk
    assert type(trunk).__name__ == "SizedHiera"
    assert trunk._get_pos_embed((128, 128)).abs().max() == 0
    seen = _block_inputs(model, 512)
    x, out = seen[4]
    # 512 px: 32 x 32 keys = 4 x 256; official L = floor(sqrt(4)) = 2, log_256(4 * 256)
    lam = math.log(4 * 256) / math.log(256)
    ref = _reference_attention(trunk.blocks[4].attn, x, lam, [0.0] * 4, 1.0)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    bl.remove_basam(model)
    assert trunk._get_pos_embed((128, 128)).abs().max() > 0  # SAM 2's own positions are back
    bl.set_input_size(model, 256)
    assert type(trunk).__name__ == "Hiera"


# ---------------------------------------------------------------- round trips


def test_remove_basam_restores_exactly(tiny):
    model = copy.deepcopy(tiny)
    bl.set_input_size(model, 384)
    own, keys = _features(model, 384), list(model.state_dict())
    bl.apply_basam(model, BASAMConfig.paper().with_(learnable_gain=True))
    assert any(k.endswith("basam_gain") for k in model.state_dict())
    bl.remove_basam(model)
    assert list(model.state_dict()) == keys
    assert all(
        type(b.attn).__name__ == "MultiScaleAttention" for b in model.image_encoder.trunk.blocks
    )
    for a, b in zip(own, _features(model, 384), strict=True):
        assert torch.equal(a, b)


def test_state_dict_and_deepcopy_round_trips(tiny):
    model = copy.deepcopy(tiny)
    bl.set_input_size(model, 384)
    bl.apply_basam(model, BASAMConfig.paper().with_(learnable_gain=True))
    with torch.no_grad():
        model.image_encoder.trunk.blocks[4].attn.basam_gain.fill_(0.5)
    expected = _features(model, 384)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = build_tiny_sam2(seed=1)
    bl.set_input_size(other, 384)
    bl.apply_basam(other, BASAMConfig.paper().with_(learnable_gain=True))
    other.load_state_dict(torch.load(buf, weights_only=True))
    for a, b in zip(expected, _features(other, 384), strict=True):
        assert torch.equal(a, b)
    twin = copy.deepcopy(model)
    for a, b in zip(expected, _features(twin, 384), strict=True):
        assert torch.equal(a, b)
    unpickled = pickle.loads(pickle.dumps(model))  # in memory: the patch state pickles
    assert bl.patch_config(unpickled) == bl.patch_config(model)
    for a, b in zip(expected, _features(unpickled, 384), strict=True):
        assert torch.equal(a, b)
    bl.remove_basam(twin)
    assert type(model.image_encoder.trunk.blocks[4].attn) is BASAMHieraAttention


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_in_the_official_layout_loads_from_a_path(tmp_path, tiny):
    path = tmp_path / "sam2_tiny.pt"
    torch.save({"model": tiny.state_dict()}, path)
    loaded = build_sam2("sam2-tiny", path)
    for (ka, a), (kb, b) in zip(
        tiny.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(a, b)


def test_official_architecture_builds_from_the_packages_config():
    model = build_sam2("sam2.1_hiera_tiny")
    assert model.image_size == 1024 and global_blocks(model) == [5, 7, 9]
    assert [g.num_keys for g in block_geometry(model) if g.is_global] == [4096] * 3


def test_a_checkpoint_of_another_architecture_is_named(tmp_path):
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": build_sam2("sam2.1_hiera_tiny").state_dict()}, path)
    with pytest.raises(UserError, match=r"holds a sam2.1_hiera_tiny checkpoint.*'sam2-tiny'"):
        build_sam2("sam2-tiny", path)
    assert build_sam2("sam2.1_hiera_tiny", path).image_size == 1024


def test_pretrained_takes_the_released_file_from_the_weights_cache(tmp_path, tiny, monkeypatch):
    """pretrained=True asks basam_lite.weights for the file of the same name (stubbed here:
    tests never download)."""
    from basam_lite import weights

    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": build_sam2("sam2.1_hiera_tiny").state_dict()}, path)
    asked = []
    monkeypatch.setattr(weights, "fetch", lambda name, **_: asked.append(name) or path)
    assert build_sam2("sam2.1_hiera_tiny", pretrained=True).image_size == 1024
    assert asked == ["sam2.1_hiera_tiny"]
    assert weights.entry("sam2.1_hiera_tiny").family == "sam2"
    with pytest.raises(UserError, match="is random"):
        build_sam2("sam2-tiny", pretrained=True)


def test_a_sam1_checkpoint_is_refused_in_one_line(tmp_path):
    path = tmp_path / "sam1.pt"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(2, 3, 16, 16)}, path)
    with pytest.raises(UserError, match="not a SAM 2 one"):
        build_sam2("sam2-tiny", path)


def test_model_spec_reads_what_the_model_has(tiny):
    from basam_lite.encoders.specs import model_spec

    spec = model_spec("sam2-tiny")
    trunk = tiny.image_encoder.trunk
    assert spec.family == "sam2" and spec.base_hw == (256, 256) and spec.patch_size == 4
    assert spec.heads == tuple(b.attn.num_heads for b in trunk.blocks)
    assert spec.windows == tuple(b.window_size for b in trunk.blocks)
    assert spec.global_blocks == (4, 6) and spec.size_rule.endswith("multiples of 32 px")
    # keys per row at 256 px: windows 8, 8, 4, 4 (the lagging first block of stage 3), the
    # 16 x 16 grid in the global blocks, windows 4 and 2 in the last stage
    assert spec.base_keys == (64, 64, 16, 16, 256, 16, 256, 16, 4)
    large = model_spec("sam2.1_hiera_large")
    assert large.global_blocks == (23, 33, 43) and large.base_hw == (1024, 1024)
    assert {large.base_keys[i] for i in large.global_blocks} == {4096}


def test_registry_names_the_extra_when_sam2_is_missing(monkeypatch):
    from basam_lite import encoders

    real = encoders.importlib.import_module

    def no_sam2(name, *args):
        if name == "sam2" or name.startswith("sam2."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="sam2")
        return real(name, *args)

    monkeypatch.setattr(encoders.importlib, "import_module", no_sam2)
    with pytest.raises(UserError, match=r"pip install 'basam-lite\[sam2\]'") as e:
        encoders.require("sam2")
    assert "\n" not in str(e.value)


def test_missing_sam2_is_one_line_naming_the_extra(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name="sam2")

    monkeypatch.setattr(sam2_models.importlib, "import_module", missing)
    with pytest.raises(UserError, match=r"basam-lite\[sam2\]") as e:
        sam2_models.import_sam2("sam2.modeling.sam2_base")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- predictor and maps


def _prompt_outputs(predictor, image):
    predictor.set_image(image)
    box = predictor.predict(box=np.array([10, 12, 60, 50]), multimask_output=False)
    point = predictor.predict(point_coords=np.array([[30.0, 40.0]]), point_labels=np.array([1]))
    return box, point


def test_predictor_at_another_size_equals_sam2_built_at_that_size(tiny):
    """Box and point at 384 px: our predictor on the 256 px model moved to 384 equals the stock
    SAM2ImagePredictor on the same weights built at 384 px (its hard-coded 1024 px feature
    sizes set by hand: the one thing it cannot follow)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image = (np.random.default_rng(0).random((72, 90, 3)) * 255).astype(np.uint8)
    model = copy.deepcopy(tiny)
    bl.set_input_size(model, 384)
    ours = _prompt_outputs(predictor_for(model), image)
    built = build_tiny_sam2(TinySam2Spec(img_size=384))
    built.load_state_dict(tiny.state_dict())
    stock = SAM2ImagePredictor(built)
    stock._bb_feat_sizes = [(96, 96), (48, 48), (24, 24)]
    theirs = _prompt_outputs(stock, image)
    for a, b in zip(ours, theirs, strict=True):
        masks, _, low = a
        assert masks.shape[-2:] == (72, 90) and low.shape[-2:] == (96, 96)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_vanilla_predictor_at_the_native_size_equals_sam2s_own(tiny):
    """Box and point at 256 px with ``vanilla`` applied: the stock SAM2ImagePredictor on the
    unpatched model gives the same masks, scores and logits, bit for bit (its feature sizes,
    hard-coded for 1024 px, set by hand for the tiny's 256 px)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image = (np.random.default_rng(1).random((64, 80, 3)) * 255).astype(np.uint8)
    stock = SAM2ImagePredictor(copy.deepcopy(tiny))
    stock._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]
    theirs = _prompt_outputs(stock, image)
    model = bl.apply_basam(copy.deepcopy(tiny), BASAMConfig.vanilla())
    ours = _prompt_outputs(predictor_for(model), image)
    for a, b in zip(ours, theirs, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_predictor_refuses_bad_prompts_and_a_stale_size(tiny):
    model = copy.deepcopy(tiny)
    predictor = predictor_for(model)
    assert isinstance(predictor, Sam2Predictor)
    with pytest.raises(UserError, match="no image set"):
        predictor.predict(box=np.array([0, 0, 5, 5]))
    predictor.set_image(np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(UserError, match="x1 < x0"):
        predictor.predict(box=np.array([30, 0, 5, 5]))
    bl.set_input_size(model, 384)
    with pytest.raises(UserError, match="call set_image again"):
        predictor.predict(box=np.array([0, 0, 5, 5]))


def test_captured_maps_are_the_explicit_softmax_of_the_patched_block(tiny):
    model = copy.deepcopy(tiny)
    bl.set_input_size(model, 384)
    bl.apply_basam(model, BASAMConfig.paper())
    with bl.capture_attention(model, blocks=[3, 4]) as cap:
        _features(model, 384)
    assert cap.grids[4] == (24, 24) and cap.window_sizes[4] == 0
    assert cap.grids[3] == (48, 48) and cap.maps[3].shape[-2:] == (4, 16)  # pooled 2x2 of 4x4
    maps = cap.maps[4]
    assert maps.shape == (1, 4, 576, 576)
    torch.testing.assert_close(maps.sum(-1), torch.ones(1, 4, 576))
    lam = math.log(576) / math.log(256)
    assert cap.scales[4] == pytest.approx(lam / math.sqrt(32))


def test_adapter_preprocess_and_encode_are_sam2s_own(tiny):
    """preprocess = SAM2Transforms at the current side (resize to the square, normalise);
    encode = SAM2Base.forward_image."""
    from sam2.utils.transforms import SAM2Transforms

    model = copy.deepcopy(tiny)
    bl.set_input_size(model, 320)
    adapter = adapter_for(model)
    image = (np.random.default_rng(2).random((50, 70, 3)) * 255).astype(np.uint8)
    own = SAM2Transforms(resolution=320, mask_threshold=0.0)(image)[None]
    ours = adapter.preprocess(torch.as_tensor(image).permute(2, 0, 1)[None])
    assert ours.shape == (1, 3, 320, 320)
    assert adapter.first_grid(ours) == (80, 80) == block_geometry(model)[0].grid
    torch.testing.assert_close(ours, own, atol=1e-6, rtol=0)
    with torch.no_grad():
        a, b = adapter.encode(ours), model.forward_image(ours)
    for x, y in zip(a["backbone_fpn"], b["backbone_fpn"], strict=True):
        assert torch.equal(x, y)


def test_training_through_the_patch_reaches_the_gain_and_the_weights(tiny):
    """Autograd through BA-SAM in Hiera (issue 28 trains a tiny SAM 2 this way): a learnable
    gain and the attention weights get finite gradients, pooled windowed blocks included."""
    model = copy.deepcopy(tiny).train()
    bl.apply_basam(model, BASAMConfig.paper().with_(blocks="all", learnable_gain=True))
    out = model.forward_image(_image(256))
    sum(f.square().mean() for f in out["backbone_fpn"]).backward()
    trunk = model.image_encoder.trunk
    for i in (1, 4):  # a pooled windowed block, a global block
        attn = trunk.blocks[i].attn
        assert torch.isfinite(attn.basam_gain.grad) and attn.basam_gain.grad != 0
        assert torch.isfinite(attn.qkv.weight.grad).all()


def test_sam2_names_agree_between_the_builder_and_the_spec_registry():
    from basam_lite.encoders.specs import MODELS
    from basam_lite.models import loads_checkpoint, model_names

    architectures = {e.architecture for e in MODELS.values() if e.family == "sam2"}
    assert architectures == set(sam2_models.SAM2_NAMES)
    bundled = {n for n, e in MODELS.items() if e.family == "sam2" and e.bundled}
    assert bundled == {"tiny-sam2-vanilla", "tiny-sam2-basam"}
    assert not any(loads_checkpoint(n) for n in bundled)
    assert set(sam2_models.SAM2_NAMES) <= set(model_names())
    assert all(loads_checkpoint(n) for n in sam2_models.OFFICIAL_SAM2)
    built = bl.build_sam("sam2-tiny")
    assert type(built).__name__ == "SAM2Base"
    reference = build_tiny_sam2().state_dict().values()
    for a, b in zip(built.state_dict().values(), reference, strict=True):
        assert torch.equal(a, b)


def test_sweep_cli_runs_sam2_on_two_images_at_two_sizes(tmp_path):
    from basam_lite.__main__ import main
    from basam_lite.sweep import read_table

    out = tmp_path / "sam2.csv"
    args = ["sweep", "--model", "sam2-tiny", "--variants", "vanilla", "paper"]
    args += ["--resolutions", "256", "384", "--dataset", "synthetic:2", "--axis", "zoom"]
    assert main([*args, "--no-plot", "--out", str(out)]) == 0
    table = read_table(out)
    assert len(table) == 2 * 2 * 2 * 2  # images x sizes x variants x prompts (box, point)
    assert set(table["model"]) == {"sam2-tiny"} and table["iou"].notna().all()
    assert main([*args[:-2], "--resolutions", "240", "--out", str(tmp_path / "x.csv")]) == 2


def test_capture_queries_on_the_first_grid_reach_coarser_blocks(tiny):
    """A query (row, col) on the stride-4 grid (96 x 96 at 384 px) is the cell holding it on the
    stride-16 grid of the global blocks (24 x 24): the captured row equals that full-map row."""
    model = bl.apply_basam(copy.deepcopy(tiny), BASAMConfig.paper())
    bl.set_input_size(model, 384)
    with bl.capture_attention(model, blocks=[4], queries=[(50, 87)]) as some:
        _features(model, 384)
    with bl.capture_attention(model, blocks=[4]) as every:
        _features(model, 384)
    assert some.grids[4] == (24, 24) and some.query_positions.tolist() == [[50, 87]]
    row = every.maps[4][:, :, (50 // 4) * 24 + 87 // 4]
    torch.testing.assert_close(some.maps[4][:, :, 0], row)


def test_the_explorer_draws_sam2_maps(tiny):
    from basam_lite import explorer
    from basam_lite.datasets import ProceduralScenes

    image = ProceduralScenes(1, seed=0).sample(0, size=256).image
    atlas = explorer.AttentionAtlas(
        copy.deepcopy(tiny), image, [256, 384], ["vanilla", "paper"], {"c": (0.5, 0.5)}, [4]
    )
    cap = atlas.capture(384, "paper")
    assert cap.maps[4].shape == (4, 1, 24, 24)  # heads, queries, the stride-16 grid
    np.testing.assert_allclose(cap.maps[4].sum(axis=(-2, -1)), 1.0, atol=1e-5)
    s = atlas.stats(384, "paper", 4, 0, "c")
    assert s["entropy"] < s["uniform_entropy"] == pytest.approx(math.log(576))
    assert 0 < s["distance_px"] < 384
    png = explorer.attention_explorer(atlas.sam, image, atlas=atlas).explorer.png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_chosen_queries_in_a_query_pooling_block_are_one_line() -> None:
    """Hiera's stage-transition blocks pool queries inside their windows: a chosen query has no
    place there, so capturing it is refused in one line; all queries still work."""
    import numpy as np

    from basam_lite.errors import UserError

    m = bl.build_sam("sam2-tiny")
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    p = bl.predictor_for(m)
    with pytest.raises(UserError, match="pools its queries") as err:
        with bl.capture_attention(m, queries=[(8, 8)]):
            p.set_image(img)
    assert "\n" not in str(err.value)
    with bl.capture_attention(m, blocks=[1]) as cap:
        p.set_image(img)
    assert 1 in cap.maps
