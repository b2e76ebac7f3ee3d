"""Datasets: procedural scenes, folder layouts (generic and official), COCO, spec strings."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basam_lite.datasets import (
    SHAPE_KINDS,
    CocoInstances,
    ConcatDataset,
    FolderDataset,
    ProceduralScenes,
    Sample,
    cod10k,
    dis5k,
    duts_te,
    isic2016,
    load_image,
    load_mask,
    open_dataset,
    render,
    render_layers,
)
from basam_lite.datasets.procedural import SceneMix, label_map
from basam_lite.errors import UserError

# ----------------------------------------------------------------------------- helpers


def _rgb(h: int = 12, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _blob(h: int = 12, w: int = 16) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[2 : h - 3, 3 : w - 4] = True
    return mask


def _save_pair(img_dir: Path, mask_dir: Path, stem: str, *, img_ext=".png", mask_ext=".png",
               size=(12, 16), mask_stem=None, seed=0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    image = _rgb(*size, seed=seed)
    mask = _blob(*size)
    Image.fromarray(image).save(img_dir / f"{stem}{img_ext}")
    Image.fromarray(mask.astype(np.uint8) * 255).save(mask_dir / f"{mask_stem or stem}{mask_ext}")
    return image, mask


def _tree(root: Path, stems=("a", "b", "c")) -> Path:
    for i, stem in enumerate(stems):
        _save_pair(root / "images", root / "masks", stem, seed=i)
    return root


# ----------------------------------------------------------------------------- Sample


def test_sample_checks_shapes_and_types():
    Sample(_rgb(), _blob(), "ok")
    with pytest.raises(ValueError, match="uint8 RGB"):
        Sample(_rgb().astype(np.float32), _blob(), "bad")
    with pytest.raises(ValueError, match="mask must be"):
        Sample(_rgb(), _blob()[:, :5], "bad")
    with pytest.raises(ValueError, match="mask must be"):
        Sample(_rgb(), _blob().astype(np.uint8), "bad")


# ----------------------------------------------------------------------------- procedural


def test_procedural_is_deterministic():
    a, b = ProceduralScenes(4, seed=3), ProceduralScenes(4, seed=3)
    for i in range(4):
        sa, sb = a[i], b[i]
        np.testing.assert_array_equal(sa.image, sb.image)
        np.testing.assert_array_equal(sa.mask, sb.mask)
        assert sa.name == sb.name and sa.meta == sb.meta


def test_procedural_scene_does_not_depend_on_n():
    assert ProceduralScenes(5).scene(3) == ProceduralScenes(500).scene(3)


def test_procedural_seeds_and_splits_differ():
    base = ProceduralScenes(6, seed=0, split="test")
    others = [
        ProceduralScenes(6, seed=1, split="test"),
        ProceduralScenes(6, seed=0, split="train"),
        ProceduralScenes(6, seed=0, split="val"),
    ]
    for other in others:
        for i in range(6):
            assert base.scene(i) != other.scene(i)
            assert not np.array_equal(base[i].image, other[i].image)
    train = {repr(ProceduralScenes(30, split="train").scene(i)) for i in range(30)}
    test = {repr(ProceduralScenes(30, split="test").scene(i)) for i in range(30)}
    assert not train & test
    assert base.name(0) != others[1].name(0)


def test_procedural_samples_are_valid():
    ds = ProceduralScenes(6, size=(96, 128))
    assert len(ds) == 6
    names = set()
    for sample in ds:
        assert sample.image.shape == (96, 128, 3) and sample.image.dtype == np.uint8
        assert sample.mask.shape == (96, 128) and sample.mask.any()
        assert 2 <= sample.meta["n_objects"] <= 5
        assert 0 <= sample.meta["target_index"] < sample.meta["n_objects"]
        assert sample.meta["shape"] in SHAPE_KINDS
        names.add(sample.name)
    assert len(names) == 6
    assert ds[-1].name == ds[5].name
    assert [s.name for s in ds[1:3]] == [ds.name(1), ds.name(2)]
    with pytest.raises(IndexError):
        ds[6]


def test_procedural_mask_is_the_visible_target():
    ds = ProceduralScenes(40, size=128)
    occluded = 0
    for i in range(40):
        scene = ds.scene(i)
        _, labels = render_layers(scene, 128)
        _, mask = render(scene, 128)
        np.testing.assert_array_equal(mask, labels == scene.target)
        full = label_map([scene.target_object], 128) == 0
        assert not (mask & ~full).any()  # never outside the target's own shape
        if (full & ~mask).any():
            occluded += 1
            # whatever hides the target is an object painted in front of it
            assert (labels[full & ~mask] > scene.target).all()
    assert occluded >= 5


def test_procedural_same_scene_at_two_resolutions():
    ds = ProceduralScenes(8, seed=1)
    for i in range(8):
        scene = ds.scene(i)
        _, small = render(scene, 256)
        _, large = render(scene, 1024)
        down = large.reshape(256, 4, 256, 4).mean(axis=(1, 3)) > 0.5
        iou = (down & small).sum() / (down | small).sum()
        assert iou > 0.97, (i, scene.target_object.shape.kind, iou)
    # the pictures agree too, not only the masks
    img_small, _ = render(ds.scene(0), 256)
    img_large, _ = render(ds.scene(0), 1024)
    down_img = img_large.reshape(256, 4, 256, 4, 3).mean(axis=(1, 3))
    assert np.abs(down_img - img_small.astype(float)).mean() < 12


def test_procedural_variety():
    ds = ProceduralScenes(50, seed=0, size=128)
    samples = list(ds)
    kinds = Counter(s.meta["shape"] for s in samples)
    assert set(kinds) == set(SHAPE_KINDS), kinds
    areas = np.array([s.meta["area_fraction"] for s in samples])
    assert areas.min() < 0.03 and areas.max() > 0.15
    tags = Counter(t for s in samples for t in s.meta["tags"])
    assert {"low_contrast", "camouflage", "occluded"} <= set(tags), tags
    assert len({s.meta["background"] for s in samples}) >= 4


def test_procedural_argument_checks():
    with pytest.raises(ValueError):
        ProceduralScenes(-1)
    with pytest.raises(ValueError):
        ProceduralScenes(3, seed=-2)
    with pytest.raises(ValueError):
        ProceduralScenes(3, size=0)
    with pytest.raises(ValueError, match="'standard' or 'hard'"):
        ProceduralScenes(3, mix="easy")
    with pytest.raises(ValueError, match="sum to 1"):
        SceneMix(plain=0.5)
    with pytest.raises(ValueError, match="objects"):
        SceneMix(objects=(3, 2))


def _visible_share(scene, size: int = 128) -> float:
    labels = label_map(scene.objects, size)
    own = label_map([scene.target_object], size) == 0
    return float((labels == scene.target).sum() / own.sum())


def test_scene_mixes_keep_their_promises():
    standard = ProceduralScenes(60, size=128)
    hard = ProceduralScenes(60, size=128, mix="hard")
    assert standard.mix == SceneMix() and hard.mix == SceneMix.hard()
    assert hard.name(3).startswith("synthetic-hard-") and standard.name(3).startswith("synthetic-t")
    assert hard[3].meta["mix"] == "hard" and standard[3].meta["mix"] == "standard"
    assert ProceduralScenes(2, mix=SceneMix(lookalike=0.5)).name(0).startswith("synthetic-custom")
    n_std = [len(standard.scene(i).objects) for i in range(60)]
    n_hard = [len(hard.scene(i).objects) for i in range(60)]
    assert set(n_std) == {2, 3, 4} and max(n_hard) == 5
    # occluders leave at least min_visible of the target (checked on the generator's own grid,
    # unless the target had to be brought to the front, which makes it fully visible)
    assert min(_visible_share(standard.scene(i)) for i in range(60)) >= 0.8 - 1e-9
    assert min(_visible_share(hard.scene(i)) for i in range(60)) < 0.8
    tags_std = Counter(t for i in range(60) for t in standard.scene(i).tags)
    tags_hard = Counter(t for i in range(60) for t in hard.scene(i).tags)
    assert tags_std["lookalike"] < tags_hard["lookalike"]
    assert tags_std["occluded"] < tags_hard["occluded"]


# ----------------------------------------------------------------------------- loading


def test_load_image_modes(tmp_path):
    rgb = _rgb()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgb)  # alpha dropped

    grey = rgb[:, :, 0]
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    out = load_image(tmp_path / "grey.png")
    assert out.shape == (*grey.shape, 3)
    np.testing.assert_array_equal(out, np.dstack([grey] * 3))

    deep = (np.arange(12 * 16).reshape(12, 16) * 300).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out16 = load_image(tmp_path / "deep.png")
    assert out16.dtype == np.uint8
    np.testing.assert_array_equal(out16[:, :, 0], np.rint(deep / 257).astype(np.uint8))

    pal = Image.fromarray(grey, "L").convert("P")
    pal.save(tmp_path / "pal.png")
    assert load_image(tmp_path / "pal.png").shape == (12, 16, 3)


def test_load_mask_binarisation(tmp_path):
    values = np.array([[0, 100, 127, 128, 200, 255]], dtype=np.uint8)
    Image.fromarray(values, "L").save(tmp_path / "grey.png")
    assert load_mask(tmp_path / "grey.png").tolist() == [[False, False, False, True, True, True]]

    labels = np.array([[0, 1, 1, 0]], dtype=np.uint8)  # 0/1 label masks are not > 127
    Image.fromarray(labels, "L").save(tmp_path / "labels.png")
    assert load_mask(tmp_path / "labels.png").tolist() == [[False, True, True, False]]

    pal = Image.fromarray(labels, "P")
    pal.putpalette([0, 0, 0, 128, 0, 0])  # PerSeg/VOC style: index 1 is dark red
    pal.save(tmp_path / "pal.png")
    assert load_mask(tmp_path / "pal.png").tolist() == [[False, True, True, False]]

    Image.fromarray(_blob()).save(tmp_path / "bits.png")  # bool -> mode "1"
    assert Image.open(tmp_path / "bits.png").mode == "1"
    np.testing.assert_array_equal(load_mask(tmp_path / "bits.png"), _blob())

    deep = (_blob() * 65535).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "deep.png"), _blob())

    Image.fromarray(_blob().astype(np.uint8) * 255).save(tmp_path / "jpeg.jpg", quality=70)
    assert (load_mask(tmp_path / "jpeg.jpg") == _blob()).mean() > 0.95


# ----------------------------------------------------------------------------- folders


def test_folder_dataset_pairs_by_stem(tmp_path):
    root = _tree(tmp_path)
    ds = FolderDataset(root)
    assert len(ds) == 3 and ds.names == ["a", "b", "c"]
    sample = ds[1]
    np.testing.assert_array_equal(sample.image, _rgb(seed=1))
    np.testing.assert_array_equal(sample.mask, _blob())
    assert sample.name == "b" and sample.meta["image_path"].endswith("b.png")
    assert [s.name for s in ds] == ["a", "b", "c"]


def test_folder_dataset_mixed_formats(tmp_path):
    img_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
    rgb = _rgb()
    Image.fromarray(np.dstack([rgb, np.full((12, 16), 9, np.uint8)]), "RGBA").save(
        img_dir.mkdir(parents=True) or img_dir / "rgba.png"
    )
    Image.fromarray(rgb[:, :, 1], "L").save(img_dir / "grey.bmp")
    Image.fromarray(rgb[:, :, 2].astype(np.uint16) * 257).save(img_dir / "deep.png")
    Image.fromarray(rgb).save(img_dir / "photo.JPG", quality=95)
    mask_dir.mkdir()
    Image.fromarray(_blob()).save(mask_dir / "rgba.png")  # 1-bit
    Image.fromarray(_blob().astype(np.uint8)).save(mask_dir / "grey.gif")  # 0/1 values
    Image.fromarray(_blob().astype(np.uint8) * 255).save(mask_dir / "deep.tif")
    Image.fromarray(_blob().astype(np.uint8) * 255).save(mask_dir / "photo.png")
    ds = FolderDataset(tmp_path)
    assert ds.names == ["deep", "grey", "photo", "rgba"]
    by_name = {s.name: s for s in ds}
    np.testing.assert_array_equal(by_name["rgba"].image, rgb)
    np.testing.assert_array_equal(by_name["grey"].image[:, :, 2], rgb[:, :, 1])
    np.testing.assert_array_equal(by_name["deep"].image[:, :, 0], rgb[:, :, 2])
    for sample in ds:
        assert sample.image.dtype == np.uint8 and sample.image.shape == (12, 16, 3)
        np.testing.assert_array_equal(sample.mask, _blob())


def test_folder_dataset_is_lazy(tmp_path, monkeypatch):
    import basam_lite.datasets.folders as folders

    calls = []
    real = folders.load_image
    monkeypatch.setattr(folders, "load_image", lambda p, *a: calls.append(p) or real(p, *a))
    checked = []
    real_check = folders.check_image
    monkeypatch.setattr(folders, "check_image", lambda p: checked.append(p) or real_check(p))
    ds = FolderDataset(_tree(tmp_path))
    # Opening decodes each file once to check it, and keeps no pixels: a sample is read anew.
    assert calls == [] and len(checked) == 3
    ds[0]
    assert len(calls) == 1
    checked.clear()
    FolderDataset(_tree(tmp_path), verify="header")  # headers only: nothing decoded
    assert checked == [] and len(calls) == 1


def test_folder_image_without_mask(tmp_path):
    root = _tree(tmp_path)
    Image.fromarray(_rgb()).save(root / "images" / "lonely.png")
    with pytest.raises(ValueError, match=r"lonely\.png: image without a mask"):
        FolderDataset(root)
    with pytest.warns(UserWarning, match=r"lonely\.png"):
        ds = FolderDataset(root, on_error="skip")
    assert ds.names == ["a", "b", "c"]


def test_folder_mask_without_image(tmp_path):
    root = _tree(tmp_path)
    Image.fromarray(_blob()).save(root / "masks" / "orphan.png")
    with pytest.raises(ValueError, match=r"orphan\.png: mask without an image"):
        FolderDataset(root)
    with pytest.warns(UserWarning, match=r"orphan\.png"):
        assert len(FolderDataset(root, on_error="skip")) == 3


def test_folder_unreadable_file(tmp_path):
    root = _tree(tmp_path)
    (root / "images" / "broken.jpg").write_bytes(b"this is not a jpeg")
    Image.fromarray(_blob()).save(root / "masks" / "broken.png")
    with pytest.raises(ValueError, match=r"cannot read .*broken\.jpg"):
        FolderDataset(root)
    with pytest.warns(UserWarning, match=r"broken\.jpg"):
        assert FolderDataset(root, on_error="skip").names == ["a", "b", "c"]
    # Without the header check the error comes when the pixels are read, naming the file.
    ds = FolderDataset(root, verify=False)
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        ds[ds.names.index("broken")]


def test_folder_size_mismatch(tmp_path):
    root = _tree(tmp_path)
    _save_pair(root / "images", root / "masks", "odd", size=(12, 16))
    Image.fromarray(np.zeros((10, 16), np.uint8)).save(root / "masks" / "odd.png")
    with pytest.raises(
        ValueError, match=r"odd\.png: the image is 16x12 .* mask .*odd\.png is 16x10"
    ):
        FolderDataset(root)
    with pytest.warns(UserWarning, match=r"odd\.png"):
        assert len(FolderDataset(root, on_error="skip")) == 3
    ds = FolderDataset(root, verify=False)
    with pytest.raises(ValueError, match="resize or replace the mask"):
        ds[ds.names.index("odd")]


def test_folder_empty_and_missing(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        FolderDataset(tmp_path)
    with pytest.raises(ValueError, match="no image files"):
        FolderDataset(tmp_path, on_error="skip")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FolderDataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"expected the mask folder .*gt"):
        FolderDataset(tmp_path, masks="gt")
    with pytest.raises(ValueError, match="on_error"):
        FolderDataset(tmp_path, on_error="ignore")  # type: ignore[arg-type]


def test_folder_every_pair_skipped(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    Image.fromarray(_rgb()).save(tmp_path / "images" / "x.png")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable"):
        FolderDataset(tmp_path, on_error="skip")


def test_folder_pairs_in_one_folder(tmp_path):
    for i, stem in enumerate(("cat", "dog")):
        _save_pair(tmp_path, tmp_path, stem, img_ext=".jpg", seed=i)
    (tmp_path / "README.txt").write_text("ignored")
    ds = FolderDataset(tmp_path, images=".", masks=".")
    assert ds.names == ["cat", "dog"]
    assert ds[0].mask.sum() == _blob().sum()


def test_concat_dataset(tmp_path):
    a = FolderDataset(_tree(tmp_path / "a", ("x", "y")), name_prefix="a/")
    b = FolderDataset(_tree(tmp_path / "b", ("z",)), name_prefix="b/")
    both = ConcatDataset([a, b])
    assert len(both) == 3
    assert [s.name for s in both] == ["a/x", "a/y", "b/z"]
    assert both[-1].name == "b/z"
    with pytest.raises(IndexError):
        both[3]


# ----------------------------------------------------------------------------- official layouts


def _dis5k(root: Path) -> Path:
    for split, stems in (("DIS-TE1", ("1#Accessories#a",)), ("DIS-TE2", ("2#Car#b", "2#Car#c"))):
        for stem in stems:
            _save_pair(root / split / "im", root / split / "gt", stem, img_ext=".jpg")
    for split in ("DIS-TE3", "DIS-TE4"):
        _save_pair(root / split / "im", root / split / "gt", f"{split}-only", img_ext=".jpg")
    return root


def test_dis5k_layout(tmp_path):
    root = _dis5k(tmp_path / "DIS5K")
    te1 = dis5k(root)
    assert te1.names == ["DIS-TE1/1#Accessories#a"]
    assert te1[0].meta["dataset"] == "dis5k"
    assert dis5k(root, "DIS-TE2").names == ["DIS-TE2/2#Car#b", "DIS-TE2/2#Car#c"]
    assert dis5k(root / "DIS-TE2", "DIS-TE2").names == dis5k(root, "DIS-TE2").names
    assert len(dis5k(tmp_path, "DIS-TE2")) == 2  # the folder holding DIS5K works too
    every = dis5k(root, "DIS-TE")
    assert isinstance(every, ConcatDataset) and len(every) == 5
    assert len({s.name for s in every}) == 5
    with pytest.raises(FileNotFoundError, match=r"DIS-VD/im"):
        dis5k(root, "DIS-VD")
    with pytest.raises(FileNotFoundError, match=r"expected the folders .*DIS-TE1/im"):
        dis5k(root / "DIS-TE2")
    with pytest.raises(ValueError, match="unknown DIS5K split"):
        dis5k(root, "DIS-TE9")


def test_duts_te_layout(tmp_path):
    duts = tmp_path / "DUTS-TE"
    for i in range(2):
        _save_pair(duts / "DUTS-TE-Image", duts / "DUTS-TE-Mask", f"ILSVRC_{i}", img_ext=".jpg")
    assert duts_te(duts).names == ["ILSVRC_0", "ILSVRC_1"]
    assert duts_te(tmp_path).names == ["ILSVRC_0", "ILSVRC_1"]
    with pytest.raises(FileNotFoundError, match="DUTS-TE-Image"):
        duts_te(duts / "DUTS-TE-Image")


def test_isic2016_layout_pairs_segmentation_suffix(tmp_path):
    img_dir = tmp_path / "ISBI2016_ISIC_Part1_Test_Data"
    gt_dir = tmp_path / "ISBI2016_ISIC_Part1_Test_GroundTruth"
    for i, stem in enumerate(("ISIC_0000003", "ISIC_0000012")):
        _save_pair(img_dir, gt_dir, stem, img_ext=".jpg", mask_stem=f"{stem}_Segmentation", seed=i)
    ds = isic2016(tmp_path)
    assert ds.names == ["ISIC_0000003", "ISIC_0000012"]
    assert ds[1].meta["mask_path"].endswith("ISIC_0000012_Segmentation.png")
    np.testing.assert_array_equal(ds[0].mask, _blob())
    # a mask without the suffix does not pair with anything
    Image.fromarray(_rgb()).save(img_dir / "ISIC_0000099.jpg")
    Image.fromarray(_blob()).save(gt_dir / "ISIC_0000099.png")
    with pytest.raises(ValueError, match=r"ISIC_0000099_Segmentation"):
        isic2016(tmp_path)
    with pytest.raises(FileNotFoundError, match="ISBI2016_ISIC_Part1_Test_GroundTruth"):
        isic2016(img_dir)


def test_cod10k_layout(tmp_path):
    test = tmp_path / "COD10K-v3" / "Test"
    _save_pair(
        test / "Image", test / "GT_Object", "COD10K-CAM-1-Aquatic-1-BatFish-2", img_ext=".jpg"
    )
    assert len(cod10k(tmp_path / "COD10K-v3")) == 1
    assert len(cod10k(test)) == 1
    assert len(cod10k(tmp_path)) == 1
    with pytest.raises(FileNotFoundError, match=r"Test/Image"):
        cod10k(test / "Image")


# ----------------------------------------------------------------------------- COCO


def _coco(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    from pycocotools import mask as mask_utils

    images = tmp_path / "val"
    images.mkdir(parents=True)
    Image.fromarray(_rgb(80, 120)).save(images / "000001.jpg")
    Image.fromarray(_rgb(80, 120, seed=1)).save(images / "000002.jpg")
    rle_mask = np.zeros((80, 120), dtype=np.uint8)
    rle_mask[5:35, 60:100] = 1  # 30 x 40 = 1200 px
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    rle["counts"] = rle["counts"].decode("ascii")
    data = {
        "images": [
            {"id": 1, "file_name": "000001.jpg", "height": 80, "width": 120},
            {"id": 2, "file_name": "000002.jpg", "height": 80, "width": 120},
        ],
        "categories": [{"id": 3, "name": "car"}, {"id": 18, "name": "dog"}],
        "annotations": [
            # a 40 x 30 rectangle as a polygon
            {"id": 11, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 1200.0,
             "bbox": [10, 10, 40, 30], "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]]},
            {"id": 12, "image_id": 2, "category_id": 18, "iscrowd": 0, "area": 1200.0,
             "bbox": [60, 5, 40, 30], "segmentation": rle},
            {"id": 13, "image_id": 2, "category_id": 18, "iscrowd": 1, "area": 900.0,
             "bbox": [0, 0, 30, 30], "segmentation": rle},
            {"id": 14, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 20.0,
             "bbox": [0, 0, 5, 4], "segmentation": [[0, 0, 5, 0, 5, 4, 0, 4]]},
        ],
    }  # fmt: skip
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data))
    return ann, images, rle_mask.astype(bool)


def test_coco_instances(tmp_path):
    ann, images, rle_mask = _coco(tmp_path)
    ds = CocoInstances(ann, images)
    assert len(ds) == 2  # the crowd (13) and the tiny instance (14) are left out
    poly, rle = ds[0], ds[1]
    assert (poly.name, rle.name) == ("1_11", "2_12")
    assert poly.image.shape == (80, 120, 3) and poly.mask.shape == (80, 120)
    rows, cols = np.nonzero(poly.mask)
    assert 9 <= rows.min() <= 10 and 39 <= rows.max() <= 40
    assert 9 <= cols.min() <= 10 and 49 <= cols.max() <= 50
    np.testing.assert_array_equal(rle.mask, rle_mask)
    assert rle.meta["category"] == "dog" and rle.meta["ann_id"] == 12
    assert len(CocoInstances(ann, images, min_area=0)) == 3
    assert len(CocoInstances(ann, images, min_area=0, max_instances=1)) == 1
    with pytest.raises(ValueError, match="no instance left"):
        CocoInstances(ann, images, min_area=5000)


def test_coco_missing_image(tmp_path):
    ann, images, _ = _coco(tmp_path)
    (images / "000002.jpg").unlink()
    with pytest.raises(UserError, match=r"000002\.jpg: missing from"):
        CocoInstances(ann, images, min_area=0)
    with pytest.raises(FileNotFoundError, match="annotation file"):
        CocoInstances(tmp_path / "nope.json", images)


# ----------------------------------------------------------------------------- spec strings


def test_open_dataset_synthetic():
    assert len(open_dataset("synthetic")) == 24
    ds = open_dataset("synthetic:5", seed=2, size=64)
    assert isinstance(ds, ProceduralScenes) and len(ds) == 5
    assert ds.seed == 2 and ds[0].image.shape == (64, 64, 3)
    assert open_dataset("synthetic:3:val").split == "val"
    hard = open_dataset("synthetic:3:test:hard")
    assert hard.mix_name == "hard" and hard.split == "test"
    with pytest.raises(ValueError, match="'standard' or 'hard'"):
        open_dataset("synthetic:3:test:easy")
    with pytest.raises(ValueError, match="integer"):
        open_dataset("synthetic:many")


def test_open_dataset_files(tmp_path):
    root = _tree(tmp_path / "plain")
    assert len(open_dataset(f"folder:{root}")) == 3
    flat = tmp_path / "flat"
    _save_pair(flat, flat, "one", img_ext=".jpg")
    assert len(open_dataset(f"folder:{flat}")) == 1
    dis = _dis5k(tmp_path / "DIS5K")
    assert len(open_dataset(f"dis5k:{dis}")) == 1
    assert len(open_dataset(f"dis5k:{dis}:DIS-TE2")) == 2
    assert len(open_dataset(f"dis5k:{dis}:DIS-TE")) == 5
    with pytest.raises(ValueError, match="unknown DIS5K split"):
        open_dataset(f"dis5k:{dis}:DIS-XX")
    ann, images, _ = _coco(tmp_path / "coco")
    assert len(open_dataset(f"coco:{ann}:{images}")) == 2
    with pytest.raises(FileNotFoundError, match="DUTS-TE-Image"):
        open_dataset(f"duts:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="ISBI2016"):
        open_dataset(f"isic2016:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="GT_Object"):
        open_dataset(f"cod10k:{tmp_path}")


def test_open_dataset_bad_specs():
    with pytest.raises(ValueError, match=r"(?s)unknown dataset scheme 'imagenet'.*synthetic.*coco"):
        open_dataset("imagenet:/data")
    with pytest.raises(ValueError, match="names no path"):
        open_dataset("folder:")
    with pytest.raises(ValueError, match="ANNOTATIONS"):
        open_dataset("coco:only.json")


# ----------------------------------------------------------------------------- real photographs


def test_perseg_pairs_in_one_folder(perseg_dir: Path):
    # perseg_dir (conftest) skips with a reason where the shared photos are absent.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may be skipped
        ds = FolderDataset(perseg_dir, images=".", masks=".")
    assert len(ds) == 9
    assert ds.names[0] == "cat_00"
    for i in (0, 4):  # a cat and a 2048 px sneaker
        sample = ds[i]
        assert sample.image.shape[:2] == sample.mask.shape
        assert 0.05 < sample.mask.mean() < 0.4
    assert len(open_dataset(f"folder:{perseg_dir}")) == 9


# ----------------------------------------------------------------------------- bad data policy


def test_label_masks_follow_the_documented_rule(tmp_path):
    few = np.array([[0, 100, 100, 0]], dtype=np.uint8)  # 0 and one other value: binary
    Image.fromarray(few, "L").save(tmp_path / "dim.png")
    assert load_mask(tmp_path / "dim.png").tolist() == [[False, True, True, False]]
    labels = np.array([[0, 1, 2, 2]], dtype=np.uint8)  # two objects: no single one to pick
    Image.fromarray(labels, "L").save(tmp_path / "labels.png")
    with pytest.raises(UserError, match=r"labels\.png is a label mask with the values \{0, 1, 2\}"):
        load_mask(tmp_path / "labels.png")
    pal = Image.fromarray(labels, "P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    pal.save(tmp_path / "pal3.png")
    with pytest.raises(UserError, match=r"values \{0, 1, 2\}.*mask == 2"):
        load_mask(tmp_path / "pal3.png")
    deep = np.array([[0, 3, 7, 0]], dtype=np.uint16)  # 16-bit labels are labels too
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with pytest.raises(UserError, match=r"values \{0, 3, 7\}"):
        load_mask(tmp_path / "deep.png")
    empty = np.zeros((2, 3), dtype=np.uint8)
    Image.fromarray(empty, "L").save(tmp_path / "empty.png")
    assert not load_mask(tmp_path / "empty.png").any()  # read as empty; datasets report it


def _bad_tree(root: Path) -> dict[str, str]:
    """A folder dataset with three good pairs and one bad file of each kind; the expected
    problem of each bad file."""
    _tree(root)
    bad = {}
    _save_pair(root / "images", root / "masks", "truncated", img_ext=".jpg")
    whole = (root / "images" / "truncated.jpg").read_bytes()
    (root / "images" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    bad["truncated.jpg"] = "cannot read the file as an image"
    _save_pair(root / "images", root / "masks", "empty")
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(root / "masks" / "empty.png")
    bad["empty.png"] = "empty mask"
    _save_pair(root / "images", root / "masks", "multi")
    multi = _blob().astype(np.uint8)
    multi[0, :4] = 2
    Image.fromarray(multi, "L").save(root / "masks" / "multi.png")
    bad["multi.png"] = "label mask with the values {0, 1, 2}"
    return bad


def test_every_bad_file_is_listed_when_the_dataset_opens(tmp_path):
    bad = _bad_tree(tmp_path)
    with pytest.raises(UserError, match=r"3 problem\(s\)") as refused:
        FolderDataset(tmp_path)
    message = str(refused.value)
    for name, reason in bad.items():
        assert any(name in line and reason in line for line in message.splitlines()), name
    with pytest.warns(UserWarning, match="skipping"):
        ds = FolderDataset(tmp_path, on_error="skip")
    assert ds.names == ["a", "b", "c"]
    problems = {Path(item).name: reason for item, reason in ds.problems()}
    assert sorted(problems) == sorted(bad)
    for name, expected in bad.items():
        assert expected in problems[name], (name, problems[name])
    # The same through a spec string, as the sweep opens datasets.
    with pytest.raises(UserError, match=r"3 problem\(s\)"):
        open_dataset(f"folder:{tmp_path}")
    with pytest.warns(UserWarning):
        skipped = open_dataset(f"folder:{tmp_path}", on_error="skip")
    assert len(skipped) == 3 and len(skipped.problems()) == 3
    # Headers only: the masks' headers look fine; only the JPEG cut in half shows.
    with pytest.raises(UserError, match=r"1 problem\(s\):\n.*truncated\.jpg"):
        FolderDataset(tmp_path, verify="header")


def test_concat_and_procedural_datasets_report_problems(tmp_path):
    _bad_tree(tmp_path / "one")
    _tree(tmp_path / "two")
    with pytest.warns(UserWarning):
        parts = [FolderDataset(tmp_path / "one", on_error="skip"), FolderDataset(tmp_path / "two")]
    assert len(ConcatDataset(parts).problems()) == 3
    assert ProceduralScenes(2).problems() == []


def _bad_coco(tmp_path: Path) -> Path:
    ann, images, _ = _coco(tmp_path)
    data = json.loads(ann.read_text())
    Image.fromarray(_rgb(50, 60, seed=3)).save(images / "000003.jpg")
    data["images"].append({"id": 3, "file_name": "000003.jpg", "height": 80, "width": 120})
    data["annotations"] += [
        {"id": 21, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 2000.0,
         "segmentation": [[100, 10, 160, 10, 160, 60, 100, 60]]},  # past the right edge
        {"id": 22, "image_id": 3, "category_id": 3, "iscrowd": 0, "area": 2000.0,
         "segmentation": [[1, 1, 40, 1, 40, 40]]},  # image 3 is not 120 x 80
        {"id": 23, "image_id": 2, "category_id": 3, "iscrowd": 0, "area": 2000.0,
         "segmentation": [[5, 5, 5, 5, 5, 5]]},  # a degenerate polygon: empty mask
    ]  # fmt: skip
    ann.write_text(json.dumps(data))
    return ann


def test_coco_problems_are_listed_when_it_opens(tmp_path):
    ann = _bad_coco(tmp_path)
    images = tmp_path / "val"
    with pytest.raises(UserError, match=r"3 problem\(s\)") as refused:
        CocoInstances(ann, images)
    message = str(refused.value)
    assert "000003.jpg: the file is 60x50 (WxH) but the annotations declare 120x80" in message
    assert "annotation 21 (000001.jpg): a polygon reaches outside the 120x80 image" in message
    assert "annotation 23 (000002.jpg): empty mask" in message
    with pytest.warns(UserWarning):
        ds = CocoInstances(ann, images, on_error="skip")
    assert [s.name for s in ds] == ["1_11", "2_12"]
    assert [item for item, _ in ds.problems()][1:] == [
        "annotation 21 (000001.jpg)",
        "annotation 23 (000002.jpg)",
    ]


@pytest.mark.parametrize("spec", ["synthetic:0", "synthetic:-2"])
def test_a_spec_that_selects_nothing_is_refused(spec):
    with pytest.raises(UserError, match=r"selects -?\d+ scenes; give N >= 1"):
        open_dataset(spec)
