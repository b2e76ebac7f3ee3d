"""SAM's mask decoder run on many prompts of many images in one call, for training.

``MaskDecoder.forward`` takes one image embedding and copies it once per prompt, so a training
batch of B images with several prompts each costs one decoder call per image (or per prompt,
when the prompts' token counts differ). :func:`decode_prompts` instead gathers, for every
prompt, the embedding of the image it belongs to and runs the decoder's own submodules once per
distinct sparse token count. It computes what one ``sam.mask_decoder(...)`` call per prompt
computes (a test checks it against that, values and gradients), only in fewer, larger
operations: a whole tiny-SAM training step is about 1.2 times faster (``python -m basam_lite
train --time-steps 10 --threads 1`` times both side by side).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from segment_anything.modeling import Sam
from torch import Tensor

from .datasets import Prompt


def prompt_tokens(sam: Sam, prompt: Prompt) -> Tensor:
    """A prompt's sparse embedding ``[1, T, C]`` (T = its point and box-corner tokens, plus
    SAM's padding point when there is no box)."""
    points = None
    if prompt.point_coords is not None:
        points = (
            torch.as_tensor(prompt.point_coords, dtype=torch.float32)[None],
            torch.as_tensor(prompt.point_labels, dtype=torch.int64)[None],
        )
    boxes = None if prompt.box is None else torch.as_tensor(prompt.box, dtype=torch.float32)[None]
    sparse, _ = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    return sparse


def decode_tokens(sam: Sam, embeddings: Tensor, sparse: Tensor) -> tuple[Tensor, Tensor]:
    """Single-mask decoding of N prompts, each with its own image embedding.

    ``embeddings``: ``[N, C, h, w]``, row n the embedding of prompt n's image; ``sparse``:
    ``[N, T, C]``. Returns low-res logits ``[N, 1, 4h, 4w]`` and predicted IoU ``[N, 1]``.
    Equals ``sam.mask_decoder(embeddings[n:n+1], pe, sparse[n:n+1], dense, False)`` row by row.
    """
    dec = sam.mask_decoder
    n, c, h, w = embeddings.shape
    # Output tokens first (IoU token, then one token per mask), then the prompt's tokens.
    outputs = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight])[None].expand(n, -1, -1)
    tokens = torch.cat([outputs, sparse], dim=1)
    # No mask prompt: the dense prompt is the learned "no mask" embedding at every position.
    src = embeddings + sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    pos = sam.prompt_encoder.get_dense_pe().expand(n, -1, -1, -1)
    hs, src = dec.transformer(src, pos, tokens)
    features = dec.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))  # [N, c', 4h, 4w]
    # Every mask token's hypernetwork runs, as in SAM, so that the unused multimask heads get
    # (zero) gradients and the same weight decay as with per-prompt decoding.
    hyper = torch.stack(
        [mlp(hs[:, 1 + k]) for k, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1
    )  # [N, K, c']
    masks = (hyper @ features.flatten(2)).unflatten(2, features.shape[-2:])  # [N, K, 4h, 4w]
    iou = dec.iou_prediction_head(hs[:, 0])  # [N, K]
    return masks[:, :1], iou[:, :1]


def decode_prompts(
    sam: Sam, embeddings: Tensor, image_index: Sequence[int], prompts: Sequence[Prompt]
) -> tuple[Tensor, Tensor]:
    """Single-mask decoding of ``prompts[n]`` on image ``image_index[n]`` of ``embeddings``
    ``[B, C, h, w]``; one decoder pass per distinct prompt token count. Returns low-res logits
    ``[N, 1, 4h, 4w]`` and predicted IoU ``[N, 1]`` in the order of ``prompts``."""
    if len(image_index) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(image_index)} image indices")
    if not prompts:
        raise ValueError("no prompts to decode")
    bad = [i for i in image_index if not 0 <= i < len(embeddings)]
    if bad:
        raise ValueError(
            f"image index {bad[0]} is out of range for {len(embeddings)} embeddings: each "
            "prompt needs the row of its own image in `embeddings`"
        )
    sparse = [prompt_tokens(sam, p) for p in prompts]
    groups: dict[int, list[int]] = {}
    for n, s in enumerate(sparse):
        groups.setdefault(s.shape[1], []).append(n)
    index = torch.as_tensor(list(image_index))
    order = [n for members in groups.values() for n in members]
    parts = [
        decode_tokens(sam, embeddings[index[members]], torch.cat([sparse[n] for n in members]))
        for members in groups.values()
    ]
    back = torch.argsort(torch.as_tensor(order))  # grouped order -> the prompts' order
    return torch.cat([m for m, _ in parts])[back], torch.cat([q for _, q in parts])[back]
