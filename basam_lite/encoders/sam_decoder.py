"""Prompt encoding and mask decoding for the families built on ``segment_anything``'s
``PromptEncoder`` and ``MaskDecoder`` (SAM 1 and MobileSAM, whose ``mobile_sam`` package keeps
the same two classes): what their adapters' ``embed_prompts``, ``image_rows`` and
``decode_masks`` do.

One image shared by all prompts runs the family's own ``MaskDecoder.forward`` (which copies the
embedding once per prompt), exactly as ``SamPredictor.predict_torch`` calls it. One image per
prompt (a training batch) runs the decoder's own submodules once on all rows
(:func:`decode_rows`): ``MaskDecoder.forward`` cannot take a different image per prompt, and one
call per prompt is about 1.2 times slower for a whole tiny-SAM training step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def embed_prompts(
    model: nn.Module, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``model.prompt_encoder`` on N prompts: sparse ``[N, T, C]`` (T = P points, plus a padding
    point when there is no box, plus 2 box corners) and dense ``[N, C, h, w]`` (no mask)."""
    return model.prompt_encoder(points=points, boxes=boxes, masks=None)


def decode_masks(
    model: nn.Module, features: Tensor, sparse: Tensor, dense: Tensor, multimask: bool
) -> tuple[Tensor, Tensor]:
    """Low-res logits ``[N, K, 4h, 4w]`` and IoU ``[N, K]`` of N prompts on ``features``
    ``[N or 1, C, h, w]`` (K = 3 with ``multimask``, else 1)."""
    if features.shape[0] == 1:
        return model.mask_decoder(
            image_embeddings=features,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
    return decode_rows(model, features, sparse, dense, multimask)


def decode_rows(
    model: nn.Module, features: Tensor, sparse: Tensor, dense: Tensor, multimask: bool
) -> tuple[Tensor, Tensor]:
    """:func:`decode_masks` with row n of ``features [N, C, h, w]`` the image of prompt n:
    ``MaskDecoder.predict_masks`` without its copy of one embedding per prompt."""
    dec = model.mask_decoder
    n, c, h, w = features.shape
    if sparse.shape[0] != n:
        raise ValueError(f"{sparse.shape[0]} prompts but {n} image rows")
    # Output tokens first (IoU token, then one token per mask), then the prompt's tokens.
    outputs = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight])[None].expand(n, -1, -1)
    tokens = torch.cat([outputs, sparse], dim=1)
    src = features + dense
    pos = model.prompt_encoder.get_dense_pe().expand(n, -1, -1, -1)
    hs, src = dec.transformer(src, pos, tokens)
    upscaled = dec.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))  # [N, c', 4h, 4w]
    # Every mask token's hypernetwork runs, as in SAM, so that the heads not asked for get
    # (zero) gradients and the same weight decay as with SAM's own forward.
    hyper = torch.stack(
        [mlp(hs[:, 1 + k]) for k, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1
    )  # [N, K + 1, c']
    masks = (hyper @ upscaled.flatten(2)).unflatten(2, upscaled.shape[-2:])  # [N, K+1, 4h, 4w]
    iou = dec.iou_prediction_head(hs[:, 0])  # [N, K + 1]
    chosen = slice(1, None) if multimask else slice(0, 1)  # SAM's own choice of outputs
    return masks[:, chosen], iou[:, chosen]
