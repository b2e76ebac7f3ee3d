"""SAM's rel-pos terms computed per query chunk (``AttentionBias.rel_rows``) give the attention
of the whole terms: against the explicit softmax written out, on the chunked path with several
chunks (mask or not, batch > 1, a non-square grid), and through the SAM 1 and Hugging Face
encoders (paper, vanilla and official presets, the capture hook) with the laziness forced on."""

from __future__ import annotations

import pytest
import torch

import basam_lite as bl
from basam_lite import attention as attn_lib
from basam_lite.attention import AttentionBias, attend
from basam_lite.config import BASAMConfig
from basam_lite.encoders import vit_like
from basam_lite.encoders.vit_like import rel_pos_position, rel_pos_terms, rel_pos_terms_rows


def inputs(b: int = 2, h: int = 3, grid: tuple[int, int] = (6, 5), d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rows, cols = grid
    n = rows * cols
    q, k, v = (torch.randn(b, h, n, d, generator=g) for _ in range(3))
    table_h = torch.randn(rows, rows, d, generator=g)
    table_w = torch.randn(cols, cols, d, generator=g)
    return q, k, v, table_h, table_w


def explicit(q, k, v, scale, table_h, table_w, grid, slopes=None):
    """softmax(scale q.k + q_i . P_h[row_i, row_j] + q_i . P_w[col_i, col_j] - m_h |p_i - p_j|) v,
    every term written out."""
    rows, cols = grid
    n = rows * cols
    r = torch.arange(n) // cols
    c = torch.arange(n) % cols
    rel = torch.einsum("bhid,ijd->bhij", q, table_h[r][:, r]) + torch.einsum(
        "bhid,ijd->bhij", q, table_w[c][:, c]
    )
    logits = scale * q @ k.transpose(-2, -1) + rel
    if slopes is not None:
        dist = ((r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2).float().sqrt()
        logits = logits - slopes[None, :, None, None] * dist
    return logits.softmax(-1) @ v


def test_rows_are_the_slices_of_the_whole_terms():
    q, _, _, th, tw = inputs()
    rel_h, rel_w = rel_pos_terms(q, th, tw, (6, 5))
    part_h, part_w = rel_pos_terms_rows(q, th, tw, (6, 5), 2, 5)
    torch.testing.assert_close(part_h, rel_h[:, :, 10:25])
    torch.testing.assert_close(part_w, rel_w[:, :, 10:25])


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("path", ["chunked", "dense", "folded", "auto"])
def test_on_demand_rows_equal_the_explicit_softmax(masked, path, monkeypatch):
    """Chunks of one or two grid rows (the chunk budget shrunk), so the rows are asked for
    chunk by chunk; the other paths run on the materialised terms."""
    q, k, v, th, tw = inputs()
    grid = (6, 5)
    slopes = torch.tensor([0.5, 0.25, 0.125]) if masked else None
    monkeypatch.setattr(attn_lib, "CHUNK_BIAS_BYTES", 2 * 3 * 2 * 5 * 30 * 4)  # two grid rows
    asked: list[tuple[int, int]] = []

    def rel_rows(first: int, last: int):
        asked.append((first, last))
        return rel_pos_terms_rows(q, th, tw, grid, first, last)

    bias = AttentionBias(grid, slopes=slopes, rel_rows=rel_rows)
    assert bias.has_rel_pos and not bias.is_empty
    with torch.no_grad():
        got = attend(q, k, v, 0.3, bias, path)  # type: ignore[arg-type]
    torch.testing.assert_close(got, explicit(q, k, v, 0.3, th, tw, grid, slopes))
    if path == "chunked":
        assert asked == [(0, 2), (2, 4), (4, 6)]
    else:  # materialised once, whole
        assert asked == [(0, 6)]


def test_under_autograd_the_terms_are_materialised_and_gradients_flow():
    q, k, v, th, tw = inputs()
    q.requires_grad_(True)
    grid = (6, 5)
    bias = AttentionBias(grid, rel_rows=lambda f, la: rel_pos_terms_rows(q, th, tw, grid, f, la))
    out = attend(q, k, v, 0.3, bias, "chunked")
    out.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    q2 = q.detach().clone().requires_grad_(True)
    explicit(q2, k, v, 0.3, th, tw, grid).sum().backward()
    torch.testing.assert_close(q.grad, q2.grad)


def test_position_is_lazy_only_without_grad_and_above_the_threshold(monkeypatch):
    q, _, _, th, tw = inputs()
    with torch.no_grad():
        assert rel_pos_position(q, th, tw, (6, 5)).rel_rows is None  # small: whole
        monkeypatch.setattr(vit_like, "LAZY_REL_POS_BYTES", 0)
        lazy = rel_pos_position(q, th, tw, (6, 5))
    assert lazy.rel_rows is not None and lazy.rel_h is None
    whole = rel_pos_position(q, th, tw, (6, 5))  # autograd on: whole even above it
    assert whole.rel_rows is None and whole.rel_h is not None


def spy_rows(monkeypatch) -> list[tuple[int, int]]:
    """Record the (first, last) grid rows each on-demand call computes."""
    calls: list[tuple[int, int]] = []
    real = vit_like.rel_pos_terms_rows

    def spy(q, table_h, table_w, grid_hw, first, last):
        calls.append((first, last))
        return real(q, table_h, table_w, grid_hw, first, last)

    monkeypatch.setattr(vit_like, "rel_pos_terms_rows", spy)
    return calls


def encoder_output(model, encoder, size: int, lazy: bool, monkeypatch) -> torch.Tensor:
    monkeypatch.setattr(vit_like, "LAZY_REL_POS_BYTES", 0 if lazy else 1 << 62)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = encoder(x)
    return out if isinstance(out, torch.Tensor) else out.last_hidden_state


@pytest.mark.parametrize("preset", ["paper", "vanilla", "official"])
def test_sam1_encoder_lazy_equals_whole(preset, monkeypatch):
    sam = bl.build_sam("tiny")
    bl.set_input_size(sam, 384)
    cfg = BASAMConfig.preset(preset).with_(path="chunked")
    bl.apply_basam(sam, cfg)
    if preset == "official":  # a coefficient other than its initial value
        for name, p in sam.named_parameters():
            if "rel_pos_coef" in name:
                p.data.fill_(0.37)
    monkeypatch.setattr(attn_lib, "CHUNK_BIAS_BYTES", 1 << 16)  # many chunks
    whole = encoder_output(sam, sam.image_encoder, 384, False, monkeypatch)
    parts = spy_rows(monkeypatch)
    lazy = encoder_output(sam, sam.image_encoder, 384, True, monkeypatch)
    torch.testing.assert_close(lazy, whole, rtol=1e-5, atol=1e-5)
    assert any(first > 0 for first, _ in parts), "the rows were never asked for per chunk"


def test_hf_encoder_lazy_equals_whole(monkeypatch):
    pytest.importorskip("transformers")
    from basam_lite.encoders.hf_weights import build_tiny_hf_sam

    model = build_tiny_hf_sam()
    bl.set_input_size(model, 384)
    bl.apply_basam(model, BASAMConfig.paper().with_(path="chunked"))
    monkeypatch.setattr(attn_lib, "CHUNK_BIAS_BYTES", 1 << 16)
    encoder = model.vision_encoder
    whole = encoder_output(model, encoder, 384, False, monkeypatch)
    parts = spy_rows(monkeypatch)
    lazy = encoder_output(model, encoder, 384, True, monkeypatch)
    torch.testing.assert_close(lazy, whole, rtol=1e-5, atol=1e-5)
    assert any(first > 0 for first, _ in parts), "the rows were never asked for per chunk"


def test_capture_sees_the_materialised_terms(monkeypatch):
    """The capture hook gets whole rel_h / rel_w even when the block computes them lazily."""
    sam = bl.build_sam("tiny")
    bl.set_input_size(sam, 384)
    bl.apply_basam(sam, BASAMConfig.paper())
    maps = {}
    for lazy in (False, True):
        monkeypatch.setattr(vit_like, "LAZY_REL_POS_BYTES", 0 if lazy else 1 << 62)
        x = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(3))
        with bl.capture_attention(sam, blocks=[2], queries=[5, 100]) as cap, torch.no_grad():
            sam.image_encoder(x)
        maps[lazy] = cap.maps[2]
    torch.testing.assert_close(maps[True], maps[False])
