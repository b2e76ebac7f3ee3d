"""set_input_size, the predictor path and image conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

import basam_lite as bl
from basam_lite.resolution import resample_pos_embed


def test_own_size_changes_nothing(tiny_sam) -> None:
    before = dict(vars(tiny_sam.prompt_encoder))
    bl.set_input_size(tiny_sam, 256)
    bl.set_input_size(tiny_sam, (256, 256))
    assert "forward" not in tiny_sam.image_encoder.__dict__
    assert "preprocess" not in tiny_sam.__dict__
    assert tiny_sam.image_encoder.img_size == 256
    assert dict(vars(tiny_sam.prompt_encoder)).keys() == before.keys()
    assert tiny_sam.prompt_encoder.image_embedding_size == (16, 16)


@pytest.mark.parametrize("size, grid", [(128, (8, 8)), (512, (32, 32)), ((384, 256), (24, 16))])
def test_shapes_at_other_sizes(tiny_sam, size, grid) -> None:
    bl.set_input_size(tiny_sam, size)
    h, w = bl.input_size(tiny_sam)
    pe = tiny_sam.prompt_encoder
    assert pe.image_embedding_size == grid
    assert pe.input_image_size == (h, w)
    assert pe.get_dense_pe().shape[-2:] == grid
    with torch.no_grad():
        emb = tiny_sam.image_encoder(torch.randn(1, 3, h, w))
    assert emb.shape == (1, 128, *grid)
    img = torch.randint(0, 255, (3, h - 20, w - 4)).float()
    assert tiny_sam.preprocess(img).shape == (3, h, w)
    low = torch.randn(1, 1, 4 * grid[0], 4 * grid[1])
    assert tiny_sam.postprocess_masks(low, (h - 20, w - 4), (50, 70)).shape == (1, 1, 50, 70)


def test_return_to_base_size_is_exact(tiny_sam) -> None:
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        ref = tiny_sam.image_encoder(x)
        bl.set_input_size(tiny_sam, 512)
        tiny_sam.image_encoder(torch.randn(1, 3, 512, 512))
        bl.set_input_size(tiny_sam, 256)
        torch.testing.assert_close(tiny_sam.image_encoder(x), ref, atol=0, rtol=0)
    assert "forward" not in tiny_sam.image_encoder.__dict__
    assert tiny_sam.prompt_encoder.image_embedding_size == (16, 16)


def test_pos_embed_resampled_bicubically_from_the_original(tiny_sam) -> None:
    pe = tiny_sam.image_encoder.pos_embed
    original = pe.detach().clone()
    out = resample_pos_embed(pe, (32, 24))
    want = torch.nn.functional.interpolate(
        original.permute(0, 3, 1, 2), size=(32, 24), mode="bicubic", align_corners=False
    ).permute(0, 2, 3, 1)
    torch.testing.assert_close(out, want)
    assert resample_pos_embed(pe, (16, 16)) is pe
    bl.set_input_size(tiny_sam, 512)
    torch.testing.assert_close(tiny_sam.image_encoder.pos_embed, original, atol=0, rtol=0)


def test_stock_unpatched_sam_crashes_at_other_sizes(tiny_sam) -> None:
    """What BA-SAM's notebooks start from: plain SAM cannot take another grid."""
    with pytest.raises(RuntimeError, match="must match the size"):
        tiny_sam.image_encoder(torch.randn(1, 3, 128, 128))


def test_stock_predictor_with_box_at_768(tiny_sam) -> None:
    bl.set_input_size(tiny_sam, 768)
    predictor = SamPredictor(tiny_sam)
    image = np.random.default_rng(0).integers(0, 255, (500, 620, 3), dtype=np.uint8)
    predictor.set_image(image)
    assert predictor.features.shape == (1, 128, 48, 48)
    masks, scores, low = predictor.predict(
        box=np.array([100, 50, 400, 300]), multimask_output=False
    )
    assert masks.shape == (1, 500, 620) and scores.shape == (1,) and low.shape == (1, 192, 192)


def test_predictor_built_before_set_input_size_follows(tiny_sam) -> None:
    predictor = SamPredictor(tiny_sam)
    bl.set_input_size(predictor, 768)
    assert predictor.transform.target_length == 768
    predictor.set_image(np.zeros((300, 200, 3), np.uint8))
    assert predictor.input_size == (768, 512)


