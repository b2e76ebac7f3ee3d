"""Token-chunked MLPs (``basam_lite.encoders.chunked_mlp``): the same function as SAM's own
``MLPBlock`` on every token, swapped in only without autograd and only when more than one slice
is needed, restored afterwards; hooks still fire."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling.common import MLPBlock

from basam_lite.encoders import chunked_mlp as cm


@pytest.fixture
def small_slices(monkeypatch):
    monkeypatch.setattr(cm, "MLP_CHUNK_BYTES", 7 * 32 * 4)  # 7 tokens of a 32-wide hidden layer


def mlp_and_input() -> tuple[MLPBlock, torch.Tensor]:
    torch.manual_seed(0)
    return MLPBlock(8, 32), torch.randn(2, 5, 6, 8)  # 60 tokens: 8 full slices of 7 and 4


def test_chunked_mlp_is_sams_mlp_on_every_token(small_slices):
    mlp, x = mlp_and_input()
    with torch.no_grad():
        want = mlp.lin2(torch.nn.functional.gelu(mlp.lin1(x)))  # the formula written out
        with cm.chunked_mlps([torch.nn.Module()], 0):  # a block without an mlp is skipped
            pass
        block = torch.nn.Module()
        block.mlp = mlp
        with cm.chunked_mlps([block], tokens=60):
            assert type(mlp) is cm.TokenChunkedMLP
            got = mlp(x)
    assert type(mlp) is MLPBlock  # restored
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_no_swap_under_autograd_or_when_one_slice_holds_all(small_slices):
    mlp, _ = mlp_and_input()
    block = torch.nn.Module()
    block.mlp = mlp
    with cm.chunked_mlps([block], tokens=60):  # autograd on: activations are kept anyway
        assert type(mlp) is MLPBlock
    with torch.no_grad(), cm.chunked_mlps([block], tokens=7):  # one slice: nothing to gain
        assert type(mlp) is MLPBlock


def test_classes_are_restored_after_an_error_and_hooks_fire(small_slices):
    mlp, x = mlp_and_input()
    block = torch.nn.Module()
    block.mlp = mlp
    seen = []
    mlp.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    with pytest.raises(RuntimeError, match="inside"), torch.no_grad():
        with cm.chunked_mlps([block], tokens=60):
            mlp(x)
            raise RuntimeError("inside")
    assert type(mlp) is MLPBlock and seen == [(2, 5, 6, 8)]


def test_a_sized_vit_encoder_gives_the_same_features_with_chunked_mlps(monkeypatch):
    """The whole SAM 1 encoder off its base size: chunked MLPs (forced with tiny slices) against
    the same encoder with chunking disabled."""
    import basam_lite as bl

    sam = bl.build_sam("tiny")
    bl.set_input_size(sam, 320)
    bl.apply_basam(sam, bl.BASAMConfig.paper())
    x = torch.randn(1, 3, 320, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        monkeypatch.setattr(cm, "MLP_CHUNK_BYTES", 1 << 40)
        whole = sam.image_encoder(x)
        monkeypatch.setattr(cm, "MLP_CHUNK_BYTES", 64 * 768 * 4)
        calls = []
        original = cm.TokenChunkedMLP.forward
        monkeypatch.setattr(
            cm.TokenChunkedMLP, "forward", lambda self, t: calls.append(1) or original(self, t)
        )
        sliced = sam.image_encoder(x)
    assert calls, "the chunked path ran"
    torch.testing.assert_close(sliced, whole, rtol=1e-5, atol=1e-5)
