"""The encoder interface: family dispatch, the one "which blocks are global", the model-spec
registry read off the models, the shared BA-SAM attention call against an explicit softmax with
pooled queries, a dense position table and the official coefficient, and the attention library's
general bias (keys on another grid than the queries, a dense table) on every path."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.build_sam import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, Sam

import basam_lite as bl
from basam_lite import encoders
from basam_lite.attention import AttentionBias, attend, attention_probs, query_positions
from basam_lite.config import BASAMConfig
from basam_lite.encoders import Family, PositionTerms, adapter_for
from basam_lite.encoders.attend import basam_attend
from basam_lite.encoders.sam1 import SegmentAnythingAdapter
from basam_lite.encoders.specs import MODELS, model_spec, spec_of
from basam_lite.errors import UserError
from basam_lite.masks import alibi_slopes
from basam_lite.models import TINY
from basam_lite.patch_state import BlockPatch, attach_block, block_patch, set_block_parameter

ROOT = Path(__file__).resolve().parents[1]

# --- dispatch -----------------------------------------------------------------------------------


def test_adapter_for_takes_a_model_its_encoder_and_its_predictor(tiny_sam) -> None:
    for target in (tiny_sam, tiny_sam.image_encoder, SamPredictor(tiny_sam)):
        adapter = adapter_for(target)
        assert isinstance(adapter, SegmentAnythingAdapter)
        assert adapter.encoder is tiny_sam.image_encoder
        assert adapter_for(adapter) is adapter
    assert adapter_for(tiny_sam).model is tiny_sam
    assert adapter_for(tiny_sam.image_encoder).model is None
    predictor = SamPredictor(tiny_sam)
    assert adapter_for(predictor).predictor is predictor


def test_adapter_for_refuses_what_no_family_takes() -> None:
    with pytest.raises(TypeError, match="expected a SAM-family model.*got Linear"):
        adapter_for(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="segment_anything SAM"):
        adapter_for("vit_b")


def test_a_missing_family_package_is_one_line_naming_the_extra(monkeypatch) -> None:
    fake = Family("fake", ("no_such_package_xyz",), "no_such_package_xyz:Adapter", "fake", "Fake")
    monkeypatch.setitem(encoders.FAMILIES, "fake", fake)
    with pytest.raises(UserError, match=r"pip install 'basam-lite\[fake\]'") as info:
        encoders.adapter_class("fake")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="unknown model family 'nope'"):
        encoders.family("nope")


def test_the_bundled_default_imports_no_optional_family() -> None:
    code = (
        "import sys, torch, basam_lite as bl\n"
        "sam = bl.build_sam('tiny')\n"
        "bl.apply_basam(sam, bl.BASAMConfig.paper()); bl.set_input_size(sam, 128)\n"
        "with bl.capture_attention(sam, blocks=[2]):\n"
        "    sam.image_encoder(torch.zeros(1, 3, 128, 128))\n"
        "from basam_lite.encoders.specs import model_spec; model_spec('vit_b')\n"
        "print(sorted(m for m in ('sam2', 'transformers', 'mobile_sam', 'timm') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


# --- one answer to "which blocks are global" ----------------------------------------------------


def test_global_blocks_are_the_family_own_global_blocks(tiny_sam) -> None:
    own = [i for i, b in enumerate(tiny_sam.image_encoder.blocks) if b.window_size == 0]
    assert bl.global_blocks(tiny_sam) == own == list(TINY.global_attn_indexes)
    assert bl.global_blocks(tiny_sam.image_encoder) == own
    blocks = adapter_for(tiny_sam).attention_blocks()
    assert [b.index for b in blocks] == list(range(TINY.depth))
    assert all(b.attn is tiny_sam.image_encoder.blocks[b.index].attn for b in blocks)


def test_block_grids_follow_the_input_size(tiny_sam) -> None:
    adapter = adapter_for(tiny_sam)
    g = adapter.block_grids(2, (384, 256))
    assert g.query == g.key == (24, 16) and g.keys_per_row == 24 * 16
    w = adapter.block_grids(0, (384, 256))
    assert w.window == TINY.window_size and w.keys_per_row == TINY.window_size**2


# --- the model-spec registry ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_official_specs_are_read_off_the_models(name) -> None:
    with torch.device("meta"):
        enc = sam_model_registry[name](checkpoint=None).image_encoder
    spec = model_spec(name)
    assert spec.family == "segment_anything"
    assert spec.patch_size == enc.patch_embed.proj.stride[0]
    assert spec.base_hw == (enc.img_size, enc.img_size)
    assert spec.heads == tuple(b.attn.num_heads for b in enc.blocks)
    assert spec.global_blocks == tuple(i for i, b in enumerate(enc.blocks) if b.window_size == 0)
    assert spec.base_keys[spec.global_blocks[0]] == spec.base_grid[0] * spec.base_grid[1]
    assert "state_dict" in spec.checkpoint_format


def test_tiny_spec_matches_the_tiny_model(tiny_sam) -> None:
    spec = model_spec("tiny")
    assert spec == spec_of(tiny_sam, "tiny")
    assert spec.base_hw == (TINY.img_size, TINY.img_size) and spec.patch_size == TINY.patch_size
    assert spec.heads == (TINY.num_heads,) * TINY.depth
    assert spec.dims == (TINY.embed_dim,) * TINY.depth
    assert spec.global_blocks == TINY.global_attn_indexes
    assert set(MODELS) >= {"vit_b", "vit_l", "vit_h", "tiny", "tiny-vanilla", "tiny-basam"}
    with pytest.raises(UserError, match="unknown model 'vit_q'"):
        model_spec("vit_q")


def test_spec_base_size_survives_a_resize(tiny_sam) -> None:
    bl.set_input_size(tiny_sam, (128, 192))
    assert spec_of(tiny_sam).base_hw == (TINY.img_size, TINY.img_size)


# --- the attention library's general bias --------------------------------------------------------


def _explicit(q, k, v, scale, bias_matrix):
    """softmax(scale q k^T + bias) v, written out."""
    return ((scale * q @ k.transpose(-2, -1)) + bias_matrix).softmax(-1) @ v


def _pooled_reference_bias(q_grid, k_grid, slopes, table=None, rel=None, metric="euclidean"):
    """The bias of a pooled block from first principles: query (r, c) at the centre of the key
    cells it pools, (r + 1/2) s - 1/2, distances to every key, plus the table and rel-pos."""
    (qr, qc), (kr, kc) = q_grid, k_grid
    sr, sc = kr / qr, kc / qc
    out = torch.zeros(1, len(slopes), qr * qc, kr * kc)
    for i in range(qr * qc):
        pr, pc = (i // qc + 0.5) * sr - 0.5, (i % qc + 0.5) * sc - 0.5
        for j in range(kr * kc):
            dr, dc = abs(pr - j // kc), abs(pc - j % kc)
            d = {"euclidean": math.hypot(dr, dc), "manhattan": dr + dc}[metric]
            out[0, :, i, j] = -slopes * d
    if table is not None:
        out = out + table
    if rel is not None:
        rel_h, rel_w = rel
        rows = torch.arange(kr * kc) // kc
        cols = torch.arange(kr * kc) % kc
        out = out + rel_h[..., rows] + rel_w[..., cols]
    return out


@pytest.mark.parametrize("path", ["auto", "dense", "chunked", "folded"])
@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_pooled_queries_with_table_and_rel_pos_equal_the_explicit_softmax(path, metric) -> None:
    g = torch.Generator().manual_seed(0)
    b, h, d = 2, 3, 8
    q_grid, k_grid = (3, 2), (6, 4)
    nq, nk = 6, 24
    q, k, v = (torch.randn(b, h, n, d, generator=g) for n in (nq, nk, nk))
    table = 0.3 * torch.randn(1, h, nq, nk, generator=g)
    rel = (0.2 * torch.randn(b, h, nq, 6, generator=g), 0.2 * torch.randn(b, h, nq, 4, generator=g))
    slopes = alibi_slopes(h)
    bias = AttentionBias(q_grid, rel[0], rel[1], slopes, metric, key_grid_hw=k_grid, table=table)
    assert bias.is_general and bias.num_keys == nk
    ref_bias = _pooled_reference_bias(q_grid, k_grid, slopes, table, rel, metric)
    out = attend(q, k, v, 0.4, bias, path=path)
    torch.testing.assert_close(out, _explicit(q, k, v, 0.4, ref_bias), atol=2e-6, rtol=1e-5)
    probs = attention_probs(q, k, 0.4, bias, torch.tensor([0, 5]))
    expected = ((0.4 * q @ k.transpose(-2, -1)) + ref_bias).softmax(-1)[:, :, [0, 5]]
    torch.testing.assert_close(probs, expected, atol=2e-6, rtol=1e-5)


def test_a_table_alone_on_one_grid_runs_and_keeps_gradients() -> None:
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 16, 4, generator=g, requires_grad=True) for _ in range(3))
    table = torch.randn(1, 2, 16, 16, generator=g, requires_grad=True)
    bias = AttentionBias((4, 4), table=table)
    assert bias.is_general and not bias.is_empty
    out = attend(q, k, v, 0.5, bias)
    torch.testing.assert_close(out, _explicit(q, k, v, 0.5, table), atol=2e-6, rtol=1e-5)
    out.sum().backward()
    assert table.grad is not None and q.grad is not None


def test_query_positions_are_cell_centres() -> None:
    bias = AttentionBias((2, 2), key_grid_hw=(4, 4), table=torch.zeros(1, 1, 4, 16))
    expected = torch.tensor([[0.5, 0.5], [0.5, 2.5], [2.5, 0.5], [2.5, 2.5]])
    torch.testing.assert_close(query_positions(bias), expected)


def test_the_same_grid_keeps_the_fast_paths() -> None:
    bias = AttentionBias((4, 4), key_grid_hw=(4, 4), slopes=alibi_slopes(2))
    assert not bias.is_general


# --- the shared BA-SAM call ---------------------------------------------------------------------


class _PoolingAttention(torch.nn.Module):
    """A stand-in for a family's patched attention: keys on a 4 x 4 grid, queries pooled 2x2."""

    def forward(self, q, k, v, table):
        return basam_attend(self, q, k, v, (2, 2), (4, 4), PositionTerms(table=table))


