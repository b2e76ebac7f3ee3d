"""Every attention path against an explicit softmax written out here, with SAM's own
``add_decomposed_rel_pos`` as the rel-pos reference; path choice by size; gradients; capture."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from reference import reference_mask
from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

import basam_lite as bl
from basam_lite import attention as A
from basam_lite.attention import AttentionBias, attend, choose_path
from basam_lite.encoders.sam1 import decomposed_rel_pos

METRICS = ["euclidean", "manhattan", "chebyshev", "flat"]
PATHS = ["dense", "chunked", "folded", "auto"]


def explicit_mask(grid: tuple[int, int], slopes: torch.Tensor, metric: str) -> torch.Tensor:
    """``-slope_h * dist(p_i, p_j)``, ``[1, H, N, N]``, from the loop reference (float64)."""
    return reference_mask(*grid, slopes.double(), metric).float()[None]


def explicit_attention(q, k, v, scale, grid, tables=None, slopes=None, metric="euclidean"):
    """``softmax(scale q k^T + rel_h[.., row_j] + rel_w[.., col_j] + mask) v`` with SAM's
    ``add_decomposed_rel_pos`` for the rel-pos term. Returns (output, probabilities)."""
    b, h, n, d = q.shape
    logits = scale * (q @ k.transpose(-2, -1))
    if tables is not None:
        flat = logits.reshape(b * h, n, n)
        flat = add_decomposed_rel_pos(flat, q.reshape(b * h, n, d), *tables, grid, grid)
        logits = flat.reshape(b, h, n, n)
    if slopes is not None:
        logits = logits + explicit_mask(grid, slopes, metric)
    probs = logits.softmax(-1)
    return probs @ v, probs


def make_case(grid, batch=2, heads=3, dim=8, rel_pos=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = grid[0] * grid[1]
    q, k, v = (torch.randn(batch, heads, n, dim, generator=g) for _ in range(3))
    # Tables trained for a different grid, so SAM's get_rel_pos interpolates them.
    tables = None
    if rel_pos:
        tables = (
            torch.randn(2 * grid[0] + 1, dim, generator=g) * 0.3,
            torch.randn(2 * grid[1] - 3, dim, generator=g) * 0.3,
        )
    slopes = bl.alibi_slopes(heads) * 2.0
    return q, k, v, tables, slopes


def library_bias(q, grid, tables, slopes, metric) -> AttentionBias:
    bias = AttentionBias(grid, slopes=slopes, metric=metric)
    if tables is not None:
        bias.rel_h, bias.rel_w = decomposed_rel_pos(q, *tables, grid)
    return bias


@pytest.fixture(params=["one-row chunks", "uneven chunks", "one chunk"])
def chunk_bytes(request, monkeypatch) -> None:
    """Force several chunks (1 grid row, 2 grid rows with a remainder) or a single chunk."""
    value = {"one-row chunks": 1, "uneven chunks": None, "one chunk": 1 << 40}[request.param]
    if value is None:  # two grid rows of the largest case (B=2, H=3, 5 cols, 35 keys, fp32)
        value = 2 * 2 * 3 * 5 * 35 * 4
    monkeypatch.setattr(A, "CHUNK_BIAS_BYTES", value)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("metric", [*METRICS, None])
@pytest.mark.parametrize("rel_pos", [True, False])
@pytest.mark.parametrize("grid", [(7, 5), (4, 4), (3, 6)])
def test_paths_match_explicit_softmax(path, metric, rel_pos, grid, chunk_bytes):
    q, k, v, tables, slopes = make_case(grid, rel_pos=rel_pos)
    slopes = slopes if metric is not None else None
    metric = metric or "euclidean"
    scale = 1.13 / math.sqrt(q.shape[-1])
    want, _ = explicit_attention(q, k, v, scale, grid, tables, slopes, metric)
    bias = library_bias(q, grid, tables, slopes, metric)
    if bias.is_empty:
        assert choose_path(2, 3, bias, path) == "sdpa"
    got = attend(q, k, v, scale, bias, path=path)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
def test_bias_rows_and_probs_match_explicit(metric):
    grid = (5, 4)
    q, k, v, tables, slopes = make_case(grid)
    scale = 0.4
    _, probs = explicit_attention(q, k, v, scale, grid, tables, slopes, metric)
    bias = library_bias(q, grid, tables, slopes, metric)
    torch.testing.assert_close(A.attention_probs(q, k, scale, bias), probs, atol=1e-5, rtol=1e-4)
    index = torch.tensor([0, 7, 19, 3])
    torch.testing.assert_close(
        A.attention_probs(q, k, scale, bias, index), probs[:, :, index], atol=1e-5, rtol=1e-4
    )
    # Rows aligned on the grid (the chunked builder) and unaligned rows (gathered).
    for rows in (slice(4, 12), slice(3, 10)):
        got = A.bias_rows(bias, rows, torch.float32)
        want = A.bias_rows(bias, torch.arange(20)[rows], torch.float32)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_relative_distance_table_holds_every_mask_row():
    grid = (4, 6)
    table = A.relative_distances(grid, "flat", torch.device("cpu"))
    full = explicit_mask(grid, torch.tensor([-1.0]), "flat")[0, 0]
    for r in range(grid[0]):
        for c in range(grid[1]):
            row = table[c, grid[0] - 1 - r : 2 * grid[0] - 1 - r].flatten()
            torch.testing.assert_close(row, full[r * grid[1] + c])


def test_sdpa_path_refuses_a_bias():
    q, k, v, tables, slopes = make_case((3, 3))
    with pytest.raises(ValueError, match="without bias"):
        attend(q, k, v, 0.3, library_bias(q, (3, 3), tables, slopes, "euclidean"), path="sdpa")


def placeholder_bias(grid, rel_pos=True, mask=True) -> AttentionBias:
    """A bias with the right structure but no data: choose_path only looks at shapes."""
    t = torch.empty(0)
    return AttentionBias(grid, t if rel_pos else None, t if rel_pos else None, t if mask else None)


def test_auto_path_by_size():
    # ViT-B global block at 2048 px: 128 x 128 tokens, 12 heads. A dense bias would take 12 GiB.
    big = placeholder_bias((128, 128))
    assert A.dense_bias_bytes(1, 12, big) > A.DENSE_BIAS_BUDGET
    assert choose_path(1, 12, big) == "chunked"
    assert choose_path(1, 12, big, requires_grad=True) == "folded"
    # Both bounded paths keep a chunk's bias within the budget (one grid row at the least).
    rows = A.chunk_grid_rows(1, 12, big)
    row_bytes = 12 * 128 * 128 * 128 * 4
    assert rows * row_bytes <= max(A.CHUNK_BIAS_BYTES, row_bytes)
    # Even a grid that is allowed dense by size is chunked once the dense bias exceeds budget.
    many = placeholder_bias((40, 40))
    assert A.dense_bias_bytes(64, 12, many) > A.DENSE_BIAS_BUDGET
    assert choose_path(64, 12, many) == "chunked"
    # Small grids: dense. No bias at all: plain SDPA, whatever the size.
    assert choose_path(2, 6, placeholder_bias((16, 16))) == "dense"
    assert choose_path(1, 12, placeholder_bias((128, 128), False, False)) == "sdpa"
    assert choose_path(1, 12, placeholder_bias((16, 16)), "chunked") == "chunked"
    with pytest.raises(ValueError, match="attention path"):
        choose_path(1, 12, big, "flash")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["auto", "dense", "chunked", "folded"])
@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
@pytest.mark.parametrize("learned_gain", [False, True])
def test_gradients_match_explicit(path, metric, learned_gain, monkeypatch):
    monkeypatch.setattr(A, "CHUNK_BIAS_BYTES", 1)  # several chunks on the chunked path
    grid = (4, 3)
    q0, k0, v0, tables0, slopes0 = make_case(grid, batch=2, heads=2, dim=4)
    weight = torch.randn(q0.shape)

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in (q0, k0, v0, *tables0)]
        gain = torch.tensor(1.5, requires_grad=learned_gain)
        q, k, v, th, tw = leaves
        out = fn(q, k, v, (th, tw), slopes0 * gain)  # a constant or a learnable gain
        (out * weight).sum().backward()
        return [t.grad for t in leaves] + ([gain.grad] if learned_gain else [])

    want = grads(lambda q, k, v, t, s: explicit_attention(q, k, v, 0.5, grid, t, s, metric)[0])
    got = grads(
        lambda q, k, v, t, s: attend(q, k, v, 0.5, library_bias(q, grid, t, s, metric), path)
    )
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def backward_ops(out: torch.Tensor) -> set[str]:
    """Names of every autograd node behind ``out``."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or type(fn).__name__ in seen:
            continue
        seen.add(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    return seen


def test_training_default_path_is_folded_and_fused():
    """With gradients, auto runs the folded path: the fused kernel's backward, no N^2 bias."""
    grid = (4, 4)
    q, k, v, tables, slopes = make_case(grid)
    q.requires_grad_()
    bias = library_bias(q, grid, tables, slopes, "euclidean")
    assert choose_path(2, 3, bias, requires_grad=A._needs_grad(q, k, v, bias)) == "folded"
    ops = backward_ops(attend(q, k, v, 0.3, bias))
    assert any("FlashAttention" in name for name in ops), ops
    with torch.no_grad():
        assert choose_path(2, 3, bias, requires_grad=A._needs_grad(q, k, v, bias)) == "dense"


def block_reference(sam, block_index, x, queries):
    """Explicit probabilities of ``queries`` in a global block from its attention input ``x``."""
    attn = sam.image_encoder.blocks[block_index].attn
    b, rows, cols, _ = x.shape
    n = rows * cols
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    scale = bl.attention_scale(n, 16 * 16, "log_ratio") / math.sqrt(q.shape[-1])
    slopes = bl.alibi_slopes(attn.num_heads)
    tables = (attn.rel_pos_h, attn.rel_pos_w)
    _, probs = explicit_attention(q, k, v, scale, (rows, cols), tables, slopes, "euclidean")
    return probs[:, :, queries]


@pytest.mark.parametrize("path", ["chunked", "folded"])
def test_capture_matches_explicit_when_a_bounded_path_runs(path, monkeypatch):
    monkeypatch.setattr(A, "CHUNK_BIAS_BYTES", 1)
    sam = bl.build_sam("tiny")
    bl.set_input_size(sam, 384)  # 24 x 24 tokens
    bl.apply_basam(sam, bl.BASAMConfig.paper().with_(path=path))
    block = sam.image_encoder.blocks[2]
    assert block.window_size == 0
    inputs = {}
    handle = block.attn.register_forward_pre_hook(lambda m, a: inputs.setdefault("x", a[0]))
    image = torch.randn(1, 3, 384, 384)
    queries = [(0, 0), (5, 17), (23, 23)]
    with torch.no_grad(), bl.capture_attention(sam, blocks=[2], queries=queries) as cap:
        out = sam.image_encoder(image)
    handle.remove()
    index = [r * 24 + c for r, c in queries]
    with torch.no_grad():
        want = block_reference(sam, 2, inputs["x"], index)
    torch.testing.assert_close(cap.maps[2], want, atol=1e-5, rtol=1e-4)
    # The bounded path gives the dense path's encoder output.
    bl.apply_basam(sam, bl.BASAMConfig.paper().with_(path="dense"))
    with torch.no_grad():
        torch.testing.assert_close(sam.image_encoder(image), out, atol=1e-4, rtol=1e-4)


def test_config_accepts_every_path():
    for path in A.ATTENTION_PATHS:
        assert bl.BASAMConfig(path=path).path == path
    with pytest.raises(ValueError, match="attention path"):
        bl.BASAMConfig(path="flex")  # type: ignore[arg-type]


def test_bench_quick_smoke(tmp_path):
    out = tmp_path / "bench.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "basam_lite", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text()
    for case in ("sam_block", "basam_paper", "basam_vanilla", "floor"):
        assert case in text
    assert "(a)/(b)" in proc.stdout


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("rel_pos", [True, False])
def test_distance_scale_multiplies_the_mask_on_every_path(path, metric, rel_pos, chunk_bytes):
    """The base-unit mask: distances times s, on every path, against the explicit softmax."""
    grid, s = (6, 5), 0.375
    q, k, v, tables, slopes = make_case(grid, rel_pos=rel_pos)
    scale = 0.9 / math.sqrt(q.shape[-1])
    # -m_h * (s * dist) written as the explicit mask with slopes m_h * s.
    want, probs = explicit_attention(q, k, v, scale, grid, tables, slopes * s, metric)
    bias = library_bias(q, grid, tables, slopes, metric)
    bias.distance_scale = s
    torch.testing.assert_close(attend(q, k, v, scale, bias, path=path), want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(A.attention_probs(q, k, scale, bias), probs, atol=1e-5, rtol=1e-4)
    index = torch.tensor([0, 7, 29])
    torch.testing.assert_close(
        A.attention_probs(q, k, scale, bias, index), probs[:, :, index], atol=1e-5, rtol=1e-4
    )
