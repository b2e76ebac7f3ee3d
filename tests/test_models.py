"""build_sam and checkpoint loading, including every bad-checkpoint case."""

from __future__ import annotations

import hashlib

import pytest
import torch

import basam_lite as bl
from basam_lite.models import describe_checkpoint, model_name_from_checkpoint, sam_from_env


def test_tiny_is_seeded_and_small() -> None:
    a, b = bl.build_sam("tiny"), bl.build_sam("tiny")
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert sum(p.numel() for p in a.parameters()) < 5_000_000
    assert not a.training


def test_vit_b_is_segment_anythings_own() -> None:
    from segment_anything import sam_model_registry

    ours, theirs = bl.build_sam("vit_b"), sam_model_registry["vit_b"]()
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert [b.window_size for b in ours.image_encoder.blocks] == [
        b.window_size for b in theirs.image_encoder.blocks
    ]


def test_tiny_checkpoint_round_trip(tmp_path) -> None:
    src = bl.build_sam("tiny")
    with torch.no_grad():
        src.image_encoder.pos_embed.add_(1.0)
    torch.save({"model": src.state_dict()}, tmp_path / "wrapped.pth")
    got = bl.build_sam("tiny", tmp_path / "wrapped.pth")
    torch.testing.assert_close(got.image_encoder.pos_embed, src.image_encoder.pos_embed)


def test_wrong_model_says_what_the_checkpoint_looks_like(tmp_path) -> None:
    torch.save(bl.build_sam("tiny").state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match="does not fit model 'vit_b': it looks like tiny"):
        bl.build_sam("vit_b", tmp_path / "tiny.pth")


def test_official_shapes_are_recognised() -> None:
    state = {
        "image_encoder.patch_embed.proj.weight": torch.zeros(1024, 3, 16, 16),
        **{f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(24)},
    }
    assert describe_checkpoint(state).startswith("vit_l (embed_dim 1024, 24 blocks)")


def test_not_a_checkpoint(tmp_path) -> None:
    bad = tmp_path / "notes.pth"
    bad.write_text("this is not a checkpoint")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint"):
        bl.build_sam("tiny", bad)


def test_not_a_sam_checkpoint(tmp_path) -> None:
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "linear.pth")
    with pytest.raises(ValueError, match="not of a SAM model"):
        bl.build_sam("tiny", tmp_path / "linear.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state_dict of tensors"):
        bl.build_sam("tiny", tmp_path / "list.pth")


def test_missing_file_and_folder(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bl.build_sam("vit_b", tmp_path / "sam_vit_b_01ec64.pth")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        bl.build_sam("tiny", tmp_path)


def test_official_name_md5_and_model_checked(tmp_path) -> None:
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(bl.build_sam("tiny").state_dict(), path)
    with pytest.raises(ValueError, match="download is incomplete or corrupted"):
        bl.build_sam("vit_b", path)
    with pytest.raises(ValueError, match="is the official vit_b checkpoint but the model asked"):
        bl.build_sam("vit_l", path)
    # a file whose MD5 really starts with the prefix in its name passes the check
    digest = hashlib.md5(path.read_bytes()).hexdigest()[:6]
    renamed = path.rename(tmp_path / f"sam_vit_b_{digest}.pth")
    with pytest.raises(ValueError, match="looks like tiny"):  # MD5 fine, shapes are not
        bl.build_sam("vit_b", renamed)


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'vit_s'"):
        bl.build_sam("vit_s")


def test_model_name_from_checkpoint(tmp_path) -> None:
    assert model_name_from_checkpoint(tmp_path / "sam_vit_h_4b8939.pth") == "vit_h"
    torch.save(bl.build_sam("tiny").state_dict(), tmp_path / "mine.pth")
    assert model_name_from_checkpoint(tmp_path / "mine.pth") == "tiny"


def test_sam_from_env_falls_back(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("BASAM_SAM_CHECKPOINT", str(tmp_path / "missing.pth"))
    monkeypatch.setenv("BASAM_DATA_DIR", str(tmp_path))  # no trained tiny checkpoints there
    _, desc = sam_from_env()
    assert desc == "tiny (random weights)"
    assert "could not be used" in capsys.readouterr().out
    torch.save(bl.build_sam("tiny").state_dict(), tmp_path / "mine.pth")
    monkeypatch.setenv("BASAM_SAM_CHECKPOINT", str(tmp_path / "mine.pth"))
    assert sam_from_env()[1].startswith("tiny from")
