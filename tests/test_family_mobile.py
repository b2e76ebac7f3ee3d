"""MobileSAM (TinyViT) through ``mobile_sam``: build, load, any size, BA-SAM, capture.

Models: ``mobilesam-tiny`` (random weights, seed 0: TinyViT widths 16/32/32/320, one block per
stage, heads 1/2/2/5, the official windows 7/14/7, MLP ratio 1) for forwards; the official
``mobilesam`` architecture (TinyViT-5M) where only its layout or one block matters.
Tolerances: the patched path runs PyTorch's fused SDPA where ``mobile_sam`` runs an explicit
softmax, so outputs agree to 1e-4 (measured about 3e-6 on the encoder's output); references of
one block agree to 1e-5.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from basam_lite.config import BASAMConfig
from basam_lite.errors import UserError
from basam_lite.official import MOBILE_REFERENCES, STORED_COMMITS, OfficialRef

if importlib.util.find_spec("mobile_sam") is None:  # not importorskip: it would import it bare
    pytest.skip("the [mobilesam] extra is not installed", allow_module_level=True)

from reference import reference_mask

import basam_lite as bl
from basam_lite import encoders
from basam_lite.encoders.mobilesam_build import (
    build_mobilesam,
    stage_grids,
    tiny_vit_blocks,
)
from basam_lite.encoders.mobilesam_import import mobile_sam_module
from basam_lite.encoders.mobilesam_official import official_mobile_scale
from basam_lite.encoders.specs import model_spec

TOL_MODEL = 1e-4
TOL_BLOCK = 1e-5


@pytest.fixture(scope="module")
def tiny():
    return build_mobilesam("mobilesam-tiny")


def fresh():
    return build_mobilesam("mobilesam-tiny")


def image(hw: tuple[int, int], seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, *hw, generator=g)


def own_forward_at(sam, hw: tuple[int, int], x: torch.Tensor) -> torch.Tensor:
    """The family's own unpatched forward at ``hw``: a TinyViT built by ``mobile_sam`` itself
    with ``img_size=hw`` (its layers' resolutions computed by its constructor), the same
    weights, its own stem, layers and neck; only ``forward_features``' hard-coded 64 x 64 view
    is replaced by the (rows, cols) = hw / 16 view."""
    m = mobile_sam_module().modeling
    enc = sam.image_encoder
    spec_kwargs = dict(
        embed_dims=[16, 32, 32, 320],
        depths=[1, 1, 1, 1],
        num_heads=[1, 2, 2, 5],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=1.0,
        mbconv_expand_ratio=1.0,
        drop_path_rate=0.0,
    )
    own = m.TinyViT(img_size=hw, **spec_kwargs)
    own.load_state_dict(enc.state_dict())
    own.eval()
    with torch.no_grad():
        y = own.patch_embed(x)
        for layer in own.layers:
            y = layer(y)
        y = y.view(1, hw[0] // 16, hw[1] // 16, -1).permute(0, 3, 1, 2)
        return own.neck(y)


# ---------------------------------------------------------------- import and build


def test_import_contains_warnings_and_keeps_timms_registry() -> None:
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import timm.models\n"
        "from timm.models import _registry as r\n"
        "before = r._model_entrypoints['tiny_vit_5m_224']\n"
        "from basam_lite.encoders.mobilesam_import import mobile_sam_module\n"
        "m = mobile_sam_module()\n"
        "assert m.__name__ == 'mobile_sam'\n"
        "assert r._model_entrypoints['tiny_vit_5m_224'] is before, 'registry changed'\n"
        "assert before.__module__ == 'timm.models.tiny_vit'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok" and out.stderr == ""


def test_missing_package_is_one_line_naming_the_extra(monkeypatch) -> None:
    from basam_lite.encoders import mobilesam_import

    monkeypatch.setattr(mobilesam_import, "_MODULE", None)
    monkeypatch.setitem(sys.modules, "mobile_sam", None)  # import mobile_sam -> ImportError
    monkeypatch.delitem(sys.modules, "basam_lite.encoders.mobilesam", raising=False)
    for call in (lambda: build_mobilesam("mobilesam-tiny"), lambda: encoders.require("mobilesam")):
        with pytest.raises(UserError) as info:
            call()
        line = str(info.value)
        assert "\n" not in line and "pip install 'basam-lite[mobilesam]'" in line


def test_official_architecture_has_mobile_sams_own_state_dict_layout() -> None:
    ours = build_mobilesam("mobilesam").state_dict()
    theirs = mobile_sam_module().build_sam_vit_t().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_checkpoint_round_trip_from_a_mobile_sam_pt_path(tmp_path) -> None:
    src = build_mobilesam("mobilesam", seed=3)
    path = tmp_path / "mobile_sam.pt"
    torch.save(src.state_dict(), path)  # stands in for the official file (same layout)
    loaded = build_mobilesam("mobilesam", checkpoint=path)
    for k, v in src.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    # the eval-mode cached bias tables follow the loaded weights (mobile_sam's own builder
    # caches them before loading)
    for blk in tiny_vit_blocks(loaded):
        a = blk.attn
        assert torch.equal(a.ab, a.attention_biases[:, a.attention_bias_idxs])
    stale = mobile_sam_module().build_sam_vit_t(checkpoint=str(path))
    a = tiny_vit_blocks(stale)[0].attn
    assert not torch.equal(a.ab, a.attention_biases[:, a.attention_bias_idxs])


def test_pretrained_comes_from_the_weights_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BASAM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("BASAM_OFFLINE", "1")
    with pytest.raises(UserError, match="mobile_sam.pt") as info:  # never downloads in tests
        build_mobilesam("mobilesam", pretrained=True)
    assert "\n" not in str(info.value)
    src = build_mobilesam("mobilesam", seed=4)
    torch.save(src.state_dict(), tmp_path / "mobile_sam.pt")  # stands in for the cached file
    import basam_lite.weights as weights

    monkeypatch.setattr(weights, "fetch", lambda name: tmp_path / f"{name}.pt")
    loaded = build_mobilesam("mobilesam", pretrained=True)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in src.state_dict().items())
    with pytest.raises(UserError, match="pretrained=True loads"):
        build_mobilesam("mobilesam-tiny", pretrained=True)


def test_bad_checkpoints_are_one_line_errors(tmp_path) -> None:
    vit = tmp_path / "vit.pt"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1)}, vit)
    with pytest.raises(UserError, match="not MobileSAM's"):
        build_mobilesam("mobilesam", checkpoint=vit)
    small = tmp_path / "tiny.pt"
    torch.save(build_mobilesam("mobilesam-tiny").state_dict(), small)
    with pytest.raises(UserError, match="does not fit model 'mobilesam'"):
        build_mobilesam("mobilesam", checkpoint=small)
    with pytest.raises(UserError, match="unknown MobileSAM model"):
        build_mobilesam("mobilesam-huge")


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize("size", [500, 8, (512, 0), 512.0])
def test_sizes_not_multiples_of_16_are_refused(tiny, size) -> None:
    with pytest.raises(UserError):
        bl.set_input_size(tiny, size)
    assert bl.input_size(tiny) == (1024, 1024)


def test_stage_grids_follow_the_size(tiny) -> None:
    enc = tiny.image_encoder
    assert stage_grids(enc, (1024, 1024)) == [(256, 256), (128, 128), (64, 64), (64, 64)]
    assert [layer.input_resolution for layer in enc.layers] == stage_grids(enc, (1024, 1024))
    assert stage_grids(enc, (512, 768)) == [(128, 192), (64, 96), (32, 48), (32, 48)]


def test_vanilla_equals_the_own_forward_at_1024(tiny) -> None:
    x = image((1024, 1024))
    with torch.no_grad():
        stock = tiny.image_encoder(x)
        bl.apply_basam(tiny, BASAMConfig.vanilla())
        try:
            patched = tiny.image_encoder(x)
        finally:
            bl.remove_basam(tiny)
    assert (patched - stock).abs().max() < TOL_MODEL


@pytest.mark.parametrize("hw", [(512, 512), (384, 640)])
def test_resized_and_vanilla_equal_the_own_forward_at_another_size(hw) -> None:
    sam = fresh()
    x = image(hw)
    reference = own_forward_at(sam, hw, x)
    bl.set_input_size(sam, hw)
    with torch.no_grad():
        resized = sam.image_encoder(x)
        bl.apply_basam(sam, BASAMConfig.vanilla())
        patched = sam.image_encoder(x)
    assert resized.shape == (1, 256, hw[0] // 16, hw[1] // 16)
    assert torch.equal(resized, reference)  # the same modules and operations: bit for bit
    assert (patched - reference).abs().max() < TOL_MODEL


def test_global_block_presets_leave_mobilesam_unchanged() -> None:
    """No TinyViT block is global: scale, bias, paper and paper_base act on none."""
    sam = fresh()
    bl.set_input_size(sam, 512)
    x = image((512, 512))
    with torch.no_grad():
        stock = sam.image_encoder(x)
        for name in ("scale", "bias", "paper", "paper_base"):
            bl.apply_basam(sam, BASAMConfig.preset(name))
            assert (sam.image_encoder(x) - stock).abs().max() < TOL_MODEL, name


# ---------------------------------------------------------------- block-by-block references


def press_slopes(n: int) -> torch.Tensor:
    """Press's ALiBi ``get_slopes`` written out (non-powers of two included)."""

    def power_of_2(k: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(k) - 3)))
        return [start * start**i for i in range(k)]

    if math.log2(n).is_integer():
        return torch.tensor(power_of_2(n))
    p = 2 ** math.floor(math.log2(n))
    return torch.tensor(power_of_2(p) + power_of_2(2 * p)[0::2][: n - p])


