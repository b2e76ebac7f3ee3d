"""Every file a command writes is checked like the table, bad numbers and file-system faults are
one line, one writer per training folder, and a merge checks each shard against its own meta."""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import basam_lite as bl
from basam_lite import outputs
from basam_lite.__main__ import main as cli_main
from basam_lite.errors import UserError
from basam_lite.sweep import SweepConfig, merge_shards, meta_path, run_sweep

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "data" / "checkpoints"


def main(argv: list[str]) -> int:
    return cli_main(["--debug", *argv])


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--lr", "nan"],
        ["train", "--lr", "inf"],
        ["train", "--lr=-inf"],
        ["study", "--target-se", "nan"],
        ["bench", "--cap-gb", "inf"],
        ["grade", "x.ipynb", "--timeout", "inf"],
    ],
)
def test_non_finite_numbers_are_refused_before_work(argv, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --") and "not a finite number" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a run folder


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["study", "--target-se", "-1"], "a standard error is positive"),
        (["study", "--target-se", "0"], "a standard error is positive"),
        (["bench", "--cap-gb", "-1"], "a memory cap is a positive"),
        (["bench", "--cap-gb", "0"], "a memory cap is a positive"),
        (["grade", "x.ipynb", "--timeout", "-1"], "must be positive"),
        # the extent axis's sizes are checked before the zoom axis runs and writes its table
        (["sweep", "--extent-resolutions", "-256", "--model", "tiny"], "-256"),
        (["study", "--extent-resolutions", "100"], "100"),
    ],
)
def test_bad_numbers_of_any_command_are_refused_before_work(
    argv, why, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and why in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # nothing written: no table, no lock, no folder


@pytest.mark.parametrize("lr", ["-1", "0", "-1e-4"])
def test_learning_rate_must_be_positive(lr, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="--lr must be a positive learning rate"):
        main(["train", f"--lr={lr}", "--steps", "1"])
    assert list(tmp_path.iterdir()) == []


def test_train_out_and_card_never_replace_a_foreign_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "model.pt"
    photo.write_bytes(b"\x89PNG not a checkpoint")
    with pytest.raises(UserError, match="not a checkpoint this project wrote"):
        main(["train", "--out", str(photo), "--steps", "1"])
    readme = tmp_path / "other.md"
    readme.write_text("# my notes\n")
    shutil.copy(CHECKPOINTS / "tiny-vanilla.pt", tmp_path / "other.pt")  # a real checkpoint
    with pytest.raises(UserError, match="other.md exists and is not a model card"):
        main(["train", "--out", str(tmp_path / "other.pt"), "--steps", "1"])
    assert photo.read_bytes() == b"\x89PNG not a checkpoint"
    assert readme.read_text() == "# my notes\n"
    assert not (tmp_path / "runs").exists()  # refused before the run folder was made
    # what this project wrote is recognised (a rerun replaces its own files)
    assert outputs.is_torch_checkpoint(CHECKPOINTS / "tiny-vanilla.pt")
    assert outputs.is_model_card(CHECKPOINTS / "tiny-vanilla.md")
    assert not outputs.is_model_card(readme) and not outputs.is_torch_checkpoint(photo)


def test_one_writer_per_training_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "mine"
    held = outputs.hold_folder(run_dir)
    try:
        with pytest.raises(UserError, match="another run is writing .*--run-dir"):
            main(["train", "--run-dir", str(run_dir), "--steps", "1"])
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    finally:
        held.release()
    again = outputs.hold_folder(run_dir)  # released: the next run may take it
    again.release()


def test_sweep_plot_never_replaces_a_foreign_file(tmp_path) -> None:
    photo = tmp_path / "sweep.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n a holiday photo")
    before = files(tmp_path)
    argv = ["sweep", "--out", str(tmp_path / "sweep.csv"), "--model", "tiny", "--limit", "1"]
    for extra in ([], ["--axis", "both"]):
        with pytest.raises(UserError, match="sweep.png exists and is not a plot.*--no-plot"):
            main([*argv, *extra])
    assert files(tmp_path) == before  # no table, meta or lock either


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[list[Path], Path]:
    folder = tmp_path_factory.mktemp("shards")
    models = {"tiny": bl.build_sam("tiny")}
    parts = [folder / f"part{k}.csv" for k in range(2)]
    for k, part in enumerate(parts):
        cfg = SweepConfig(
            models=("tiny",),
            variants=("vanilla",),
            resolutions=(128,),
            dataset="synthetic:4",
            prompts=("box",),
            shard=(k, 2),
        )
        run_sweep(cfg, part, progress=False, models=models)
    return parts, folder


