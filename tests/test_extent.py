"""The extent transform: same target pixels and mask at every extent, seeded mosaic, crops."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from basam_lite.datasets import FolderDataset, ProceduralScenes, Sample, prompt_for
from basam_lite.datasets.extent import ExtentView, TargetDoesNotFit, resize_to_tile
from basam_lite.errors import UserError

BASE = 64  # small base size, 4 x 4 tokens of 16 px: cheap to render


@pytest.fixture(scope="module")
def scenes() -> ProceduralScenes:
    return ProceduralScenes(n=12, seed=3, size=BASE)


@pytest.fixture(scope="module")
def view(scenes) -> ExtentView:
    return ExtentView(scenes, base=BASE, seed=0)


def _small_target_index(view: ExtentView, side: int) -> int:
    """A scene whose object fits a ``side`` px window on the 16 px grid."""
    for i in range(len(view)):
        try:
            view.sample(i, side)
            return i
        except TargetDoesNotFit:
            continue
    raise AssertionError("no scene fits the window")


def test_target_pixels_and_mask_identical_at_every_extent(view):
    tile = view.tile(0)
    for side in (64, 96, 128, 192, 256):
        s = view.sample(0, side)
        assert s.image.shape == (side, side, 3) and s.mask.shape == (side, side)
        t, lft, b, r = s.tile_region
        np.testing.assert_array_equal(s.target_image, tile.image[t:b, lft:r])
        np.testing.assert_array_equal(s.target_mask, tile.mask[t:b, lft:r])
        # The mask is the target only: nothing outside the region, all of the object inside.
        assert s.mask.sum() == s.target_mask.sum() == tile.mask.sum()
        top, left = s.region[:2]
        assert top % 16 == 0 and left % 16 == 0  # the target keeps its token alignment
        assert s.extent == side / BASE and s.name == tile.name


def test_extent_one_is_the_base_size_sample(scenes, view):
    for i in range(3):
        s = view.sample(i, BASE)
        z = scenes.sample(i, size=(BASE, BASE))
        np.testing.assert_array_equal(s.image, z.image)
        np.testing.assert_array_equal(s.mask, z.mask)
        assert s.region == (0, 0, BASE, BASE) and s.neighbours == ()
        for kind in ("box", "center", "point"):
            a, b = prompt_for(s, kind), prompt_for(z, kind)
            for x, y in ((a.box, b.box), (a.point_coords, b.point_coords)):
                assert (x is None) == (y is None)
                if x is not None:
                    np.testing.assert_array_equal(x, y)


def test_prompts_are_the_target_shifted_into_the_canvas(view):
    tile = view.tile(1)
    for side in (128, 192):
        s = view.sample(1, side)
        top, left = s.region[:2]
        shift = np.array([left, top])
        np.testing.assert_array_equal(prompt_for(s, "box").box, prompt_for(tile, "box").box
                                      + np.tile(shift, 2))  # fmt: skip
        for kind in ("center", "point"):  # the same object pixel, the click seeded by the name
            np.testing.assert_array_equal(
                prompt_for(s, kind).point_coords, prompt_for(tile, kind).point_coords + shift
            )


def test_mosaic_is_seeded_and_reproducible(scenes, view):
    a = view.sample(2, 192)
    b = ExtentView(scenes, base=BASE, seed=0).sample(2, 192)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.neighbours == b.neighbours and len(a.neighbours) == 8
    c = ExtentView(scenes, base=BASE, seed=1).sample(2, 192)
    assert c.neighbours != a.neighbours
    np.testing.assert_array_equal(c.target_image, a.target_image)
    assert a.name not in a.neighbours  # the target never appears as its own neighbour
    # Neighbour tiles are whole other scenes at the base size, on the lattice around the target.
    top, left = a.region[:2]
    first = view.tile(view.neighbour_indices(2, a.name, 1)[0])
    np.testing.assert_array_equal(a.image[top - BASE : top, left - BASE : left], first.image)
    # A larger canvas shows the same nearer neighbours plus an outer ring.
    big = view.sample(2, 320)
    assert big.neighbours[:8] == a.neighbours and len(big.neighbours) == 24
    t2, l2 = big.region[:2]
    np.testing.assert_array_equal(
        big.image[t2 - BASE : t2 + 2 * BASE, l2 - BASE : l2 + 2 * BASE],
        a.image[top - BASE : top + 2 * BASE, left - BASE : left + 2 * BASE],
    )


def test_neighbours_repeat_only_when_the_dataset_runs_out():
    view = ExtentView(ProceduralScenes(n=4, seed=0, size=BASE), base=BASE)
    picks = view.neighbour_indices(0, view.name(0), 8)
    assert 0 not in picks
    assert sorted(picks[:3]) == [1, 2, 3] and sorted(picks[3:6]) == [1, 2, 3]


def test_a_crop_keeps_the_target_whole(view):
    i = _small_target_index(view, 32)
    tile = view.tile(i)
    s = view.sample(i, 32)
    assert s.image.shape == (32, 32, 3)
    assert s.mask.sum() == tile.mask.sum()  # every object pixel inside the window
    t, lft, b, r = s.tile_region
    assert t % 16 == 0 and lft % 16 == 0 and (b - t, r - lft) == (32, 32)
    np.testing.assert_array_equal(s.image, tile.image[t:b, lft:r])
    assert s.region == (0, 0, 32, 32)


def test_a_target_too_large_for_the_window_is_refused():
    scenes = ProceduralScenes(n=1, seed=0, size=BASE)
    big = Sample(np.zeros((BASE, BASE, 3), np.uint8), np.ones((BASE, BASE), bool), "full")
    view = ExtentView([big], base=BASE)
    with pytest.raises(TargetDoesNotFit, match="does not fit a 32 px window"):
        view.sample(0, 32)
    with pytest.raises(UserError, match="no other picture"):
        view.sample(0, 128)
    with pytest.raises(UserError, match="multiple of the patch size"):
        ExtentView(scenes, base=BASE).sample(0, 100)
    with pytest.raises(UserError, match="multiple of the patch size"):
        ExtentView(scenes, base=60)


def _folder(root, sizes):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"im{k}.png"
        )
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 : h // 2, w // 3 : w // 2] = 255
        Image.fromarray(mask).save(root / "masks" / f"im{k}.png")
    return FolderDataset(root)


def test_file_datasets_are_resized_to_the_base_tile(tmp_path):
    ds = _folder(tmp_path / "f", [(90, 120), (50, 40), (64, 64), (200, 100)])
    view = ExtentView(ds, base=BASE, seed=0)
    for i in range(len(ds)):
        tile = resize_to_tile(ds[i], BASE)
        assert tile.hw == (BASE, BASE)
        for side in (64, 128, 192):
            s = view.sample(i, side)
            np.testing.assert_array_equal(s.target_image, tile.image)
            np.testing.assert_array_equal(s.target_mask, tile.mask)
    same = ds[2]  # already 64 x 64: returned as it is
    assert resize_to_tile(same, BASE) is same
    # The resized mask keeps the object's area up to boundary pixels.
    src = ds[0]
    area = resize_to_tile(src, BASE).mask.mean()
    assert abs(area - src.mask.mean()) < 0.03


def test_coco_instances_of_the_same_picture_are_not_neighbours(tmp_path):
    from basam_lite.datasets import CocoInstances
    from tests.test_datasets import _coco

    ann, images, _ = _coco(tmp_path)
    ds = CocoInstances(ann, images, min_area=0)  # instances 11 and 14 share picture 1
    view = ExtentView(ds, base=BASE)
    same = [j for j in range(len(ds)) if ds[j].meta["image_id"] == ds[0].meta["image_id"]]
    assert len(same) == 2
    picks = view.neighbour_indices(0, ds[0].name, 4)
    assert not set(picks) & set(same)


def _named_layouts(root) -> dict[str, str]:
    """A spec of every named file dataset, each on a tiny copy of its real folder layout."""
    from tests.test_datasets import _coco, _dis5k, _save_pair

    dis = _dis5k(root / "DIS5K")
    duts = root / "DUTS-TE"
    isic = root / "isic"
    cod = root / "COD10K-v3" / "Test"
    for i in range(3):
        _save_pair(duts / "DUTS-TE-Image", duts / "DUTS-TE-Mask", f"ILSVRC_{i}", img_ext=".jpg")
        stem = f"ISIC_000000{i}"
        _save_pair(isic / "ISBI2016_ISIC_Part1_Test_Data",
                   isic / "ISBI2016_ISIC_Part1_Test_GroundTruth", stem, img_ext=".jpg",
                   mask_stem=f"{stem}_Segmentation", seed=i)  # fmt: skip
        _save_pair(cod / "Image", cod / "GT_Object", f"COD10K-CAM-{i}", img_ext=".jpg", seed=i)
    ann, images, _ = _coco(root / "coco")
    return {
        "dis5k": f"dis5k:{dis}:DIS-TE",
        "duts": f"duts:{duts}",
        "isic2016": f"isic2016:{isic}",
        "cod10k": f"cod10k:{root / 'COD10K-v3'}",
        "coco": f"coco:{ann}:{images}",
    }


@pytest.mark.parametrize("kind", ["dis5k", "duts", "isic2016", "cod10k", "coco"])
def test_every_named_dataset_has_an_extent_axis(tmp_path, kind):
    """What a researcher runs with real SAM (``--axis extent --dataset dis5k:...``), on each
    dataset's own layout: the target tile is the image fit to the base size, identical at every
    extent, and the canvas is a mosaic of the same dataset's other images."""
    from basam_lite.datasets import open_dataset

    ds = open_dataset(_named_layouts(tmp_path)[kind])
    view = ExtentView(ds, base=BASE, seed=0)
    for i in range(len(ds)):
        tile = resize_to_tile(ds[i], BASE)
        for side in (BASE, 2 * BASE, 3 * BASE):
            s = view.sample(i, side)
            assert s.hw == (side, side)
            np.testing.assert_array_equal(s.target_image, tile.image)
            np.testing.assert_array_equal(s.target_mask, tile.mask)
            top, left, bottom, right = s.region
            # The mask outside the target's region is empty: neighbours bring no target pixels.
            outside = s.mask.copy()
            outside[top:bottom, left:right] = False
            assert not outside.any()
    again = ExtentView(open_dataset(_named_layouts(tmp_path / "again")[kind]), base=BASE, seed=0)
    np.testing.assert_array_equal(view.sample(0, 2 * BASE).image, again.sample(0, 2 * BASE).image)