def reference_window_attention(attn, x, lam, table_coef, slopes, metric, window):
    """TinyViT attention written out: LayerNorm, qkv split, explicit softmax of
    lambda q.k / sqrt(d) + c * TinyViT's own table + mask, times v, projection."""
    b, n, _ = x.shape
    xn = torch.nn.functional.layer_norm(x, (x.shape[-1],), attn.norm.weight, attn.norm.bias)
    qkv = xn @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv.view(b, n, attn.num_heads, -1).split([attn.key_dim, attn.key_dim, attn.d], 3)
    q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
    logits = lam * (q @ k.transpose(-2, -1)) / math.sqrt(attn.key_dim)
    logits = logits + table_coef * attn.attention_biases[:, attn.attention_bias_idxs]
    if slopes is not None:
        logits = logits + reference_mask(window, window, slopes, metric)
    weights = torch.exp(logits - logits.amax(-1, keepdim=True))
    weights = weights / weights.sum(-1, keepdim=True)
    out = (weights @ v).transpose(1, 2).reshape(b, n, attn.dh)
    return out @ attn.proj.weight.T + attn.proj.bias


CASES = {
    # name: (config, size, train mode, lambda, table coefficient, mask)
    "scale-all": (BASAMConfig.scale_only().with_(blocks="all"), 512, False, 1.0, 1.0, False),
    "bias-all": (BASAMConfig.bias_only().with_(blocks="all"), 512, False, 1.0, 1.0, True),
    "paper-all": (BASAMConfig.paper().with_(blocks="all"), 768, False, 1.0, 1.0, True),
    "paper-manhattan": (
        BASAMConfig.paper().with_(blocks="all", metric="manhattan", gain=0.5),
        512,
        False,
        1.0,
        1.0,
        True,
    ),
    "official-eval-2048": (
        BASAMConfig.official(),
        2048,
        False,
        math.log(4 * 1444, 1444),
        1.0,
        False,
    ),
    "official-train-2048": (
        BASAMConfig.official(),
        2048,
        True,
        math.log(4 * 1444, 1444),
        0.1,
        False,
    ),
    "official-1536": (BASAMConfig.official(), 1536, False, 1.0, 1.0, False),
    "paper-global": (BASAMConfig.paper(), 512, False, 1.0, 1.0, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_block_equals_the_written_out_reference(case) -> None:
    config, size, train, lam, coef, masked = CASES[case]
    sam = build_mobilesam("mobilesam")  # the official heads (4, 5, 10) and windows
    bl.set_input_size(sam, size)
    bl.apply_basam(sam, config)
    sam.train(train)
    g = torch.Generator().manual_seed(5)
    for i, blk in enumerate(tiny_vit_blocks(sam)):
        attn = blk.attn
        w = blk.window_size
        x = torch.randn(3, w * w, attn.norm.normalized_shape[0], generator=g)
        slopes = press_slopes(attn.num_heads) * config.gain if masked else None
        with torch.no_grad():
            got = attn(x)
            want = reference_window_attention(attn, x, lam, coef, slopes, config.metric, w)
        assert (got - want).abs().max() < TOL_BLOCK, (case, i)


def test_official_scale_rule_and_refusal() -> None:
    assert official_mobile_scale((1024, 1024)) == 1.0
    assert official_mobile_scale((1536, 1536)) == 1.0  # the side ratio is floored
    assert official_mobile_scale((2048, 2048)) == pytest.approx(1 + math.log(4) / math.log(1444))
    assert official_mobile_scale((4096, 4096)) == pytest.approx(math.log(16 * 1444, 1444))
    sam = fresh()
    bl.set_input_size(sam, 512)
    with pytest.raises(UserError, match="cannot run at 512x512"):
        bl.apply_basam(sam, BASAMConfig.official())
    bl.set_input_size(sam, 1024)
    bl.apply_basam(sam, BASAMConfig.official())
    with pytest.raises(UserError, match="cannot run at 768x768"):
        bl.set_input_size(sam, 768)


def test_official_coefficient_learns_in_training_only() -> None:
    sam = fresh()
    bl.apply_basam(sam, BASAMConfig.official())
    names = [k for k in sam.state_dict() if k.endswith("basam_rel_pos_coef")]
    assert len(names) == len(tiny_vit_blocks(sam)) == 3
    sam.train()
    x = image((1024, 1024))
    sam.image_encoder(x).square().mean().backward()
    coefs = [blk.attn.basam_rel_pos_coef for blk in tiny_vit_blocks(sam)]
    assert all(c.grad is not None and c.grad.abs() > 0 for c in coefs)


# ---------------------------------------------------------------- restore and round trips


def test_remove_basam_restores_exactly() -> None:
    sam = fresh()
    x = image((1024, 1024))
    with torch.no_grad():
        before = sam.image_encoder(x)
    classes = [type(m) for m in sam.modules()]
    keys = list(sam.state_dict())
    bl.set_input_size(sam, 2048)
    bl.apply_basam(sam, BASAMConfig.official())
    bl.apply_basam(sam, BASAMConfig.paper().with_(blocks="all", learnable_gain=True))
    bl.remove_basam(sam)
    bl.set_input_size(sam, 1024)
    assert [type(m) for m in sam.modules()] == classes
    assert list(sam.state_dict()) == keys
    assert [layer.input_resolution for layer in sam.image_encoder.layers] == [
        (256, 256),
        (128, 128),
        (64, 64),
        (64, 64),
    ]
    assert sam.image_encoder.img_size == 1024 and sam.prompt_encoder.image_embedding_size == (
        64,
        64,
    )
    with torch.no_grad():
        assert torch.equal(sam.image_encoder(x), before)


def test_state_dict_and_deepcopy_round_trips() -> None:
    sam = fresh()
    bl.set_input_size(sam, 512)
    bl.apply_basam(sam, BASAMConfig.official().with_(scale="none"))
    with torch.no_grad():
        for blk in tiny_vit_blocks(sam):
            blk.attn.basam_rel_pos_coef.fill_(0.37)
    sam.train()
    x = image((512, 512))
    with torch.no_grad():
        out = sam.image_encoder(x)
    buffer = io.BytesIO()
    torch.save(sam.state_dict(), buffer)
    other = fresh()
    bl.set_input_size(other, 512)
    bl.apply_basam(other, BASAMConfig.official().with_(scale="none"))
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    other.train()
    twin = copy.deepcopy(sam)
    with torch.no_grad():
        assert torch.equal(other.image_encoder(x), out)
        assert torch.equal(twin.image_encoder(x), out)
    bl.remove_basam(twin)
    assert type(tiny_vit_blocks(sam)[0].attn).__name__ == "BASAMTinyAttention"


# ---------------------------------------------------------------- predictor and capture


def prompt_through_sam_forward(sam, transform, rgb, point, box) -> np.ndarray:
    """The same prompt through ``Sam.forward`` (its own preprocess, prompt encoder and
    postprocess), for comparison with a predictor."""
    size = rgb.shape[:2]
    batch = {
        "image": torch.as_tensor(transform.apply_image(rgb)).permute(2, 0, 1).float(),
        "original_size": size,
        "point_coords": torch.as_tensor(transform.apply_coords(np.array([[point]]), size)),
        "point_labels": torch.tensor([[1]]),
        "boxes": torch.as_tensor(transform.apply_boxes(np.array([box]), size)),
    }
    with torch.no_grad():
        return sam([batch], multimask_output=True)[0]["masks"][0].numpy()


RGB = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
POINT, BOX = [200.0, 150.0], [50.0, 40.0, 350.0, 260.0]


def test_the_familys_own_predictor_follows_the_size() -> None:
    sam = fresh()
    predictor = mobile_sam_module().SamPredictor(sam)  # mobile_sam's own, made at 1024 px
    bl.set_input_size(predictor, 512)  # a predictor in hand follows too
    bl.apply_basam(sam, BASAMConfig.paper().with_(blocks="all"))
    predictor.set_image(RGB)
    assert predictor.features.shape == (1, 256, 32, 32)
    assert predictor.input_size == (384, 512)
    masks, scores, low = predictor.predict(
        point_coords=np.array([POINT]), point_labels=np.array([1]), box=np.array(BOX)
    )
    assert masks.shape == (3, 300, 400) and scores.shape == (3,) and low.shape == (3, 128, 128)
    reference = prompt_through_sam_forward(sam, predictor.transform, RGB, POINT, BOX)
    assert np.array_equal(reference, masks)
    with pytest.raises(UserError, match="non-square"):
        bl.set_input_size(predictor, (384, 640))


def test_vanilla_predictor_logits_equal_the_unpatched_family_predictor() -> None:
    sam = fresh()
    bl.set_input_size(sam, 512)
    predictor = mobile_sam_module().SamPredictor(sam)
    predictor.transform = mobile_sam_module().utils.transforms.ResizeLongestSide(512)
    prompt = dict(point_coords=np.array([POINT]), point_labels=np.array([1]), box=np.array(BOX))
    predictor.set_image(RGB)
    stock = predictor.predict(**prompt, return_logits=True)[0]
    bl.apply_basam(sam, BASAMConfig.vanilla())
    predictor.set_image(RGB)
    patched = predictor.predict(**prompt, return_logits=True)[0]
    assert np.abs(patched - stock).max() < 1e-3  # mask logits, after the decoder


def test_predictor_for_predicts_with_a_box_and_a_point_at_a_non_square_size() -> None:
    sam = fresh()
    bl.set_input_size(sam, (384, 640))
    bl.apply_basam(sam, BASAMConfig.official().with_(scale="none"))
    predictor = bl.predictor_for(sam)
    predictor.set_image(RGB)
    assert predictor.features.shape == (1, 256, 24, 40)
    assert predictor.input_size == (384, 512)  # 300 x 400 scaled by 1.28 fits 384 x 640
    masks, _, _ = predictor.predict(
        point_coords=np.array([POINT]), point_labels=np.array([1]), box=np.array(BOX)
    )
    assert masks.shape == (3, 300, 400)
    reference = prompt_through_sam_forward(sam, predictor.transform, RGB, POINT, BOX)
    assert np.array_equal(reference, masks)
    with pytest.raises(UserError, match="outside"):
        predictor.predict(point_coords=np.array([[500.0, 10.0]]), point_labels=np.array([1]))


def test_non_square_sam_forward_pads_and_crops() -> None:
    sam = fresh()
    bl.set_input_size(sam, (256, 384))
    img = torch.rand(3, 200, 384) * 255
    with torch.no_grad():
        out = sam([{"image": img, "original_size": (100, 192)}], multimask_output=False)[0]
    assert out["masks"].shape == (1, 1, 100, 192)
    assert sam.prompt_encoder.get_dense_pe().shape == (1, 256, 16, 24)


def test_capture_attention_maps_at_another_size() -> None:
    sam = fresh()
    bl.set_input_size(sam, 512)
    x = image((512, 512))
    inputs = {}
    blk = tiny_vit_blocks(sam)[0]
    handle = blk.attn.register_forward_pre_hook(lambda m, a: inputs.setdefault("x", a[0]))
    with torch.no_grad():
        stock = sam.image_encoder(x)
        with bl.capture_attention(sam, queries=[(10, 20), (31, 31)]) as cap:
            captured = sam.image_encoder(x)
    handle.remove()
    assert (captured - stock).abs().max() < TOL_MODEL
    assert type(tiny_vit_blocks(sam)[0].attn).__name__ == "Attention"  # restored
    assert sorted(cap.maps) == list(range(3))
    assert cap.grids[0] == (64, 64) and cap.grids[1] == (32, 32) and cap.window_sizes[1] == 14
    maps = cap.grid_maps(0)  # stage 1: 64 x 64 tokens, windows of 7
    assert maps.shape == (1, 2, 2, 64, 64)
    assert torch.allclose(maps.sum((-1, -2)), torch.ones(()), atol=1e-5)
    q = maps[0, :, 0]  # query (10, 20): window rows 7..13, cols 14..20
    assert q[:, 7:14, 14:21].sum((-1, -2)).min() > 1 - 1e-5 and q[:, :7].abs().sum() == 0
    # the query's row against the written-out reference on the block's own input
    attn, w = blk.attn, blk.window_size
    windows = inputs["x"]  # [windows, 49, C] as mobile_sam partitioned them (10 x 10)
    xn = torch.nn.functional.layer_norm(
        windows[12:13], (windows.shape[-1],), attn.norm.weight, attn.norm.bias
    )
    qkv = (xn @ attn.qkv.weight.T + attn.qkv.bias).view(1, w * w, attn.num_heads, -1)
    qq, kk, _ = qkv.split([attn.key_dim, attn.key_dim, attn.d], 3)
    logits = torch.einsum("hd,nhd->hn", qq[0, 3 * w + 6], kk[0]) / math.sqrt(attn.key_dim)
    logits = logits + attn.attention_biases[:, attn.attention_bias_idxs][:, 3 * w + 6]
    want = logits.softmax(-1).reshape(-1, w, w)
    assert (q[:, 7:14, 14:21] - want).abs().max() < TOL_BLOCK


# ---------------------------------------------------------------- official references


def test_mobile_references_are_well_formed() -> None:
    ids = [r.claim_id for r in MOBILE_REFERENCES]
    assert len(ids) == len(set(ids))
    for r in MOBILE_REFERENCES:
        assert isinstance(r, OfficialRef) and r.commit in STORED_COMMITS
        assert 1 <= r.lines[0] <= r.lines[1] and 0 < len(r.token) <= 40
        assert r.path.startswith("mobile_sam/") and r.claim.strip()


# ---------------------------------------------------------------- what changes with size


def test_no_row_sees_more_keys_as_the_image_grows() -> None:
    from basam_lite.encoders.mobilesam_facts import conv_reach, window_rows

    sam = build_mobilesam("mobilesam")
    rows = window_rows(sam, [256, 512, 1024, 2048])
    assert len(rows) == 4 * 10
    for r in rows:
        assert r["keys_per_row"] == r["window"] ** 2 and r["lambda_log_ratio"] == 1.0
    stage1 = {r["size"]: r["windows"] for r in rows if r["block"] == 0}
    assert stage1 == {256: 25, 512: 100, 1024: 361, 2048: 1369}
    assert 4 * stage1[1024] == 1444  # the official constant: a batch of 4 at 1024 px
    assert {r["lambda_official"] for r in rows if r["size"] < 1024} == {None}
    # stem 3x3/2, 3x3/2; stage 0: 2 MBConv dw3x3; merges dw3x3/2, /2, /1; a 3x3 local_conv
    # per block (2 + 6 + 2 at strides 8, 16, 16); the neck's 3x3 at 16
    expected = 1 + 2 + 2 * 2 + 2 * 2 * 4 + 2 * 4 + 2 * 2 * 8 + 2 * 8 + 6 * 2 * 16 + 2 * 16
    expected += 2 * 2 * 16 + 2 * 16
    assert conv_reach(sam) == expected == 399


# ---------------------------------------------------------------- the interface


def test_adapter_and_spec_are_read_off_the_model() -> None:
    sam = build_mobilesam("mobilesam")
    adapter = encoders.adapter_for(sam)
    assert adapter.family == "mobilesam" and encoders.adapter_for(sam.image_encoder).model is None
    assert encoders.global_blocks(sam) == []
    assert adapter.first_grid(torch.zeros(1, 3, 512, 768)) == (128, 192)
    assert adapter.block_grids(0, (512, 768)).query == (64, 96)
    assert adapter.block_grids(9, (512, 768)).keys_per_row == 49
    blocks = tiny_vit_blocks(sam)
    spec = model_spec("mobilesam")
    assert spec.family == "mobilesam" and spec.base_hw == (1024, 1024)
    assert spec.patch_size == 4  # the stem's stride: 1024 px -> 256 x 256 tokens
    assert spec.heads == tuple(b.attn.num_heads for b in blocks) == (4, 4) + (5,) * 6 + (10, 10)
    assert spec.dims == tuple(b.dim for b in blocks)
    assert spec.windows == tuple(b.window_size for b in blocks) == (7, 7) + (14,) * 6 + (7, 7)
    assert spec.global_blocks == () and spec.base_keys == tuple(w * w for w in spec.windows)
    assert "16" in spec.size_rule
    assert model_spec("mobilesam-tiny").heads == (2, 2, 5)


@pytest.mark.parametrize("preset", ["vanilla", "scale", "bias", "paper", "paper_base", "official"])
def test_every_preset_applies_and_runs(preset) -> None:
    sam = fresh()
    bl.set_input_size(sam, 1024 if preset == "official" else 256)
    bl.apply_basam(sam, BASAMConfig.preset(preset))
    side = bl.input_size(sam)[0]
    with torch.no_grad():
        out = sam.image_encoder(image((side, side)))
    assert out.shape == (1, 256, side // 16, side // 16) and torch.isfinite(out).all()
    assert bl.patch_config(sam).name == preset


def test_pickle_round_trip_of_a_patched_resized_model() -> None:
    import pickle

    sam = fresh()
    bl.set_input_size(sam, (256, 384))
    bl.apply_basam(sam, BASAMConfig.paper().with_(blocks="all", learnable_gain=True))
    x = image((256, 384))
    twin = pickle.loads(pickle.dumps(sam))
    with torch.no_grad():
        assert torch.equal(twin.image_encoder(x), sam.image_encoder(x))
    assert bl.input_size(twin) == (256, 384) and bl.patch_config(twin).blocks == "all"


# ---------------------------------------------------------------- the command line


@pytest.mark.slow
def test_sweep_runs_two_images_at_two_sizes(tmp_path) -> None:
    out = tmp_path / "mobile.csv"
    cmd = [sys.executable, "-m", "basam_lite", "sweep", "--model", "mobilesam-tiny"]
    cmd += ["--dataset", "synthetic:2", "--resolutions", "128", "256", "--out", str(out)]
    cmd += ["--variants", "vanilla", "scale", "paper", "official", "--metrics", "binary"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) == 2 * 2 * 4 * 2  # images x sizes x variants x prompts
    assert set(df.model) == {"mobilesam-tiny"} and set(df.resolution) == {128, 256}
    ok = df[df.variant != "official"]
    assert (ok.status == "ok").all()
    # no TinyViT block is global: scale and paper act on none, so they equal vanilla exactly
    key = ["image", "resolution", "prompt"]
    by = {v: g.set_index(key).sort_index()["iou"] for v, g in ok.groupby("variant")}
    assert by["scale"].equals(by["vanilla"]) and by["paper"].equals(by["vanilla"])
    official = df[df.variant == "official"]
    assert (official.status == "skipped").all()
    assert official.reason.str.contains("cannot run at 128x128").any()


def test_the_explorer_draws_maps_of_every_stage() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from basam_lite.explorer import AttentionAtlas

    sam = fresh()
    atlas = AttentionAtlas(
        sam,
        RGB,
        sides=[256, 512],
        variants={
            "vanilla": BASAMConfig.vanilla(),
            "paper-all": BASAMConfig.paper().with_(blocks="all"),
        },
    )

    # stage 1 runs at side/8, stages 2 and 3 at side/16: each block places the query on its grid
    def grid(block: int) -> tuple[int, int]:
        return atlas.adapter.block_grids(block, (512, 512)).key

    assert grid(0) == (64, 64) and grid(2) == (32, 32)
    assert atlas.block_token(512, 0, "centre")[0] == (32, 32)
    assert atlas.block_token(512, 2, "centre")[0] == (16, 16)
    for block in range(3):
        p = atlas.map(512, "paper-all", block, 0, "centre")
        assert p.shape == grid(block) and abs(p.sum() - 1) < 1e-5
        stats = atlas.stats(512, "vanilla", block, 0, "centre")
        assert stats["uniform_entropy"] == pytest.approx(
            math.log(tiny_vit_blocks(sam)[block].window_size ** 2)
        )
    fig = atlas.figure(256, block=1, head=0, query="centre")
    assert len(fig.axes) >= 2
    assert type(sam).__name__ == "Sam" and bl.input_size(sam) == (1024, 1024)  # left as it was
