"""Runs you can trust: run identity on resume and merge, outputs never destroyed, one writer per
table, bad images under a policy, argument errors as one line, ``--shard auto``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from filelock import FileLock
from PIL import Image

import basam_lite as bl
from basam_lite.__main__ import main
from basam_lite.errors import UserError
from basam_lite.models import tiny_checkpoint_path
from basam_lite.outputs import lock_path
from basam_lite.sweep import (
    COLUMNS,
    SweepConfig,
    merge_shards,
    meta_path,
    read_table,
    run_sweep,
    shard_device,
    shard_from_env,
)

ROOT = Path(__file__).resolve().parents[1]
TIMING = ["seconds", "encode_seconds"]


@pytest.fixture(scope="module")
def tiny_models() -> dict:
    return {"tiny": bl.build_sam("tiny")}


@pytest.fixture(scope="module")
def whole_table(tiny_models, tmp_path_factory) -> pd.DataFrame:
    """The table of :func:`cfg`'s run, in one piece: what merged shards must equal."""
    out = tmp_path_factory.mktemp("whole") / "whole.csv"
    return run_sweep(cfg(), out, progress=False, models=tiny_models)


def cfg(**changes) -> SweepConfig:
    base = dict(
        models=("tiny",),
        variants=("vanilla",),
        resolutions=(128,),
        dataset="synthetic:2",
        prompts=("box",),
    )
    return SweepConfig(**{**base, **changes})


def sweep_words(*resolutions: str) -> list[str]:
    """The command line of :func:`cfg`'s run at ``resolutions``."""
    return [
        "sweep",
        "--model",
        "tiny",
        "--variants",
        "vanilla",
        "--resolutions",
        *resolutions,
        "--dataset",
        "synthetic:2",
        "--prompt",
        "box",
    ]


def snapshot(*paths: Path) -> dict[str, bytes | None]:
    """Every file's bytes (None where absent), to prove a refusal wrote nothing."""
    return {str(p): (p.read_bytes() if p.is_file() else None) for p in paths}


