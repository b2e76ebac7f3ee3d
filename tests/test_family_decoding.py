"""Mask decoding behind the family adapters (``embed_prompts``, ``image_rows``,
``decode_masks``) against each family's own predictor, and the tiny SAM 1's results unchanged.

References: ``segment_anything``'s ``SamPredictor``, ``sam2``'s ``SAM2ImagePredictor`` and
``mobile_sam``'s ``SamPredictor`` (through the project's subclasses, which only follow the input
size and check prompts), on random weights at the base size and at another size. Tolerance: the
predictors compute the same operations on the same features, so logits agree to 1e-4 (absolute
and relative; float32 rounding of a different but equal batching, nothing more).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import basam_lite as bl
from basam_lite.datasets import Prompt
from basam_lite.decoding import decode_each, decode_one, decode_prompts, image_rows
from basam_lite.encoders import adapter_for
from basam_lite.evaluation import image_batch

# A box, one click, three clicks (one background), a box and a click; integer pixels (the
# predictors rescale coordinates by size ratios, exact for whole numbers at ratio 1).
PROMPTS = [
    Prompt(box=np.array([40.0, 60.0, 200.0, 180.0])),
    Prompt(np.array([[100.0, 30.0]]), np.array([1])),
    Prompt(np.array([[10.0, 20.0], [200.0, 240.0], [128.0, 128.0]]), np.array([1, 0, 1])),
    Prompt(np.array([[90.0, 90.0]]), np.array([1]), np.array([50.0, 50.0, 150.0, 170.0])),
]

# (model, base side, another side its family takes)
FAMILIES = [
    ("tiny", 256, 320),
    ("sam2-tiny", 256, 320),
    ("mobilesam-tiny", 1024, 512),
    ("hf-tiny", 256, 320),
]


def _image(side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("which", ["base", "other"])
@pytest.mark.parametrize(("name", "base", "other"), FAMILIES)
def test_decode_equals_the_familys_own_predictor(name, base, other, which, multimask):
    model = bl.build_sam(name)
    side = base if which == "base" else other
    bl.set_input_size(model, side)
    image = _image(side)
    predictor = bl.predictor_for(model)
    predictor.set_image(image)
    adapter = adapter_for(model)
    with torch.no_grad():
        features = adapter.encode(adapter.preprocess(image_batch([image])))
        for prompt in PROMPTS:
            _, ref_iou, ref_low = predictor.predict(
                prompt.point_coords, prompt.point_labels, prompt.box, multimask_output=multimask
            )
            low, iou = decode_one(model, features, prompt, multimask=multimask)
            k = 3 if multimask else 1
            assert low.shape == (1, k, side // 4, side // 4) and iou.shape == (1, k)
            if name == "sam2-tiny":  # SAM2ImagePredictor returns its logits clamped to +-32
                low = low.clamp(-32.0, 32.0)
            np.testing.assert_allclose(low[0].numpy(), ref_low, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(iou[0].numpy(), ref_iou, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["sam2-tiny", "mobilesam-tiny", "hf-tiny"])
def test_batched_decoding_equals_prompt_by_prompt_in_other_families(name):
    """decode_prompts (one decoder pass per token count, a different image per prompt) against
    decode_each (the family's own decoder call per prompt), in train mode as training runs."""
    model = bl.build_sam(name)
    side = 256
    bl.set_input_size(model, side)
    model.train()
    adapter = adapter_for(model)
    images = [_image(side, s) for s in range(3)]
    index = [2, 0, 1, 0]
    with torch.no_grad():
        features = adapter.encode(adapter.preprocess(image_batch(images)))
        low, iou = decode_prompts(model, features, index, PROMPTS)
        ref_low, ref_iou = decode_each(model, features, index, PROMPTS)
    assert low.shape == (4, 1, side // 4, side // 4) and iou.shape == (4, 1)
    torch.testing.assert_close(low, ref_low, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(iou, ref_iou, rtol=1e-4, atol=1e-5)


def test_sam2_rows_pick_each_prompts_own_image():
    model = bl.build_sam("sam2-tiny")
    adapter = adapter_for(model)
    with torch.no_grad():
        features = adapter.encode(adapter.preprocess(image_batch([_image(256, s) for s in (0, 1)])))
        alone = adapter.encode(adapter.preprocess(image_batch([_image(256, 1)])))
        picked = image_rows(model, features, [1])
        a = decode_one(model, picked, PROMPTS[0])
        b = decode_one(model, alone, PROMPTS[0])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_tiny_sam1_decoding_is_bit_for_bit_what_it_was():
    """The committed tiny-SAM results were computed with SAM's prompt encoder and mask decoder
    called directly (the code before the adapters): the same calls, written out here, give
    exactly the same bits, one prompt at a time (evaluation) and batched (training)."""
    sam = bl.build_sam("tiny-vanilla")
    adapter = adapter_for(sam)
    images = [_image(256, s) for s in range(3)]
    index = [2, 0, 1, 0]
    with torch.no_grad():
        emb = adapter.encode(adapter.preprocess(image_batch(images)))
        sparse_all = []
        for i, prompt in zip(index, PROMPTS, strict=True):
            points = None
            if prompt.point_coords is not None:
                points = (
                    torch.as_tensor(prompt.point_coords, dtype=torch.float32)[None],
                    torch.as_tensor(prompt.point_labels, dtype=torch.int64)[None],
                )
            box = None if prompt.box is None else torch.as_tensor(prompt.box).float()[None]
            sparse, dense = sam.prompt_encoder(points=points, boxes=box, masks=None)
            sparse_all.append(sparse)
            want = sam.mask_decoder(
                image_embeddings=emb[i : i + 1],
                image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            got = decode_one(sam, image_rows(sam, emb, [i]), prompt)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        # batched: the old decode_tokens, written out, on the prompts with 2 tokens (box) and
        # with 2 tokens (click + padding point): one group
        members = [0, 1]
        dec, pe = sam.mask_decoder, sam.prompt_encoder
        rows = emb[torch.as_tensor([index[n] for n in members])]
        n = len(members)
        out = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight])[None].expand(n, -1, -1)
        tokens = torch.cat([out, torch.cat([sparse_all[m] for m in members])], dim=1)
        src = rows + pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        hs, src = dec.transformer(src, pe.get_dense_pe().expand(n, -1, -1, -1), tokens)
        c, h, w = rows.shape[1:]
        feats = dec.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))
        hyper = torch.stack(
            [mlp(hs[:, 1 + k]) for k, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1
        )
        want_low = (hyper @ feats.flatten(2)).unflatten(2, feats.shape[-2:])[:, :1]
        want_iou = dec.iou_prediction_head(hs[:, 0])[:, :1]
        got_low, got_iou = decode_prompts(sam, emb, [index[m] for m in members], PROMPTS[:2])
    assert torch.equal(got_low, want_low) and torch.equal(got_iou, want_iou)


@pytest.mark.parametrize("name", ["tiny", "sam2-tiny", "mobilesam-tiny", "hf-tiny"])
def test_rows_that_fit_neither_one_image_nor_one_per_prompt_are_refused(name):
    model = bl.build_sam(name)
    side = 256
    bl.set_input_size(model, side)
    adapter = adapter_for(model)
    with torch.no_grad():
        features = adapter.encode(
            adapter.preprocess(image_batch([_image(side, s) for s in (0, 1)]))
        )
        sparse, dense = adapter.embed_prompts(None, torch.tensor([[10.0, 10, 90, 90]] * 3))
        with pytest.raises(ValueError, match="3 prompts but 2 image rows"):
            adapter.decode_masks(features, sparse, dense)
