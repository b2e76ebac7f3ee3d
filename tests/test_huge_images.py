"""Huge images are read reduced to what a run needs (``loading.READ_MAX_SIDE``): the image by a
power-of-two factor (JPEG by DCT scaling, never decoded whole), its mask by the majority of each
block, and every metric is the metric at that reduced size."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from basam_lite.axes import scored
from basam_lite.datasets import FolderDataset
from basam_lite.datasets.loading import (
    READ_MAX_SIDE,
    load_image,
    read_factor,
    reduce_mask,
    reduced_hw,
)
from basam_lite.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def majority_reference(mask: np.ndarray, f: int) -> np.ndarray:
    """Block majority written out: a pixel per block, True where 2 * count > block size."""
    h, w = mask.shape
    out = np.zeros((-(-h // f), -(-w // f)), bool)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            block = mask[i * f : (i + 1) * f, j * f : (j + 1) * f]
            out[i, j] = 2 * int(block.sum()) > block.size
    return out


def scene(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth (H, W, 3) image with an ellipse, and the ellipse's mask."""
    y, x = np.ogrid[:h, :w]
    mask = ((y - 0.55 * h) / (0.3 * h)) ** 2 + ((x - 0.45 * w) / (0.25 * w)) ** 2 < 1
    image = np.empty((h, w, 3), np.uint8)
    image[..., 0] = (x * 255 // w).astype(np.uint8)
    image[..., 1] = (y * 255 // h).astype(np.uint8)
    image[..., 2] = np.where(mask, 200, 30)
    return image, mask


def test_read_factor_is_the_smallest_power_of_two_that_fits():
    assert READ_MAX_SIDE == 4096
    assert read_factor((10000, 10000), 4096) == 4  # 2500 px
    assert read_factor((4096, 3000), 4096) == 1
    assert read_factor((3000, 4097), 4096) == 2
    assert read_factor((20000, 100), 4096) == 8
    assert read_factor((10**6, 10), None) == 1
    for side in (1, 7, 100, 4096, 4097, 9000, 33000):
        f = read_factor((side, 5), 4096)
        assert side / f <= 4096 and (f == 1 or side / (f // 2) > 4096)
    with pytest.raises(UserError, match="max_side"):
        read_factor((10, 10), 0)
    assert reduced_hw((1001, 1003), 4) == (251, 251)


def test_reduce_mask_is_the_block_majority():
    rng = np.random.default_rng(0)
    for shape, f in [((37, 53), 4), ((64, 64), 2), ((9, 30), 8), ((5, 5), 1)]:
        mask = rng.random(shape) < 0.5
        np.testing.assert_array_equal(reduce_mask(mask, f), majority_reference(mask, f))
    tie = np.zeros((2, 2), bool)
    tie[0] = True
    assert not reduce_mask(tie, 2).any()  # half the block: background


def test_a_dataset_reads_a_large_pair_reduced_and_scores_it_at_that_size(tmp_path):
    image, mask = scene(1300, 2100)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(image).save(tmp_path / "images" / "a.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "masks" / "a.png")
    native = FolderDataset(tmp_path, max_side=None)[0]
    assert native.hw == (1300, 2100) and native.meta["read_factor"] == 1
    s = FolderDataset(tmp_path, max_side=500)[0]
    f = 8  # 2100 / 4 > 500 >= 2100 / 8
    assert s.meta["read_factor"] == f and s.hw == (163, 263) == s.image.shape[:2]
    np.testing.assert_array_equal(s.mask, majority_reference(mask, f))
    # The image: the mean of each 8 x 8 block (box filter), up to rounding.
    h, w = s.hw
    padded = np.zeros((h * f, w * f, 3))
    padded[:1300, :2100] = image
    counts = np.zeros((h * f, w * f, 1))
    counts[:1300, :2100] = 1
    block = padded.reshape(h, f, w, f, 3).sum((1, 3)) / counts.reshape(h, f, w, f, 1).sum((1, 3))
    assert np.abs(s.image.astype(float) - block).max() <= 1.0
    # The default limit leaves this image native: nothing is resampled below it.
    assert FolderDataset(tmp_path)[0].hw == (1300, 2100)

    # Scoring a prediction on the reduced sample is the metric at that size, written out.
    pred = np.roll(s.mask, 7, axis=1)
    pred[:20] = True
    logits = torch.from_numpy(np.where(pred, 8.0, -8.0).astype(np.float32))
    gt = majority_reference(mask, f)
    inter = sum(bool(a and b) for a, b in zip(pred.ravel(), gt.ravel(), strict=True))
    union = sum(bool(a or b) for a, b in zip(pred.ravel(), gt.ravel(), strict=True))
    assert scored(logits, s)["iou"] == pytest.approx(inter / union, abs=1e-12)


def test_a_jpeg_is_decoded_at_the_reduced_size(tmp_path):
    image, _ = scene(1300, 2100)
    path = tmp_path / "a.jpg"
    Image.fromarray(image).save(path, quality=95)
    full = np.asarray(Image.open(path).convert("RGB").reduce(4)).astype(float)
    small = load_image(path, max_side=600)  # factor 4: libjpeg's 1/4 DCT scaling
    assert small.shape == (325, 525, 3) == (*reduced_hw((1300, 2100), 4), 3)
    assert np.abs(small - full).mean() < 2.0  # DCT scaling against the box filter
    big = load_image(path, max_side=100)  # factor 32: 1/8 by DCT, then a 4 x 4 box
    assert big.shape == (41, 66, 3)
    assert load_image(path).shape == (1300, 2100, 3)  # native without a limit


def test_an_object_that_vanishes_when_reduced_is_refused_in_one_line(tmp_path):
    image, _ = scene(400, 400)
    mask = np.zeros((400, 400), bool)
    mask[100:102, 100:102] = True  # 4 px: no 8 x 8 block has a majority
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(image).save(tmp_path / "images" / "a.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "masks" / "a.png")
    with pytest.raises(UserError, match="vanishes when this 400x400 image is read at 1/8"):
        FolderDataset(tmp_path, max_side=50)
    assert FolderDataset(tmp_path, max_side=None)[0].mask.sum() == 4


def test_a_huge_jpeg_never_sits_in_memory_whole(tmp_path):
    """A 6000 x 6000 JPEG (108 MB of pixels) checked and read at 750 px: peak RSS grows by far
    less than the decoded image would take (a fresh process)."""
    image, _ = scene(6000, 6000)
    path = tmp_path / "big.jpg"
    Image.fromarray(image).save(path, quality=85)
    del image
    code = textwrap.dedent(
        f"""
        import resource, warnings
        warnings.simplefilter("ignore")
        from basam_lite.datasets.loading import check_image, load_image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        check_image({str(path)!r})
        a = load_image({str(path)!r}, max_side=750)
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(a.shape, grew)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        timeout=300,
        check=True,
    ).stdout.split()
    assert out[:3] == ["(750,", "750,", "3)"]
    assert int(out[3]) * 1024 < 40e6, out  # decoded whole: 108 MB (144 MB in Pillow)


def test_a_coco_instance_is_read_on_the_reduced_grid(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_datasets import _coco
    finally:
        sys.path.pop(0)
    from basam_lite.datasets import CocoInstances

    ann, images, rle_mask = _coco(tmp_path)
    native = CocoInstances(ann, images, max_side=None)[1]
    s = CocoInstances(ann, images, max_side=50)[1]  # 120 px wide: factor 4
    assert s.meta["read_factor"] == 4 and s.hw == (20, 30) == s.image.shape[:2]
    np.testing.assert_array_equal(native.mask, rle_mask)
    np.testing.assert_array_equal(s.mask, majority_reference(rle_mask, 4))
