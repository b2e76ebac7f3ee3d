"""A family's mask decoder on the prompts of a batch of images: prompt by prompt, or batched.

Every function here works for any family whose adapter decodes
(:meth:`~basam_lite.encoders.EncoderAdapter.embed_prompts`, ``image_rows``, ``decode_masks``:
SAM 1, MobileSAM, SAM 2), on what the adapter's ``encode`` returned for a batch of images.

:func:`decode_one` is the family's prompt encoder and mask decoder called as its predictor calls
them, on one prompt; :func:`decode_each` stacks it over a batch's prompts.

A family's own decoder takes one image embedding and copies it once per prompt, so a training
batch of B images with several prompts each costs one decoder call per image (or per prompt,
when the prompts' token counts differ). :func:`decode_prompts` instead gathers, for every
prompt, the features of the image it belongs to and runs the decoder once per distinct prompt
token count. It computes what one decoder call per prompt computes (a test checks it against
that, values and gradients), only in fewer, larger operations: a whole tiny-SAM training step is
about 1.24 times faster (``python -m basam_lite train --time-steps 10 --threads 1`` times both
side by side).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .datasets import Prompt
from .encoders import adapter_for


def _device(sam: nn.Module) -> torch.device:
    return next(sam.parameters()).device  # the prompt's tensors where the model is


def encode_prompt(sam: nn.Module, prompt: Prompt) -> tuple[Tensor, Tensor]:
    """The family's prompt encoder on one prompt (in the model's input pixels): sparse
    ``[1, T, C]`` (T = its point and box-corner tokens, plus the family's padding point) and
    dense ``[1, C, h, w]``."""
    device = _device(sam)
    points = None
    if prompt.point_coords is not None:
        points = (
            torch.as_tensor(prompt.point_coords, dtype=torch.float32, device=device)[None],
            torch.as_tensor(prompt.point_labels, dtype=torch.int64, device=device)[None],
        )
    boxes = (
        None
        if prompt.box is None
        else torch.as_tensor(prompt.box, dtype=torch.float32, device=device)[None]
    )
    return adapter_for(sam).embed_prompts(points, boxes)


def decode_one(
    sam: nn.Module, features: Any, prompt: Prompt, multimask: bool = False
) -> tuple[Tensor, Tensor]:
    """The family's own decoder on one image's features (``encode``'s output for one image,
    e.g. ``[1, C, h, w]`` for SAM 1) and one prompt: low-res logits ``[1, K, 4h, 4w]`` and
    predicted IoU ``[1, K]`` (K = 1, or 3 with ``multimask``)."""
    sparse, dense = encode_prompt(sam, prompt)
    return adapter_for(sam).decode_masks(features, sparse, dense, multimask)


def image_rows(sam: nn.Module, features: Any, index: Sequence[int]) -> Any:
    """Rows ``index`` of ``encode``'s output for a batch (any family)."""
    device = _device(sam)
    return adapter_for(sam).image_rows(features, torch.as_tensor(list(index), device=device))


def decode_each(
    sam: nn.Module, embeddings: Any, image_index: Sequence[int], prompts: Sequence[Prompt]
) -> tuple[Tensor, Tensor]:
    """:func:`decode_one` prompt by prompt, stacked: what :func:`decode_prompts` computes, the
    way the shipped checkpoints were trained (``train --per-prompt-decoder``)."""
    _check(sam, embeddings, image_index, prompts)
    pairs = zip(image_index, prompts, strict=True)
    outs = [decode_one(sam, image_rows(sam, embeddings, [i]), p) for i, p in pairs]
    return torch.cat([low for low, _ in outs]), torch.cat([iou for _, iou in outs])


def decode_tokens(
    sam: nn.Module, embeddings: Any, sparse: Tensor, dense: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Single-mask decoding of N prompts, each with its own image's features.

    ``embeddings``: ``encode``'s output with N rows, row n the image of prompt n (``[N, C, h,
    w]`` for SAM 1); ``sparse``: ``[N, T, C]``; ``dense``: ``[N, C, h, w]`` (None: the family's
    "no mask" embedding). Returns low-res logits ``[N, 1, 4h, 4w]`` and predicted IoU
    ``[N, 1]``, row by row what the family's decoder gives on row n alone.
    """
    adapter = adapter_for(sam)
    if dense is None:
        _, dense = adapter.embed_prompts(None, None)  # no prompt: just the "no mask" map
        dense = dense.expand(sparse.shape[0], -1, -1, -1)
    return adapter.decode_masks(embeddings, sparse, dense, multimask=False)


def decode_prompts(
    sam: nn.Module, embeddings: Any, image_index: Sequence[int], prompts: Sequence[Prompt]
) -> tuple[Tensor, Tensor]:
    """Single-mask decoding of ``prompts[n]`` on image ``image_index[n]`` of ``embeddings``
    (``encode``'s output for B images); one decoder pass per distinct prompt token count.
    Returns low-res logits ``[N, 1, 4h, 4w]`` and predicted IoU ``[N, 1]`` in the order of
    ``prompts``."""
    _check(sam, embeddings, image_index, prompts)
    adapter = adapter_for(sam)
    encoded = [encode_prompt(sam, p) for p in prompts]
    groups: dict[int, list[int]] = {}
    for n, (sparse, _) in enumerate(encoded):
        groups.setdefault(sparse.shape[1], []).append(n)
    order = [n for members in groups.values() for n in members]
    parts = []
    for members in groups.values():
        rows = image_rows(sam, embeddings, [image_index[n] for n in members])
        sparse = torch.cat([encoded[n][0] for n in members])
        dense = torch.cat([encoded[n][1] for n in members])
        parts.append(adapter.decode_masks(rows, sparse, dense, multimask=False))
    back = torch.argsort(torch.as_tensor(order))  # grouped order -> the prompts' order
    return torch.cat([m for m, _ in parts])[back], torch.cat([q for _, q in parts])[back]


def batch_size(sam: nn.Module, embeddings: Any) -> int:
    """How many images ``encode``'s output ``embeddings`` holds (its first tensor's rows)."""
    first = embeddings
    while not isinstance(first, Tensor):
        first = next(iter(first.values())) if isinstance(first, dict) else first[0]
    return int(first.shape[0])


def _check(
    sam: nn.Module, embeddings: Any, image_index: Sequence[int], prompts: Sequence[Prompt]
) -> None:
    if len(image_index) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(image_index)} image indices")
    if not prompts:
        raise ValueError("no prompts to decode")
    n = batch_size(sam, embeddings)
    bad = [i for i in image_index if not 0 <= i < n]
    if bad:
        raise ValueError(
            f"image index {bad[0]} is out of range for {n} embeddings: each "
            "prompt needs the row of its own image in `embeddings`"
        )
