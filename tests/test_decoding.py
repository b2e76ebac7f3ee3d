"""Batched mask decoding against SAM's own decoder, called once per prompt (``decode_one`` is
SAM's prompt encoder and mask decoder called as ``SamPredictor`` calls them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basam_lite.datasets import Prompt
from basam_lite.decoding import decode_each, decode_one, decode_prompts

# One prompt of every token count the training recipe makes: a box (2 corner tokens), one click
# (plus SAM's padding point), three clicks (plus padding), a box and a click (3 tokens).
PROMPTS = [
    Prompt(box=np.array([40.0, 60.0, 200.0, 180.0])),
    Prompt(np.array([[100.0, 30.0]]), np.array([1])),
    Prompt(np.array([[10.0, 20.0], [200.0, 240.0], [128.0, 128.0]]), np.array([1, 0, 1])),
    Prompt(np.array([[90.0, 90.0]]), np.array([1]), np.array([50.0, 50.0, 150.0, 170.0])),
    Prompt(box=np.array([0.0, 0.0, 255.0, 100.0])),
    Prompt(np.array([[5.0, 250.0]]), np.array([1])),
]
IMAGE_INDEX = [2, 0, 1, 0, 1, 2]


def embeddings_of(sam, n: int = 3) -> torch.Tensor:
    c, (h, w) = sam.prompt_encoder.embed_dim, sam.prompt_encoder.image_embedding_size
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(1))


def test_batched_decoding_equals_sams_decoder_prompt_by_prompt(tiny_sam):
    emb = embeddings_of(tiny_sam)
    low, iou = decode_prompts(tiny_sam, emb, IMAGE_INDEX, PROMPTS)
    h, w = emb.shape[-2:]
    assert low.shape == (len(PROMPTS), 1, 4 * h, 4 * w) and iou.shape == (len(PROMPTS), 1)
    for n, (i, prompt) in enumerate(zip(IMAGE_INDEX, PROMPTS, strict=True)):
        ref_low, ref_iou = decode_one(tiny_sam, emb[i : i + 1], prompt)
        torch.testing.assert_close(low[n : n + 1], ref_low, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(iou[n : n + 1], ref_iou, rtol=1e-4, atol=1e-5)


def test_batched_decoding_has_the_same_gradients(tiny_sam):
    emb = embeddings_of(tiny_sam).requires_grad_()
    params = [emb, *tiny_sam.parameters()]

    def grads(low, iou):
        loss = low.sigmoid().square().mean() + iou.square().sum()
        return torch.autograd.grad(loss, params, allow_unused=True)

    batched = grads(*decode_prompts(tiny_sam, emb, IMAGE_INDEX, PROMPTS))
    reference = grads(*decode_each(tiny_sam, emb, IMAGE_INDEX, PROMPTS))
    scale = max(float(g.abs().max()) for g in reference if g is not None)
    for got, want in zip(batched, reference, strict=True):
        assert (got is None) == (want is None)  # same parameters reached, multimask heads too
        if want is not None:
            # Key-projection biases get only rounding noise (softmax ignores a shift shared by
            # all keys), so compare against the largest gradient rather than each tensor's own.
            torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("decode", [decode_prompts, decode_each])
def test_bad_decoding_input_is_refused(tiny_sam, decode):
    emb = embeddings_of(tiny_sam)
    with pytest.raises(ValueError, match="3 prompts but 2 image indices"):
        decode(tiny_sam, emb, [0, 1], PROMPTS[:3])
    with pytest.raises(ValueError, match="no prompts"):
        decode(tiny_sam, emb, [], [])
    with pytest.raises(ValueError, match="image index 3 is out of range for 3 embeddings"):
        decode(tiny_sam, emb, [0, 3], PROMPTS[:2])