def test_merge_refuses_a_cut_or_foreign_shard(shards, tmp_path) -> None:
    parts, _ = shards
    cut = tmp_path / "part1.csv"
    table = pd.read_csv(parts[1])
    table.iloc[:-1].to_csv(cut, index=False)  # cut short; its meta still says complete
    shutil.copy(meta_path(parts[1]), meta_path(cut))
    out = tmp_path / "all.csv"
    with pytest.raises(UserError, match=r"holds 1 rows but its metadata says 2 .*cut short"):
        merge_shards([parts[0], cut], out)
    stray = tmp_path / "stray.csv"
    changed = table.copy()
    changed.loc[0, "variant"] = "paper"
    changed.to_csv(stray, index=False)
    shutil.copy(meta_path(parts[1]), meta_path(stray))
    with pytest.raises(UserError, match="outside its own run .*variant paper"):
        merge_shards([parts[0], stray], out)
    twice = tmp_path / "twice.csv"
    pd.concat([table.iloc[:1], table.iloc[:1]]).to_csv(twice, index=False)
    shutil.copy(meta_path(parts[1]), meta_path(twice))
    meta = json.loads(meta_path(twice).read_text())
    with pytest.raises(UserError, match="same row twice"):
        merge_shards([parts[0], twice], out, allow_partial=True)
    assert meta["complete"] and not out.exists() and not meta_path(out).exists()
    swapped = tmp_path / "swapped.csv"  # a row of shard 0 in shard 1's file, the count intact
    pd.concat([table.iloc[:1], pd.read_csv(parts[0]).iloc[:1]]).to_csv(swapped, index=False)
    shutil.copy(meta_path(parts[1]), meta_path(swapped))
    with pytest.raises(UserError, match=r"holds rows of another shard \(row 0 is not shard 1/2"):
        merge_shards([parts[0], swapped], out)
    assert not out.exists() and not meta_path(out).exists()
    assert len(merge_shards(parts, out)) == 4


def test_file_system_faults_are_one_line(tmp_path, monkeypatch, capsys) -> None:
    """A fault raised by the command's work: one line, exit 1, the file named."""
    from basam_lite import grade

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.csv"))

    monkeypatch.setattr(grade, "run", full)
    assert cli_main(["grade", "a.ipynb"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no space left on the device: ")

    def other(args):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(grade, "run", other)
    with pytest.raises(OSError):  # not a fault a user can fix: a bug, with its traceback
        cli_main(["grade", "a.ipynb"])


def _mount_tmpfs(where: Path, *options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(["size=256k", *options]), "tmpfs", str(where)],
        capture_output=True,
    )
    return done.returncode == 0


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_a_real_full_disk_and_read_only_folder(kind, tmp_path, capsys) -> None:
    """A small tmpfs that fills, and one mounted read-only (needs root's mount; skipped with the
    reason otherwise): the sweep's first write fails in one line, exit 1."""
    where = tmp_path / "mnt"
    if not _mount_tmpfs(where, *(["ro"] if kind == "read-only" else [])):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        if kind == "full":
            with contextlib.suppress(OSError), open(where / "filler", "wb") as f:
                while True:  # fill it to the last byte
                    f.write(b"\0" * 4096)
                    f.flush()
        argv = [
            "sweep",
            "--out",
            str(where / "sweep.csv"),
            "--model",
            "tiny",
            "--limit",
            "1",
            "--resolutions",
            "128",
            "--variants",
            "vanilla",
            "--prompt",
            "box",
            "--no-plot",
        ]
        assert cli_main(argv) == 1
        err = capsys.readouterr().err
        why = "no space left" if kind == "full" else "read-only"
        assert err.count("\n") == 1 and err.startswith("error: ") and why in err, err
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def test_findings_of_an_incomplete_table_say_so(shards, tmp_path) -> None:
    from basam_lite.study import extent_path, incomplete_lines

    parts, _ = shards
    out = tmp_path / "study.csv"
    merge_shards(parts, out)
    assert "extent" in incomplete_lines(out)[0] and "is missing" in incomplete_lines(out)[0]
    merge_shards(parts, extent_path(out))
    assert incomplete_lines(out) == []  # both axes complete: no warning
    meta = json.loads(meta_path(out).read_text())
    meta_path(out).write_text(json.dumps({**meta, "complete": False}))  # a killed run's meta
    (line, _) = incomplete_lines(out)
    assert line.startswith("**Incomplete table: ") and f"{out} is incomplete" in line


def test_a_checkpoint_that_does_not_fit_is_refused_before_any_file(tmp_path) -> None:
    out = tmp_path / "official.csv"
    argv = ["sweep", "--out", str(out), "--model", "vit_b", "--variants", "vanilla", "--limit",
            "1", "--resolutions", "1024", "--checkpoint", str(CHECKPOINTS / "tiny-vanilla.pt"),
            "--no-plot"]  # fmt: skip
    with pytest.raises(UserError, match="does not fit model 'vit_b'"):
        main(argv)
    assert list(tmp_path.iterdir()) == []  # no lock, no meta, no table


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header says ``width`` x ``height`` (no pixel data follows): what a
    decompression bomb looks like to a reader before it decodes anything."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_a_huge_image_is_refused_in_one_line_and_can_be_skipped(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from basam_lite.datasets.folders import FolderDataset
    from basam_lite.datasets.loading import MAX_PIXELS, image_size, load_image

    assert MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS  # the stated limit is Pillow's own
    huge = tmp_path / "images" / "huge.png"
    huge.parent.mkdir()
    _png_header(huge, 20000, 20000)
    for read in (image_size, load_image):
        with pytest.raises(UserError, match=r"huge.png is larger than the [\d,]+ pixel limit"):
            read(huge)
    (tmp_path / "masks").mkdir()
    _png_header(tmp_path / "masks" / "huge.png", 20000, 20000)
    ok = np.zeros((32, 32, 3), np.uint8)
    Image.fromarray(ok).save(tmp_path / "images" / "ok.jpg")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 8:20] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "ok.png")
    (tmp_path / "images" / "huge.png").rename(tmp_path / "images" / "huge.jpg")
    with pytest.raises(UserError, match="pixel limit"):
        FolderDataset(tmp_path)
    ds = FolderDataset(tmp_path, on_error="skip")
    assert len(ds) == 1 and "pixel limit" in str(ds.problems())