def test_basam_attend_applies_lambda_the_mask_and_the_coefficient() -> None:
    g = torch.Generator().manual_seed(2)
    h, d = 2, 8
    q = torch.randn(1, h, 4, d, generator=g)
    k, v = torch.randn(1, h, 16, d, generator=g), torch.randn(1, h, 16, d, generator=g)
    table = torch.randn(1, h, 4, 16, generator=g)
    config = BASAMConfig.paper().with_(gain=0.5)
    attn = _PoolingAttention()
    slopes = alibi_slopes(h)
    record = BlockPatch(config, True, True, train_keys=4, slopes=slopes, base_grid=(2, 2))
    attach_block(attn, record, _PoolingAttention)
    set_block_parameter(attn, "rel_pos_coef", torch.nn.Parameter(torch.tensor(0.25)))
    assert block_patch(attn) is record
    out = attn(q, k, v, table)
    lam = math.log(16) / math.log(4)  # 16 keys per row now, 4 at training
    ref_bias = _pooled_reference_bias((2, 2), (4, 4), 0.5 * slopes, 0.25 * table)
    expected = _explicit(q, k, v, lam * d**-0.5, ref_bias)
    torch.testing.assert_close(out, expected, atol=2e-6, rtol=1e-5)


# --- the whole-model side through the interface -------------------------------------------------


