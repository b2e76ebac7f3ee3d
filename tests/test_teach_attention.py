"""Notebook 02's build-it exercise: a learner assembles a global block's BA-SAM attention from the
block's own q, k, v; the checker's reference is the block's own computation, and typical mistakes
are named without the recipe."""

from __future__ import annotations

import math

import pytest
import torch

from basam_lite import analysis

# --- notebook 02: build a global block's BA-SAM attention -----------------------------------------


def attention_by_hand(q, k, v, lam, rel_h, rel_w, mask):
    """Section 5's formula with explicit loops over key positions (the independent reference)."""
    rows, cols = rel_h.shape[-1], rel_w.shape[-1]
    logits = torch.empty(*q.shape[:-1], rows * cols, dtype=q.dtype)
    for j in range(rows * cols):
        r, c = divmod(j, cols)
        content = (q * k[..., j : j + 1, :]).sum(-1) / math.sqrt(q.shape[-1])
        logits[..., j] = lam * content + rel_h[..., r] + rel_w[..., c] + mask[..., j]
    weights = torch.exp(logits - logits.max(-1, keepdim=True).values)
    return (weights / weights.sum(-1, keepdim=True)) @ v


@pytest.fixture(scope="module")
def tiny():
    import basam_lite as bl

    sam = bl.build_sam("tiny")
    analysis.perturb_rel_pos(
        sam, std=0.3, seed=0
    )  # random-weight tables are zero: give them values
    return sam


def test_library_attention_is_what_the_patched_block_computes(tiny) -> None:
    """The checker's reference, fed the inputs read from the block, reproduces the block's own
    output (after the block's output projection)."""
    import basam_lite as bl
    from basam_lite.exercises import nb02

    inputs = nb02.global_block_inputs(tiny, 128)
    attn = tiny.image_encoder.blocks[analysis.global_blocks(tiny)[0]].attn
    seen = {}
    handle = attn.register_forward_hook(lambda m, a, out: seen.__setitem__("out", out))
    try:
        inputs_again = nb02.global_block_inputs(tiny, 128)
    finally:
        handle.remove()
    assert torch.equal(inputs.q, inputs_again.q)  # seeded: the same block inputs every time
    b, h, _, d = inputs.q.shape
    rows, cols = inputs.grid_hw
    assert (rows, cols) == (8, 8) and inputs.lam == pytest.approx(math.log(64) / math.log(256))
    heads_out = nb02.library_attention(*inputs.args())
    mine = attn.proj(heads_out.transpose(1, 2).reshape(b, rows, cols, h * d))
    torch.testing.assert_close(mine, seen["out"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(heads_out, attention_by_hand(*inputs.args()), rtol=1e-4, atol=1e-5)
    assert inputs.rel_h.abs().max() > 0.1  # the rel-pos term is really there
    assert not bl.is_patched(tiny)  # the model is back as it was


def test_check_basam_attention_accepts_the_formula(tiny, capsys) -> None:
    from basam_lite.exercises import nb02

    assert nb02.check_basam_attention(attention_by_hand, tiny)
    assert nb02.check_basam_attention(nb02.library_attention)  # synthetic cases only
    assert "Correct" in capsys.readouterr().out


def _wrong(kind: str):
    def fn(q, k, v, lam, rel_h, rel_w, mask):
        rows, cols = rel_h.shape[-1], rel_w.shape[-1]
        content = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        rel = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(*rel_h.shape[:-1], rows * cols)
        logits = {
            "scale after mask": lam * (content + rel + mask),
            "no rel-pos": lam * content + mask,
            "mask sign": lam * content + rel - mask,
            "no sqrt": lam * content * math.sqrt(q.shape[-1]) + rel + mask,
            "queries": lam * content + rel + mask,
        }[kind]
        return logits.softmax(-2 if kind == "queries" else -1) @ v

    return fn


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("scale after mask", "lambda multiplies the rel-pos term and the mask too"),
        ("no rel-pos", "rel-pos term is missing"),
        ("mask sign", "sign is flipped"),
        ("no sqrt", "not divided by sqrt(d)"),
        ("queries", "softmax runs over the queries"),
    ],
)
def test_check_basam_attention_names_the_typical_mistake(kind, why, tiny, capsys) -> None:
    from basam_lite.exercises import nb02

    assert not nb02.check_basam_attention(_wrong(kind), tiny)
    out = capsys.readouterr().out
    assert why in out
    assert "ln n" not in out and "softmax(" not in out  # a hint names the slip, not the recipe


def test_check_basam_attention_a_subtle_slip_and_errors(capsys) -> None:
    from basam_lite.exercises import nb02

    def swapped(q, k, v, lam, rel_h, rel_w, mask):  # rel_h read along the key's column
        content = lam * q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        rel = (rel_h[..., None, :] + rel_w[..., :, None]).flatten(-2)
        return (content + rel + mask).softmax(-1) @ v

    assert not nb02.check_basam_attention(swapped)
    assert "wrong way round" in capsys.readouterr().out
    assert not nb02.check_basam_attention(lambda *a: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert not nb02.check_basam_attention(lambda q, *a: q[..., :1])
    assert "shape" in capsys.readouterr().out