def test_basam_predictor_non_square_box(tiny_sam) -> None:
    bl.apply_basam(tiny_sam, bl.BASAMConfig.paper())
    bl.set_input_size(tiny_sam, (384, 512))
    predictor = bl.BASAMPredictor(tiny_sam)
    image = np.random.default_rng(1).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    predictor.set_image(image)
    assert predictor.input_size == (384, 384)
    assert predictor.features.shape == (1, 128, 24, 32)
    masks, _, _ = predictor.predict(box=np.array([10, 20, 200, 150]), multimask_output=True)
    assert masks.shape == (3, 300, 300)
    # a box at the image's right edge lands at the resized right edge
    coords = predictor.transform.apply_boxes(np.array([[0, 0, 300, 300]]), (300, 300))
    np.testing.assert_allclose(coords, [[0, 0, 384, 384]])


def test_stock_predictor_refuses_non_square(tiny_sam) -> None:
    with pytest.raises(ValueError, match="use basam_lite.BASAMPredictor"):
        bl.set_input_size(SamPredictor(tiny_sam), (256, 512))


@pytest.mark.parametrize(
    "image, expected",
    [
        (np.full((8, 9), 7, np.uint8), 7),  # grayscale
        (np.full((8, 9, 1), 7, np.uint8), 7),
        (np.dstack([np.full((8, 9, 3), 7, np.uint8), np.zeros((8, 9), np.uint8)]), 7),  # RGBA
        (np.full((8, 9, 3), 257 * 7, np.uint16), 7),  # 16-bit
        (np.full((8, 9, 3), 7 / 255, np.float32), 7),  # float in [0, 1]
        (np.ones((8, 9), bool), 255),
    ],
)
def test_image_conversion(image, expected) -> None:
    rgb = bl.to_rgb_uint8(image)
    assert rgb.shape == (8, 9, 3) and rgb.dtype == np.uint8
    assert np.all(rgb == expected)


def test_predictor_accepts_grayscale_rgba_16bit(tiny_sam) -> None:
    predictor = bl.BASAMPredictor(tiny_sam)
    gray = np.random.default_rng(2).integers(0, 65535, (64, 80), dtype=np.uint16)
    predictor.set_image(gray)
    feats = predictor.features.clone()
    predictor.set_image(np.round(gray / 257).astype(np.uint8)[..., None].repeat(3, -1))
    torch.testing.assert_close(predictor.features, feats)
    rgba = np.zeros((64, 80, 4), np.uint8)
    predictor.set_image(rgba)
    assert predictor.is_image_set


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((8, 9, 2), np.uint8), "expected an image of shape"),
        (np.zeros((2, 8, 9, 3), np.uint8), "expected an image of shape"),
        (np.full((8, 9), np.nan, np.float32), "NaN"),
        (np.full((8, 9), 300.0), "expected \\[0, 1\\] or \\[0, 255\\]"),
        (np.full((8, 9), 4000, np.int32), "convert it to uint8"),
        (np.zeros((8, 9), np.complex64), "unsupported image dtype"),
    ],
)
def test_bad_images(image, message) -> None:
    with pytest.raises(ValueError, match=message):
        bl.to_rgb_uint8(image)


@pytest.mark.parametrize(
    "size, message",
    [
        (500, "not a multiple of the patch size 16: use 496 or 512"),
        ((512, 520), "use 512 or 528"),
        (8, "smaller than one 16 px patch"),
        ((512,), "size must be an int or"),
        ("512", "size must be an int or"),
    ],
)
def test_bad_sizes(tiny_sam, size, message) -> None:
    with pytest.raises(ValueError, match=message):
        bl.set_input_size(tiny_sam, size)
    assert bl.input_size(tiny_sam) == (256, 256)  # nothing changed


def test_encoder_refuses_unaligned_input(tiny_sam) -> None:
    bl.apply_basam(tiny_sam, bl.BASAMConfig.paper())
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        tiny_sam.image_encoder(torch.randn(1, 3, 250, 256))


def test_image_larger_than_input_is_refused(tiny_sam) -> None:
    bl.set_input_size(tiny_sam, 128)
    with pytest.raises(ValueError, match="does not fit the model's input size 128x128"):
        tiny_sam.preprocess(torch.zeros(3, 256, 256))


def test_set_input_size_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="expected a SAM-family model"):
        bl.set_input_size(torch.nn.Linear(1, 1), 256)


