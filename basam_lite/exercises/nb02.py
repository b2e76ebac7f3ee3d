"""Checkers for notebook 02 (resolution is sequence length)."""

from __future__ import annotations

from . import Verdict, close, verdict


def check_global_keys(answer: object) -> Verdict:
    """Keys per softmax row in a global block of SAM ViT-B at 768 x 768 px."""
    return verdict(
        close(answer, 48 * 48, rel=0, abs_tol=0.5),
        "a global block attends to every token of the image: (768 / 16)^2 keys.",
        "count the patches: 16 px each side, over the whole image (not one window).",
    )


def check_dense_memory(answer: object) -> Verdict:
    """GiB of one dense fp32 [heads, N, N] attention tensor of ViT-H (16 heads) at 2048 px."""
    expected = 16 * (128 * 128) ** 2 * 4 / 2**30
    return verdict(
        close(answer, expected, rel=1e-3),
        "heads x N x N x 4 bytes, with N = 128 x 128 tokens: memory grows like side^4.",
        "N is the number of tokens at 2048 px; the tensor has heads * N * N fp32 numbers "
        "(4 bytes each); 1 GiB = 2**30 bytes. token_table(..., heads=16) can check you.",
    )


def check_window_keys(answer: object) -> Verdict:
    """Keys per softmax row in a windowed block of ViT-B at 2048 px."""
    return verdict(
        close(answer, 14 * 14, rel=0, abs_tol=0.5),
        "a windowed block only sees its own 14 x 14 window, whatever the resolution.",
        "a windowed block never sees the whole image: what is the size of one window?",
    )
