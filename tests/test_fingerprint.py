"""A table's data fingerprint covers exactly the images its run uses: ``--limit N`` of a procedural
set draws and hashes N scenes, not all; resuming, extending, sharding and merging still agree, and
a change to a used image (never to an unused one) changes the identity."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import basam_lite as bl
from basam_lite.datasets import ProceduralScenes
from basam_lite.datasets.extent import ExtentView
from basam_lite.errors import UserError
from basam_lite.run_identity import json_hash, plain
from basam_lite.sweep import (
    SweepConfig,
    _open,
    dataset_fingerprint,
    identity,
    merge_shards,
    meta_path,
    run_sweep,
    used_images,
)

ROOT = Path(__file__).resolve().parents[1]
TIMING = ["seconds", "encode_seconds"]


@pytest.fixture(scope="module")
def tiny_models() -> dict:
    return {"tiny": bl.build_sam("tiny")}


def cfg(**changes) -> SweepConfig:
    base = dict(
        models=("tiny",),
        variants=("vanilla",),
        resolutions=(128,),
        dataset="synthetic:3",
        prompts=("box",),
    )
    return SweepConfig(**{**base, **changes})


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        a.drop(columns=TIMING).reset_index(drop=True),
        b.drop(columns=TIMING).reset_index(drop=True),
    )


def test_limit_one_of_twenty_thousand_scenes_draws_one():
    c = cfg(dataset="synthetic:20000", limit=1)
    ds = _open(c)
    tracemalloc.start()
    t0 = time.perf_counter()
    data = identity(c, ds)["data"]
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0, seconds  # measured 0.02 s; every scene: about 40 s and 1.3 GB
    assert peak < 20 * 2**20, peak
    assert list(ds._scenes) == [0]  # the one scene the run uses, no other drawn
    # The formula: the used scenes' parameters, each with its index.
    fresh = ProceduralScenes(20000)
    expected = json_hash([[0, plain(fresh.scene(0))]])
    assert data == {"kind": "procedural", "scenes": 20000, "used": 1, "scene_sha256": expected}


def test_a_full_run_keeps_the_fingerprint_tables_already_store():
    c = cfg(dataset="synthetic:12")
    data = identity(c, _open(c))["data"]
    ds = ProceduralScenes(12)
    assert data == {
        "kind": "procedural",
        "scenes": 12,
        "scene_sha256": json_hash([plain(ds.scene(i)) for i in range(12)]),
    }
    stored = json.loads((ROOT / "results" / "sweep.csv.meta.json").read_text())
    assert stored["identity"]["config"]["dataset"] == "synthetic:12"
    assert stored["identity"]["data"] == data
    # A limit at or above the dataset's size uses every image: the same fingerprint.
    assert identity(cfg(dataset="synthetic:12", limit=50), ds)["data"] == data


def test_a_used_scene_changes_the_identity_an_unused_one_does_not(monkeypatch):
    ds = ProceduralScenes(5)
    other = ProceduralScenes(5, seed=7)
    before = {k: dataset_fingerprint(ds, used_images(cfg(limit=k), ds)) for k in (2, 3)}
    original = ProceduralScenes.scene

    def scene(self, index):  # scene 2 redrawn (as a changed generator would)
        return other.scene(index) if self is ds and index == 2 else original(self, index)

    monkeypatch.setattr(ProceduralScenes, "scene", scene)
    ds._scenes.clear()
    assert dataset_fingerprint(ds, used_images(cfg(limit=2), ds)) == before[2]
    assert dataset_fingerprint(ds, used_images(cfg(limit=3), ds)) != before[3]
    # Two limits over the same scenes never share a fingerprint.
    assert before[2] != before[3]


def test_resume_extend_and_shards_with_a_limit(tmp_path, tiny_models, monkeypatch):
    fresh = run_sweep(cfg(limit=2), tmp_path / "fresh.csv", progress=False, models=tiny_models)
    out = tmp_path / "grown.csv"
    first = run_sweep(cfg(limit=1), out, progress=False, models=tiny_models)
    assert len(first) == 1
    assert json.loads(meta_path(out).read_text())["identity"]["data"]["used"] == 1
    same_rows(run_sweep(cfg(limit=1), out, progress=False, models=tiny_models), first)
    with pytest.raises(UserError, match="--extend") as err:  # a widening, not another run
        run_sweep(cfg(limit=2), out, progress=False, models=tiny_models)
    assert "another run" not in str(err.value)
    grown = run_sweep(cfg(limit=2), out, progress=False, models=tiny_models, extend=True)
    same_rows(grown, fresh)
    assert json.loads(meta_path(out).read_text())["identity"]["data"]["used"] == 2
    same_rows(run_sweep(cfg(limit=1), out, progress=False, models=tiny_models), fresh)

    # Shards of a limited run carry one fingerprint and merge into the unsharded table.
    parts = [tmp_path / f"part{k}.csv" for k in range(2)]
    for k, part in enumerate(parts):
        run_sweep(cfg(limit=2, shard=(k, 2)), part, progress=False, models=tiny_models)
    datas = [json.loads(meta_path(p).read_text())["identity"]["data"] for p in parts]
    assert datas[0] == datas[1] == json.loads(meta_path(out).read_text())["identity"]["data"]
    same_rows(merge_shards(parts, tmp_path / "merged.csv"), fresh)

    # A used scene that changed since the table was made: refused, by name, at any limit.
    original, other = ProceduralScenes.scene, ProceduralScenes(3, seed=9)
    monkeypatch.setattr(
        ProceduralScenes,
        "scene",
        lambda self, i: original(other if i == 1 else self, i),
    )
    for limit in (1, 2):
        with pytest.raises(UserError, match=r"another run.*data\.scene_sha256"):
            run_sweep(cfg(limit=limit), out, progress=False, models=tiny_models)


def test_the_extent_axis_hashes_the_mosaic_neighbours_it_paints():
    c = cfg(dataset="synthetic:40", limit=1, axis="extent", resolutions=(256, 512))
    ds = _open(c)
    used = used_images(c, ds)
    # The reference: the names painted on the largest canvas (8 neighbours at 2x the base).
    canvas = ExtentView(ProceduralScenes(40), base=256, seed=c.seed, patch=16).sample(0, 512)
    painted = {int(name.rsplit("-", 1)[1]) for name in canvas.neighbours}
    assert len(canvas.neighbours) == 8 and used == sorted({0} | painted)
    assert not ds._scenes  # found without drawing a scene
    data = identity(c, ds)["data"]
    assert set(ds._scenes) == set(used)  # only the used scenes drawn
    assert data["used"] == len(used) and data["scenes"] == 40


def _pairs(folder: Path, n: int) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            folder / "images" / f"im{i}.png"
        )
        mask = np.zeros((32, 32), np.uint8)
        mask[8:24, 8:24] = 255
        Image.fromarray(mask).save(folder / "masks" / f"im{i}.png")


def test_a_file_dataset_hashes_the_files_of_the_images_used(tmp_path):
    _pairs(tmp_path / "d", 3)
    c = cfg(dataset=f"folder:{tmp_path / 'd'}", limit=1)
    ds = _open(c)

    def fingerprints() -> tuple[dict, dict]:
        return identity(c, _open(c))["data"], identity(cfg(dataset=c.dataset), _open(c))["data"]

    limited, whole = fingerprints()
    assert limited["files"] == 2 and limited["used"] == 1 and limited["samples"] == 3
    assert whole["files"] == 6 and "used" not in whole
    last = ds.pairs[2][0]
    Image.fromarray(np.full((32, 32, 3), 9, np.uint8)).save(last)  # an unused image changes
    now_limited, now_whole = fingerprints()
    assert now_limited == limited and now_whole != whole
    Image.fromarray(np.full((32, 32, 3), 9, np.uint8)).save(ds.pairs[0][0])  # the used one
    assert fingerprints()[0] != limited


def test_a_coco_subset_hashes_the_pictures_of_its_instances(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_datasets import _coco
    finally:
        sys.path.pop(0)
    ann, images, _ = _coco(tmp_path)
    c = cfg(dataset=f"coco:{ann}:{images}", limit=1)

    def fingerprints() -> tuple[dict, dict]:
        return identity(c, _open(c))["data"], identity(cfg(dataset=c.dataset), _open(c))["data"]

    limited, whole = fingerprints()
    assert limited["files"] == 1 and limited["used"] == 1 and limited["instances"] == 2
    assert whole["files"] == 2 and "used" not in whole
    assert limited["annotations_sha256"] == whole["annotations_sha256"]  # the file, whole
    # instance 2's picture, unused at --limit 1, changes
    Image.fromarray(np.full((80, 120, 3), 7, np.uint8)).save(images / "000002.jpg")
    now_limited, now_whole = fingerprints()
    assert now_limited == limited and now_whole != whole