@pytest.mark.parametrize(
    "size",
    [np.int64(384), np.int32(384), (np.int64(384), np.int16(384)), np.array([384, 384])],
    ids=["int64", "int32", "tuple of numpy ints", "array"],
)
def test_set_input_size_takes_numpy_integers(tiny_sam, size) -> None:
    bl.set_input_size(tiny_sam, size)
    assert bl.input_size(tiny_sam) == (384, 384)
    assert all(type(s) is int for s in bl.input_size(tiny_sam))


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (512.0, r"contains the float 512.0: give whole pixels as integers such as 512"),
        ((512, 384.5), r"contains the float 384.5"),
        (np.float32(256), r"contains the float"),
        (float("nan"), r"contains the float nan: give whole pixels as integers, not floats"),
        (True, "contains a bool"),
        ((256, np.True_), "contains a bool"),
        (None, "size must be an int or"),
    ],
)
def test_set_input_size_refuses_floats_and_bools(tiny_sam, size, message) -> None:
    from basam_lite.errors import UserError

    with pytest.raises(UserError, match=message):
        bl.set_input_size(tiny_sam, size)
    assert bl.input_size(tiny_sam) == (256, 256)  # nothing changed


@pytest.fixture
def predictor_on_image(tiny_sam):
    predictor = bl.BASAMPredictor(tiny_sam)
    image = np.random.default_rng(2).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    predictor.set_image(image)  # 300 wide, 200 high
    return predictor


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ({"box": np.array([50, 20, 10, 80])}, r"x1 < x0 or y1 < y0.*not x, y, width, height"),
        ({"box": np.array([10, 80, 50, 20])}, r"x1 < x0 or y1 < y0"),
        ({"box": np.array([10, 20, 350, 80])}, r"reaches outside the 300x200 \(WxH\) image"),
        ({"box": np.array([-5, 20, 50, 80])}, r"reaches outside"),
        ({"box": np.array([10, 20, 50, np.nan])}, r"NaN or infinite"),
        ({"box": np.array([10, 20, 50])}, r"four numbers x0, y0, x1, y1.*shape \(3,\)"),
        ({"box": np.array([[1, 2, 3, 4], [5, 6, 7, 8]])}, r"shape \(2, 4\)"),
        (
            {"point_coords": np.array([[10, 20]]), "point_labels": np.array([2])},
            r"point labels must be 0 \(background\) or 1 \(foreground\), got \[2\]",
        ),
        (
            {"point_coords": np.array([[10, 20]]), "point_labels": np.array([-1])},
            r"got \[-1\]",
        ),
        (
            {"point_coords": np.array([[10, 20], [30, 40]]), "point_labels": np.array([1])},
            r"2 point\(s\) but point_labels of shape \(1,\)",
        ),
        ({"point_coords": np.array([[10, 20]])}, "point_coords given without point_labels"),
        ({"point_labels": np.array([1])}, "point_labels given without point_coords"),
        (
            {"point_coords": np.array([[10, np.nan]]), "point_labels": np.array([1])},
            "NaN or infinite",
        ),
        (
            {"point_coords": np.array([[20, 250]]), "point_labels": np.array([1])},
            r"lies outside the 300x200 \(WxH\) image",
        ),
        (
            {"point_coords": np.array([10, 20]), "point_labels": np.array([1])},
            r"must be \(N, 2\)",
        ),
    ],
)
def test_predictor_refuses_invalid_prompts(predictor_on_image, prompt, message) -> None:
    from basam_lite.errors import UserError

    with pytest.raises(UserError, match=message):
        predictor_on_image.predict(**prompt, multimask_output=False)


def test_predictor_accepts_prompts_on_the_image_edge(predictor_on_image) -> None:
    masks, _, _ = predictor_on_image.predict(
        point_coords=np.array([[0.0, 0.0], [300.0, 200.0]]),
        point_labels=np.array([1, 0]),
        box=np.array([0, 0, 300, 200]),
        multimask_output=False,
    )
    assert masks.shape == (1, 200, 300)
    masks, _, _ = predictor_on_image.predict(box=np.array([[5, 5, 5, 9]]), multimask_output=False)
    assert masks.shape == (1, 200, 300)  # a one-pixel-wide box is a box


def test_predict_before_set_image_is_a_user_error(tiny_sam) -> None:
    from basam_lite.errors import UserError

    with pytest.raises(UserError, match="call predictor.set_image"):
        bl.BASAMPredictor(tiny_sam).predict(box=np.array([0, 0, 10, 10]))