def test_predictor_for_predicts_with_a_box_and_a_point(tiny_sam) -> None:
    import numpy as np

    bl.set_input_size(tiny_sam, 192)
    predictor = bl.predictor_for(tiny_sam)
    image = (np.random.default_rng(0).random((100, 150, 3)) * 255).astype(np.uint8)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(
        point_coords=np.array([[70.0, 40.0]]),
        point_labels=np.array([1]),
        box=np.array([10.0, 10.0, 120.0, 90.0]),
        multimask_output=False,
    )
    assert masks.shape == (1, 100, 150) and scores.shape == (1,)


def test_set_input_size_refuses_an_encoder_alone(tiny_sam) -> None:
    with pytest.raises(TypeError, match="whole model or its predictor"):
        bl.set_input_size(tiny_sam.image_encoder, 128)


def test_types_of_a_built_model() -> None:
    sam = bl.build_sam("tiny")
    assert type(sam) is Sam and type(sam.image_encoder) is ImageEncoderViT


# --- every registered model through build_sam and the sweep -------------------------------------


def _tiny_under_another_name(name: str) -> torch.nn.Module:
    """A registered model's builder for the tests: the tiny architecture, whatever the name."""
    from basam_lite.encoders.sam1_build import build_tiny_sam

    return build_tiny_sam(seed=int(torch.randint(0, 1000, ()).item()))


def test_build_sam_reaches_every_registered_model(monkeypatch) -> None:
    from basam_lite.encoders import specs
    from basam_lite.models import model_names

    entry = specs.ModelEntry(
        "other-tiny", "segment_anything", f"{__name__}:_tiny_under_another_name"
    )
    monkeypatch.setitem(specs.MODELS, "other-tiny", entry)
    assert "other-tiny" in model_names()
    a, b = bl.build_sam("other-tiny"), bl.build_sam("other-tiny")
    assert not a.training
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), f"{name}: random weights must be seeded"
    with pytest.raises(UserError, match="no checkpoint loader yet"):
        bl.build_sam("other-tiny", checkpoint="weights.pt")
    with pytest.raises(UserError, match="unknown model 'nope'.*other-tiny"):
        bl.build_sam("nope")