@pytest.mark.parametrize("queries", [None, [(0, 0), (5, 9), (15, 15)]])
def test_capture_estimate_matches_the_maps_and_refuses_above_the_limit(queries) -> None:
    import torch

    from basam_lite.capture import capture_bytes

    sam = bl.build_sam("tiny")
    enc = sam.image_encoder
    blocks = list(range(len(enc.blocks)))
    layout = [(int(enc.blocks[b].attn.num_heads), int(enc.blocks[b].window_size)) for b in blocks]
    image = torch.randn(2, 3, 256, 256)
    with bl.capture_attention(sam, blocks=blocks, queries=queries) as cap, torch.no_grad():
        enc(image)
    kept = sum(m.numel() * m.element_size() for m in cap.maps.values())
    n_queries = None if queries is None else len(queries)
    assert capture_bytes(layout, 2, (16, 16), n_queries) == kept  # the estimate is exact
    limit = kept / 2**30 / 2
    with pytest.raises(UserError, match=r"would keep about 0\.0 GB of maps \(limit .* max_gb"):
        with bl.capture_attention(sam, blocks=blocks, queries=queries, max_gb=limit):
            with torch.no_grad():
                enc(image)
    # 2048 px on every query of every block: refused up front with the estimate
    huge = capture_bytes(layout, 1, (128, 128), None)
    assert huge > 8 * 2**30


def test_bench_never_replaces_a_file_it_did_not_write(tmp_path, monkeypatch, capsys) -> None:
    from basam_lite import bench

    docs = ROOT / "docs"
    assert bench.is_bench_csv(docs / "benchmark.csv")  # the committed outputs are its own
    assert bench.is_bench_report(docs / "benchmark.md")
    monkeypatch.chdir(tmp_path)
    ran: list[str] = []
    monkeypatch.setattr(bench, "bench_blocks", lambda *a: ran.append("ran"))
    for foreign, argv in (
        ("README.md", ["--out", "README.md"]),
        ("notes.md", ["--out", "ok.csv", "--report", "notes.md"]),
    ):
        (tmp_path / foreign).write_text("the user's own file\n")
        assert cli_main(["bench", "--quick", "--skip-models", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{foreign} exists and is not a benchmark" in err, err
        assert (tmp_path / foreign).read_text() == "the user's own file\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == [foreign]  # nothing written
        (tmp_path / foreign).unlink()
    assert ran == []  # refused before the benchmark ran