def table_files(out: Path) -> tuple[Path, ...]:
    return out, meta_path(out), out.with_suffix(".png")


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        a.drop(columns=TIMING).reset_index(drop=True),
        b.drop(columns=TIMING).reset_index(drop=True),
    )


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m basam_lite ARGS`` in a fresh process, from this checkout, with no scheduler's
    variables (``--shard auto`` would find them)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "RANK"}
    full_env = {**clean, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "basam_lite", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# ---------------------------------------------------------------- run identity


def test_resume_refuses_another_seed_dataset_or_checkpoint(tmp_path, tiny_models, monkeypatch):
    out = tmp_path / "sweep.csv"
    table = run_sweep(cfg(), out, progress=False, models=tiny_models)
    meta = json.loads(meta_path(out).read_text())
    ident = meta["identity"]
    assert ident["config"]["seed"] == 0 and ident["config"]["dataset"] == "synthetic:2"
    assert ident["data"]["kind"] == "procedural" and len(ident["data"]["scene_sha256"]) == 64
    assert ident["definitions"]["vanilla"] == {"transform": "none", "basam": None}
    assert {"torch", "numpy", "segment_anything", "basam_lite"} <= set(ident["versions"])
    before = snapshot(out, meta_path(out))
    for change, expected in [
        (dict(seed=1), "seed: table 0, this run 1"),
        (dict(dataset="synthetic:3"), "dataset: table synthetic:2, this run synthetic:3"),
        (dict(prompts=("point",)), "prompts"),
        (dict(shard=(1, 2)), "scope.shard"),
    ]:
        with pytest.raises(UserError, match="another run") as err:
            run_sweep(cfg(**change), out, progress=False, models=tiny_models)
        assert expected in str(err.value) and "--overwrite" in str(err.value)
        assert snapshot(out, meta_path(out)) == before
    # --overwrite replaces it with the new run's table.
    other = run_sweep(cfg(seed=1), out, progress=False, models=tiny_models, overwrite=True)
    assert not other["image"].equals(table["image"])

    # The same model name with other weights: the checkpoint's sha256 differs.
    data = tmp_path / "data"
    (data / "checkpoints").mkdir(parents=True)
    ckpt = data / "checkpoints" / "tiny-vanilla.pt"
    vanilla, basam = tiny_checkpoint_path("tiny-vanilla"), tiny_checkpoint_path("tiny-basam")
    shutil.copy(vanilla, ckpt)
    monkeypatch.setenv("BASAM_DATA_DIR", str(data))
    out2 = tmp_path / "ckpt.csv"
    run_sweep(cfg(models=("tiny-vanilla",), dataset="synthetic:1"), out2, progress=False)
    before = snapshot(out2, meta_path(out2))
    shutil.copy(basam, ckpt)  # tiny-basam's weights under tiny-vanilla's name
    with pytest.raises(UserError, match=r"weights\.tiny-vanilla\.sha256"):
        run_sweep(cfg(models=("tiny-vanilla",), dataset="synthetic:1"), out2, progress=False)
    assert snapshot(out2, meta_path(out2)) == before


def test_a_wider_grid_resumes_into_the_fresh_table(tmp_path, tiny_models):
    small, wide = cfg(), cfg(resolutions=(128, 256), variants=("vanilla", "paper"))
    fresh = run_sweep(wide, tmp_path / "fresh.csv", progress=False, models=tiny_models)
    out = tmp_path / "grown.csv"
    first = run_sweep(small, out, progress=False, models=tiny_models)
    assert len(first) == 2
    with pytest.raises(UserError, match="--extend"):  # widening is explicit
        run_sweep(wide, out, progress=False, models=tiny_models)
    grown = run_sweep(wide, out, progress=False, models=tiny_models, extend=True)
    same_rows(grown, fresh)  # the earlier rows moved to their place in the wider grid
    same_rows(read_table(out), fresh)
    # Asking for the small grid again changes nothing: the table keeps its wider grid.
    again = run_sweep(small, out, progress=False, models=tiny_models)
    same_rows(again, fresh)
    assert json.loads(meta_path(out).read_text())["config"]["resolutions"] == [128, 256]


def test_a_table_without_identity_is_refused(tmp_path):
    out = tmp_path / "legacy.csv"
    committed = (ROOT / "results" / "sweep.csv").read_text().splitlines()
    out.write_text("\n".join(committed[:3]) + "\n")
    legacy = json.loads((ROOT / "results" / "sweep.csv.meta.json").read_text())
    legacy.pop("identity", None)  # as tables were written before they recorded one
    meta_path(out).write_text(json.dumps(legacy))
    before = snapshot(out, meta_path(out))
    with pytest.raises(UserError, match="before tables recorded their run identity"):
        run_sweep(cfg(), out, progress=False)
    assert snapshot(out, meta_path(out)) == before


def test_parquet_carries_the_identity(tmp_path, tiny_models):
    import pyarrow.parquet as pq

    out = tmp_path / "sweep.parquet"
    run_sweep(cfg(), out, progress=False, models=tiny_models)
    meta = json.loads(pq.read_schema(out).metadata[b"basam_lite"])
    assert meta["identity"] == json.loads(meta_path(out).read_text())["identity"]
    with pytest.raises(UserError, match="seed: table 0, this run 2"):
        run_sweep(cfg(seed=2), out, progress=False, models=tiny_models)


def test_main_job_rows_unchanged(tmp_path):
    """The first 24 rows of the main job (image 0 at 128 px: both checkpoints, every variant,
    both prompts) are the committed table's rows 0-23, identity or not."""
    job = replace(SweepConfig(), resolutions=(128,), limit=1)
    df = run_sweep(job, tmp_path / "main.csv", progress=False)
    committed = read_table(ROOT / "results" / "sweep.csv")
    assert len(df) == 2 * len(job.variants) * 2 and list(df.columns) == list(COLUMNS)
    # The committed table's rows for image 0 at 128 px, on its own columns (a table written
    # before a variant or a column was added holds fewer).
    keys = ["model", "image", "resolution", "variant", "prompt"]
    committed = committed.merge(df[keys], on=keys).sort_values(keys)
    shared = [c for c in committed.columns if c not in (*TIMING, "row")]
    df = df[df["variant"].isin(set(committed["variant"]))].sort_values(keys)
    assert len(committed) >= 24
    pd.testing.assert_frame_equal(
        df[shared].reset_index(drop=True),
        committed[shared].reset_index(drop=True),
        check_exact=False,
        # float rounding only: the committed table was computed with two torch threads, the
        # test runs with the machine's default (up to 1.6e-6 relative seen on mean_f)
        rtol=1e-5,
        atol=1e-7,
    )


# ---------------------------------------------------------------- merging shards


def test_merge_refuses_missing_unrelated_and_incomplete_shards(tmp_path, tiny_models, whole_table):
    parts = [tmp_path / f"part{k}.csv" for k in range(2)]
    for k, part in enumerate(parts):
        run_sweep(cfg(shard=(k, 2)), part, progress=False, models=tiny_models)
    out = tmp_path / "all.csv"
    with pytest.raises(UserError, match=r"missing shard\(s\) 1/2.*--allow-partial"):
        merge_shards(parts[:1], out)
    copy = tmp_path / "copy.csv"
    shutil.copy(parts[0], copy)
    shutil.copy(meta_path(parts[0]), meta_path(copy))
    with pytest.raises(UserError, match=r"shard 0/2 given twice"):
        merge_shards([parts[0], copy, parts[1]], out)
    unrelated = tmp_path / "seed1.csv"
    run_sweep(cfg(shard=(1, 2), seed=1), unrelated, progress=False, models=tiny_models)
    with pytest.raises(UserError, match="not a shard of the same run.*seed: table 0, this run 1"):
        merge_shards([parts[0], unrelated], out)
    incomplete = tmp_path / "half.csv"
    run_sweep(
        cfg(shard=(1, 2), resolutions=(128, 256)),
        incomplete,
        progress=False,
        models=tiny_models,
        stop_after=1,
    )
    wide0 = tmp_path / "wide0.csv"
    run_sweep(cfg(shard=(0, 2), resolutions=(128, 256)), wide0, progress=False, models=tiny_models)
    with pytest.raises(UserError, match=r"incomplete shard\(s\) .*half\.csv"):
        merge_shards([wide0, incomplete], out)
    assert not out.exists() and not meta_path(out).exists()

    partial = merge_shards([wide0, incomplete], out, allow_partial=True)
    meta = json.loads(meta_path(out).read_text())
    assert meta["complete"] is False and meta["partial"]["incomplete_shards"] == [str(incomplete)]
    assert len(partial) == len(read_table(wide0)) + 1

    merged = merge_shards(parts, out, overwrite=True)
    meta = json.loads(meta_path(out).read_text())
    assert meta["complete"] is True and meta["identity"]["scope"]["shard"] == [0, 1]
    same_rows(merged, whole_table)


# ---------------------------------------------------------------- outputs never destroyed


def test_out_that_is_not_a_sweep_table_is_refused_unchanged(tmp_path, tiny_models):
    png = tmp_path / "figure.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png)
    foreign = tmp_path / "mine.csv"
    foreign.write_text("name,score\nalpha,1\nbeta,2")  # no final newline, as users write
    folder = tmp_path / "folder"
    folder.mkdir()
    older = tmp_path / "older.csv"
    older.write_text(",".join(c for c in COLUMNS if c != "reason") + "\n")
    meta_path(older).write_text(json.dumps({"identity": {}}))
    cases = [
        (png, "a sweep table is a .csv or .parquet file, not .png"),
        (tmp_path / "table.txt", "not .txt"),
        (folder, "is a folder"),
        (foreign, "holds a table with other columns .name, score., not a sweep table"),
        (older, "an older sweep column layout"),
    ]
    for out, message in cases:
        before = snapshot(*table_files(out))
        with pytest.raises(UserError, match=message):
            run_sweep(cfg(), out, progress=False, models=tiny_models)
        assert snapshot(*table_files(out)) == before, out
        assert not lock_path(out).exists()
    # --overwrite replaces a sweep table of another run, never another program's file.
    for out in (foreign, png, folder):
        before = snapshot(*table_files(out))
        with pytest.raises(UserError):
            run_sweep(cfg(), out, progress=False, models=tiny_models, overwrite=True)
        assert snapshot(*table_files(out)) == before, out
    # The same refusals on the command line, with the plot never touching the table.
    before = snapshot(foreign)
    assert (
        main(["sweep", "--model", "tiny", "--dataset", "synthetic:1", "--out", str(foreign)]) == 2
    )
    assert snapshot(foreign) == before


# ---------------------------------------------------------------- one writer at a time


SWEEP = (*sweep_words("128", "256"), "--threads", "1", "--no-plot")


def test_a_second_writer_is_refused_while_the_lock_is_held(tmp_path):
    out = tmp_path / "sweep.csv"
    with FileLock(str(lock_path(out)), timeout=0):
        r = cli(*SWEEP, "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"error: another run is writing {out} (it holds {lock_path(out)}): wait for it to "
        "finish, or write elsewhere with --out"
    )
    assert not out.exists()


def test_two_concurrent_writers_leave_one_correct_table(tmp_path, tiny_models):
    out = tmp_path / "sweep.csv"
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "basam_lite", *SWEEP, "--seed", str(seed), "--out", str(out)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    winners = [seed for seed, (rc, _) in zip((0, 1), results, strict=True) if rc == 0]
    losers = [err for rc, err in results if rc != 0]
    assert len(winners) == 1, results
    (err,) = losers
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "another run is writing" in err or "holds a table of another run" in err
    expected = run_sweep(
        cfg(resolutions=(128, 256), seed=winners[0]),
        tmp_path / "alone.csv",
        progress=False,
        models=tiny_models,
    )
    same_rows(read_table(out), expected)


# ---------------------------------------------------------------- bad images


def bad_folder(root: Path) -> Path:
    """Three image/mask pairs: a good one, a truncated JPEG, an empty mask."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a_good", "b_truncated", "c_empty"):
        image = rng.integers(0, 255, size=(96, 128, 3), dtype=np.uint8)
        mask = np.zeros((96, 128), dtype=np.uint8)
        if name != "c_empty":
            mask[20:70, 30:90] = 255
        Image.fromarray(image).save(root / f"{name}.jpg", quality=95)
        Image.fromarray(mask).save(root / f"{name}.png")
    data = (root / "b_truncated.jpg").read_bytes()
    (root / "b_truncated.jpg").write_bytes(data[: len(data) // 2])  # header intact, data cut
    return root


def test_bad_images_under_stop_and_skip(tmp_path, tiny_models):
    folder = bad_folder(tmp_path / "data")
    spec = f"folder:{folder}"
    out = tmp_path / "stop.csv"
    # "stop": every bad file is named at once, as the dataset opens, before anything is written
    listed = r"(?s)2 problem.*b_truncated\.jpg.*c_empty.*--on-error skip"
    with pytest.raises(UserError, match=listed):
        run_sweep(cfg(dataset=spec), out, progress=False, models=tiny_models)
    assert not out.exists() and not meta_path(out).exists()

    # "skip": the bad files are left out and listed with their reasons in the meta
    skip = run_sweep(cfg(dataset=spec), out, progress=False, models=tiny_models, on_error="skip")
    assert set(skip["image"]) == {"a_good"} and (skip["status"] == "ok").all()
    meta = json.loads(meta_path(out).read_text())
    reasons = {Path(f["file"]).stem: f["reason"] for f in meta["skipped_files"]}
    assert set(reasons) == {"b_truncated", "c_empty"}
    assert "truncated" in reasons["b_truncated"] and "empty" in reasons["c_empty"]
    assert meta["complete"] is True


def test_empty_work_is_an_error(tmp_path, tiny_models):
    for change, message in [
        (dict(dataset="synthetic:0"), r"bad spec 'synthetic:0': it selects 0 scenes"),
        (dict(dataset="synthetic:1", shard=(1, 2)), "shard 1/2 selects none"),
    ]:
        out = tmp_path / "empty.csv"
        with pytest.raises(UserError, match=message):
            run_sweep(cfg(**change), out, progress=False, models=tiny_models)
        assert not out.exists() and not meta_path(out).exists()
    with pytest.raises(UserError, match="limit 0 selects no image"):
        cfg(limit=0)


# ---------------------------------------------------------------- arguments and messages


def test_argument_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    """Each bad argument through the command line's own ``main`` (one process start costs
    seconds: the parser imports every command); the exit status and the traceback under
    ``--debug`` once each in a fresh process."""
    for key in [k for k in os.environ if k.startswith("SLURM_") or k == "RANK"]:
        monkeypatch.delenv(key)  # --shard auto must find no scheduler
    bad = [
        (
            ["--resolutions", "100"],
            "error: resolution 100 is not a positive multiple of tiny's "
            "patch size 16: use 96 or 112",
        ),
        (["--metric", "iuo"], "error: --metric 'iuo' is not a column of the sweep table"),
        (["--checkpoint", "sam.pth"], "error: --checkpoint sam.pth was given but no model"),
        (["--dataset", "dis5k:/data/DIS5K:TE2"], "error: bad spec 'dis5k:/data/DIS5K:TE2'"),
        (["--limit", "0"], "error: argument --limit: must be 1 or more, got 0"),
        (["--shard", "auto"], "error: --shard auto found no scheduler"),
        (["--out", str(tmp_path / "t.png")], "error: --out"),
    ]
    if not __import__("torch").cuda.is_available():
        bad.append((["--device", "cuda"], "error: --device cuda: this torch"))
    for args, message in bad:
        code = main(["sweep", "--model", "tiny", "--out", str(tmp_path / "x.csv"), *args])
        out, err = capsys.readouterr()
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1, (args, err)
        assert err.startswith(message), (args, err)
        assert "Traceback" not in err and out == ""
    args, message = bad[0]
    r = cli("sweep", "--model", "tiny", "--out", str(tmp_path / "x.csv"), *args)
    assert r.returncode == 2 and r.stderr.startswith(message), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
    assert not (tmp_path / "x.csv").exists()
    # --debug shows the traceback of the same error.
    r = cli("--debug", "sweep", "--model", "tiny", "--metric", "iuo")
    assert r.returncode == 1 and "Traceback" in r.stderr and "UserError" in r.stderr


def test_unexpected_errors_keep_their_traceback(monkeypatch, tmp_path):
    import basam_lite.sweep as sweep

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(sweep, "run_sweep", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["sweep", "--model", "tiny", "--out", str(tmp_path / "x.csv")])


def test_help_states_the_real_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at hyphens ("tiny-" / "basam")
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    d = SweepConfig()
    assert f"default: {' '.join(map(str, d.resolutions))}" in text
    assert f"default: {d.dataset}" in text and f"default: {' '.join(d.models)}" in text
    assert "128-512" not in text and "8 scenes" not in text


# ---------------------------------------------------------------- --shard auto


def test_shard_auto_reads_slurm_and_torchrun():
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}
    assert shard_from_env(slurm) == (3, 8)
    assert shard_from_env({**slurm, "SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1"}) == (
        3,
        8,
    )
    stepped = {
        "SLURM_ARRAY_TASK_ID": "6",
        "SLURM_ARRAY_TASK_COUNT": "4",
        "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_ARRAY_TASK_STEP": "2",
    }
    assert shard_from_env(stepped) == (3, 4)
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == (1, 2)
    with pytest.raises(UserError, match="no scheduler"):
        shard_from_env({})
    assert shard_device("cuda", {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == "cuda:1"
    assert shard_device("cuda", {"SLURM_ARRAY_TASK_ID": "5", "LOCAL_RANK": "0"}) == "cuda"
    assert shard_device("cpu", {"LOCAL_RANK": "1"}) == "cpu"
    with pytest.raises(UserError, match="not one of 4 evenly spaced tasks"):
        shard_from_env({**stepped, "SLURM_ARRAY_TASK_ID": "5"})


def test_shard_auto_runs_the_tasks_shard_and_merges(tmp_path, monkeypatch, whole_table):
    pattern = str(tmp_path / "shard-{k}-of-{n}.csv")
    base = [*sweep_words("128"), "--no-plot", "--shard", "auto"]
    for k in range(2):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(k))
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
        assert main([*base, "--out", pattern]) == 0
    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(var)
    parts = sorted(tmp_path.glob("shard-*-of-2.csv"))
    assert [p.name for p in parts] == ["shard-0-of-2.csv", "shard-1-of-2.csv"]
    assert json.loads(meta_path(parts[1]).read_text())["identity"]["scope"]["shard"] == [1, 2]
    # torchrun's variables select the same shard.
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([*base, "--out", pattern]) == 0  # shard 1/2 is complete: a resume, no change
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    out = tmp_path / "all.csv"
    assert main(["sweep", "--merge", *map(str, parts), "--out", str(out), "--no-plot"]) == 0
    same_rows(read_table(out), whole_table)
