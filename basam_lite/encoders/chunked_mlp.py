r"""Token-chunked MLPs: the same ``lin2(act(lin1(x)))`` of ``segment_anything``'s ``MLPBlock``,
run on slices of the tokens when there is no autograd and the hidden activations would be large.

At 2048 px a ViT-B block's MLP holds ``N x 4C`` hidden activations twice (``lin1``'s output and
the GELU's), 2 x 192 MiB for N = 128 x 128 tokens, C = 768: the highest peaks of the whole
encoder's forward once attention runs in query chunks. Every token's MLP is independent of the
others', so running it on slices of at most :data:`MLP_CHUNK_BYTES` of hidden activations
computes the same function with a peak of one slice (written into one preallocated output).

:func:`chunked_mlps` gives the blocks' ``MLPBlock`` modules this behaviour for the duration of
one forward (``SizedEncoder.forward`` uses it), and only where it changes the peak: no autograd
(a training step keeps the activations for the backward anyway) and more hidden bytes than one
slice. Below that (1024 px and less for ViT-B) nothing is swapped, so those forwards are the
unchunked computation exactly. Module hooks still fire (only ``forward`` differs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from segment_anything.modeling.common import MLPBlock
from torch import Tensor, nn

MLP_CHUNK_BYTES = 64 << 20
"""Hidden-activation bytes of one slice of tokens (``tokens x mlp_dim x itemsize``)."""


def tokens_per_chunk(mlp: MLPBlock, itemsize: int) -> int:
    """Tokens per slice: at most :data:`MLP_CHUNK_BYTES` of ``lin1``'s output, at least one."""
    return max(1, MLP_CHUNK_BYTES // (mlp.lin1.out_features * itemsize))


class TokenChunkedMLP(MLPBlock):
    """``MLPBlock`` whose forward runs on slices of the tokens: ``x [..., C]`` in, ``[..., C]``
    out, the slices' outputs written into one tensor (no list, no concatenated copy)."""

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])  # a view for the contiguous [B, rows, cols, C]
        n = flat.shape[0]
        step = tokens_per_chunk(self, flat.element_size())
        if n <= step:
            return super().forward(x)
        out = flat.new_empty(n, self.lin2.out_features)
        for s in range(0, n, step):
            out[s : s + step] = super().forward(flat[s : s + step])
        return out.view(*x.shape[:-1], -1)


@contextmanager
def chunked_mlps(blocks: Iterable[nn.Module], tokens: int) -> Iterator[None]:
    """Within the ``with``: each block's ``mlp`` that is a plain ``MLPBlock`` runs as
    :class:`TokenChunkedMLP` when autograd is off and ``tokens`` (per image batch) would need
    more than one slice; the classes are restored on exit, whatever happens inside."""
    swapped: list[nn.Module] = []
    if not torch.is_grad_enabled():
        for block in blocks:
            mlp = getattr(block, "mlp", None)
            if type(mlp) is MLPBlock and tokens > tokens_per_chunk(mlp, 4):
                mlp.__class__ = TokenChunkedMLP
                swapped.append(mlp)
    try:
        yield
    finally:
        for mlp in swapped:
            mlp.__class__ = MLPBlock
