"""Prompts from masks: SAM's (x, y) convention, inclusive boxes, seeding, batch isolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basam_lite.datasets import (
    Prompt,
    Sample,
    batch_prompts,
    box_from_mask,
    center_point,
    prompt_for,
    random_points,
)

H, W = 40, 100
ROWS = slice(5, 10)  # rows 5..9: 5 px tall
COLS = slice(60, 90)  # cols 60..89: 30 px wide, right of centre


def _bar() -> np.ndarray:
    """A wide, short bar placed off-centre: swapping x and y cannot go unnoticed."""
    mask = np.zeros((H, W), dtype=bool)
    mask[ROWS, COLS] = True
    return mask


def _sample(mask: np.ndarray, name: str = "bar") -> Sample:
    return Sample(np.zeros((*mask.shape, 3), np.uint8), mask, name)


def test_box_is_xyxy_with_inclusive_ends():
    box = box_from_mask(_bar())
    np.testing.assert_array_equal(box, [60, 5, 89, 9])
    x0, y0, x1, y1 = box
    assert x1 - x0 + 1 == COLS.stop - COLS.start  # x spans the columns
    assert y1 - y0 + 1 == ROWS.stop - ROWS.start  # y spans the rows


def test_box_of_single_pixel():
    mask = np.zeros((H, W), dtype=bool)
    mask[3, 70] = True
    np.testing.assert_array_equal(box_from_mask(mask), [70, 3, 70, 3])


def test_center_point_is_x_y_and_inside():
    coords, labels = center_point(_bar())
    assert coords.shape == (1, 2) and labels.tolist() == [1]
    x, y = coords[0]
    assert _bar()[int(y), int(x)]
    # The innermost ridge of the bar is row 7; among the tied pixels the middle one is taken.
    assert y == 7
    assert x in (74, 75)


def test_center_point_picks_the_thick_part():
    mask = np.zeros((50, 50), dtype=bool)
    mask[10:40, 5:35] = True  # thick square
    mask[24:26, 35:49] = True  # thin handle to the right
    x, y = center_point(mask)[0][0]
    assert 15 <= x <= 25 and 20 <= y <= 30


def test_random_points_are_on_the_object_and_seeded():
    mask = _bar()
    coords, labels = random_points(mask, 20, 0)
    assert coords.shape == (20, 2) and labels.shape == (20,) and (labels == 1).all()
    xs, ys = coords[:, 0].astype(int), coords[:, 1].astype(int)
    assert mask[ys, xs].all()
    assert xs.min() >= 60 and xs.max() <= 89 and ys.min() >= 5 and ys.max() <= 9
    again, _ = random_points(mask, 20, np.random.default_rng(0))
    np.testing.assert_array_equal(coords, again)
    other, _ = random_points(mask, 20, 1)
    assert not np.array_equal(coords, other)


def test_random_points_more_than_pixels():
    mask = np.zeros((8, 8), dtype=bool)
    mask[2, 3] = mask[5, 6] = True
    coords, _ = random_points(mask, 5, 0)
    assert {tuple(c) for c in coords.astype(int)} <= {(3, 2), (6, 5)}


def test_empty_mask_is_an_error():
    empty = np.zeros((H, W), dtype=bool)
    for fn in (box_from_mask, center_point, lambda m: random_points(m, 1, 0)):
        with pytest.raises(ValueError, match="empty"):
            fn(empty)
    with pytest.raises(ValueError, match=r"'nothing'.*empty"):
        prompt_for(_sample(empty, "nothing"), "box")


def test_prompt_for_kinds():
    sample = _sample(_bar())
    box = prompt_for(sample, "box")
    assert box.point_coords is None and box.point_labels is None
    np.testing.assert_array_equal(box.box, [60, 5, 89, 9])
    center = prompt_for(sample, "center")
    assert center.box is None and center.point_coords.shape == (1, 2)
    point = prompt_for(sample, "point", seed=3)
    x, y = point.point_coords[0]
    assert sample.mask[int(y), int(x)] and point.point_labels.tolist() == [1]
    with pytest.raises(ValueError, match="unknown prompt kind"):
        prompt_for(sample, "scribble")  # type: ignore[arg-type]


def test_point_prompt_depends_on_seed_and_name_only():
    mask = np.zeros((64, 64), dtype=bool)
    mask[8:56, 8:56] = True
    a = prompt_for(_sample(mask, "a"), "point", seed=0).point_coords
    np.testing.assert_array_equal(a, prompt_for(_sample(mask, "a"), "point", seed=0).point_coords)
    assert not np.array_equal(a, prompt_for(_sample(mask, "a"), "point", seed=1).point_coords)
    assert not np.array_equal(a, prompt_for(_sample(mask, "b"), "point", seed=0).point_coords)


def test_scaled_moves_x_with_width_and_y_with_height():
    prompt = Prompt(np.array([[74.0, 7.0]]), np.array([1]), np.array([60.0, 5.0, 89.0, 9.0]))
    moved = prompt.scaled((H, W), (80, 400))  # H x2, W x4
    np.testing.assert_allclose(moved.point_coords, [[296.0, 14.0]])
    np.testing.assert_allclose(moved.box, [240.0, 10.0, 356.0, 18.0])
    np.testing.assert_array_equal(moved.point_labels, [1])


def test_scaled_matches_segment_anything_resize():
    from segment_anything.utils.transforms import ResizeLongestSide

    resize = ResizeLongestSide(1024)
    new_hw = resize.get_preprocess_shape(H, W, 1024)
    prompt = prompt_for(_sample(_bar()), "center")
    box = prompt_for(_sample(_bar()), "box").box
    np.testing.assert_allclose(
        prompt.scaled((H, W), new_hw).point_coords, resize.apply_coords(prompt.point_coords, (H, W))
    )
    np.testing.assert_allclose(
        Prompt(box=box).scaled((H, W), new_hw).box, resize.apply_boxes(box[None], (H, W))[0]
    )


def test_prompt_validation():
    with pytest.raises(ValueError, match="together"):
        Prompt(point_coords=np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        Prompt(np.zeros((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="4 numbers"):
        Prompt(box=np.zeros(3))
    with pytest.raises(ValueError, match="points, a box"):
        Prompt()


def test_batch_prompts_shapes_and_types():
    records = batch_prompts(
        [
            Prompt(np.array([[10.0, 20.0]]), np.array([1])),
            Prompt(box=np.array([1.0, 2.0, 3.0, 4.0])),
            Prompt(
                np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), np.array([1, 0, 1]), [0, 0, 9, 9]
            ),
        ]
    )
    assert len(records) == 3
    assert set(records[0]) == {"point_coords", "point_labels"}
    assert records[0]["point_coords"].shape == (1, 1, 2)
    assert records[0]["point_coords"].dtype == torch.float32
    assert records[0]["point_labels"].shape == (1, 1)
    assert set(records[1]) == {"boxes"} and records[1]["boxes"].shape == (1, 4)
    assert records[2]["point_coords"].shape == (1, 3, 2)
    assert records[2]["point_labels"].tolist() == [[1, 0, 1]]
    assert records[2]["boxes"].tolist() == [[0, 0, 9, 9]]


def test_batch_prompts_keep_each_image_to_its_own_prompt():
    # The official code reshaped a batch's clicks so every image got every click; here image i's
    # record holds image i's click and nothing else, whatever the batch.
    first = Prompt(np.array([[5.0, 50.0]]), np.array([1]))
    second = Prompt(np.array([[90.0, 3.0]]), np.array([1]))
    together = batch_prompts([first, second])
    alone = batch_prompts([second])
    assert together[0]["point_coords"].tolist() == [[[5.0, 50.0]]]
    assert together[1]["point_coords"].tolist() == [[[90.0, 3.0]]]
    assert torch.equal(together[1]["point_coords"], alone[0]["point_coords"])
    assert all(r["point_coords"].shape[1] == 1 for r in together)


def test_batch_prompts_from_two_masks_follow_their_own_objects():
    left = np.zeros((H, W), dtype=bool)
    left[20:30, 5:15] = True
    records = batch_prompts(
        [prompt_for(_sample(_bar()), "center"), prompt_for(_sample(left), "center")]
    )
    for rec, mask in zip(records, (_bar(), left), strict=True):
        x, y = rec["point_coords"][0, 0].tolist()
        assert mask[int(y), int(x)]
