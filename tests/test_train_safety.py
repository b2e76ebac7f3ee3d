"""Training runs that cannot hurt: no code from files, outputs away from the shipped checkpoints,
arguments refused before anything is written, atomic saves, and a recorded precision."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch

import basam_lite as bl
from basam_lite.__main__ import main as cli_main
from basam_lite.errors import UserError
from basam_lite.models import tiny_checkpoint_path
from basam_lite.train import TrainConfig, load_state, train


def main(argv: list[str]) -> int:
    """The CLI with ``--debug``, so a refusal surfaces as the UserError the library raised (the
    one-line ``error:`` and exit 2 of the plain CLI are tested in test_sweep_trust)."""
    return cli_main(["--debug", *argv])


TINY_RUN = ["--steps", "1", "--batch-size", "1", "--threads", "1", "--eval-n", "1"]


def tiny_config(**changes) -> TrainConfig:
    return TrainConfig(**{**dict(steps=2, batch_size=1, warmup=1, threads=1), **changes})


class Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",))


def crafted_files(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Two crafted pickles (torch's zip format and a bare pickle), each with its own marker."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    zipped, zip_marker = folder / "zipped.pt", folder / "zipped.ran"
    state = {"config": TrainConfig().describe(), "model": Payload(zip_marker), "step": 0}
    torch.save(state, zipped)
    files["torch zip"] = (zipped, zip_marker)
    bare, bare_marker = folder / "bare.pt", folder / "bare.ran"
    bare.write_bytes(pickle.dumps({"config": {}, "model": Payload(bare_marker)}))
    files["bare pickle"] = (bare, bare_marker)
    return files


def test_the_crafted_payload_is_live(tmp_path):
    # The control: plain unpickling of the bare file does run the payload.
    path, marker = crafted_files(tmp_path)["bare pickle"]
    pickle.loads(path.read_bytes())
    assert marker.read_text() == "payload ran"


@pytest.mark.parametrize("kind", ["torch zip", "bare pickle"])
def test_crafted_state_in_run_dir_is_refused_and_never_runs(tmp_path, kind):
    path, marker = crafted_files(tmp_path / "crafted")[kind]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "state.pt").write_bytes(path.read_bytes())
    before = (run_dir / "state.pt").read_bytes()
    found = r"pickled object \(exec\)" if kind == "torch zip" else "unsupported operand"
    with pytest.raises(UserError, match=f"{found}.*never unpickles objects.*older basam_lite"):
        train(tiny_config(), run_dir=run_dir, progress=False)
    with pytest.raises(UserError, match="not a training state that can be loaded safely"):
        main(["train", "--run-dir", str(run_dir), *TINY_RUN])
    assert not marker.exists()
    assert (run_dir / "state.pt").read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["state.pt"]


@pytest.mark.parametrize("kind", ["torch zip", "bare pickle"])
def test_crafted_warm_start_is_refused_and_never_runs(tmp_path, kind):
    path, marker = crafted_files(tmp_path / "crafted")[kind]
    with pytest.raises(UserError, match="not a training state that can be loaded safely"):
        train(tiny_config(preset="paper", preset_from=1), run_dir=None, warm_start=path)
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match="not a training state that can be loaded safely"):
        main(["train", "--run-dir", str(run_dir), "--warm-start", str(path), *TINY_RUN])
    assert not marker.exists()
    assert not run_dir.exists()


@pytest.mark.parametrize("kind", ["torch zip", "bare pickle"])
def test_crafted_checkpoint_and_init_are_refused_and_never_run(tmp_path, kind, monkeypatch):
    # --checkpoint (sweep, bench) and --init (train) both load through build_sam, which reads
    # the file before it builds any model.
    from basam_lite.encoders import sam1_build

    path, marker = crafted_files(tmp_path / "crafted")[kind]
    with pytest.raises(UserError, match="loaded safely.*never unpickles"):
        bl.build_sam("tiny", checkpoint=path)
    built = []
    monkeypatch.setitem(sam1_build.sam_model_registry, "vit_b", lambda **kw: built.append(kw))
    with pytest.raises(UserError, match="loaded safely"):
        bl.build_sam("vit_b", checkpoint=path)
    assert built == []
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match="loaded safely"):
        main(["train", "--init", str(path), "--run-dir", str(run_dir), *TINY_RUN])
    assert not marker.exists()


def test_no_unsafe_load_anywhere_in_the_package():
    root = Path(bl.__file__).parent
    sources = {p: p.read_text() for p in root.rglob("*.py")}
    assert not [p for p, s in sources.items() if "weights_only=False" in s]
    assert not [p for p, s in sources.items() if "import pickle" in s or "pickle.load" in s]


def bundled_files() -> dict[Path, tuple[bytes, int]]:
    folder = tiny_checkpoint_path("x").parent
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_train_by_default_never_touches_the_bundled_checkpoints(tmp_path, monkeypatch, capsys):
    before = bundled_files()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["basam_lite", "train", *TINY_RUN])  # the card's command
    assert main(["train", *TINY_RUN]) == 0
    out = tmp_path / "runs" / "train-tiny-vanilla" / "tiny-vanilla.pt"
    assert out.is_file() and out.with_suffix(".md").is_file()
    assert bundled_files() == before  # byte-identical, mtimes unchanged
    leftovers = [p for p in (tmp_path / "runs").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers
    printed = capsys.readouterr().out
    assert "precision: " in printed and "saved runs/train-tiny-vanilla/tiny-vanilla.pt" in printed
    card = out.with_suffix(".md").read_text()
    precision = load_state(out.parent / "state.pt")["config"]["precision"]
    assert precision in ("bf16", "fp32")
    assert f"Precision: {precision} (" in card
    assert f"python -m basam_lite train {' '.join(TINY_RUN)} --precision {precision}" in card


def test_write_bundled_is_the_only_way_into_data_checkpoints(tmp_path, monkeypatch):
    before = bundled_files()
    monkeypatch.chdir(tmp_path)
    bundled = tiny_checkpoint_path("tiny-vanilla")
    with pytest.raises(UserError, match="--write-bundled"):
        main(["train", "--out", str(bundled), *TINY_RUN])
    with pytest.raises(UserError, match="drop --out"):
        main(["train", "--write-bundled", "--out", "x.pt", *TINY_RUN])
    assert bundled_files() == before
    assert not (tmp_path / "runs").exists()
    # With the flag (pointed at a copy of the data folder) it writes NAME.pt and its card there.
    monkeypatch.setenv("BASAM_DATA_DIR", str(tmp_path / "data"))
    argv = ["train", "--write-bundled", "--name", "tiny-x", *TINY_RUN]
    monkeypatch.setattr(sys, "argv", ["basam_lite", *argv])
    assert main(["train", "--write-bundled", "--name", "tiny-x", *TINY_RUN]) == 0
    assert (tmp_path / "data" / "checkpoints" / "tiny-x.pt").is_file()
    assert (tmp_path / "data" / "checkpoints" / "tiny-x.md").is_file()
    card = (tmp_path / "data" / "checkpoints" / "tiny-x.md").read_text()
    assert "--write-bundled" not in card  # where a file goes does not change what it holds
    monkeypatch.delenv("BASAM_DATA_DIR")
    assert bundled_files() == before


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--steps", "0", "--steps must be a positive integer, got 0"),
        ("--batch-size", "0", "--batch-size must be a positive integer, got 0"),
        ("--save-every", "0", "--save-every must be a positive integer, got 0"),
        ("--steps", "-3", "--steps must be a positive integer, got -3"),
        ("--eval-n", "0", "--eval-n must be a positive integer, got 0"),
        ("--out", "model.png", "give a .pt file path"),
    ],
)
def test_bad_counts_and_outputs_are_refused_before_anything_is_written(
    tmp_path, monkeypatch, flag, value, message
):
    monkeypatch.chdir(tmp_path)
    args = [a for a in TINY_RUN]
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(UserError, match=message):
        main(["train", *args])
    assert list(tmp_path.iterdir()) == []


def test_python_api_refuses_counts_that_are_not_positive():
    for field in ("steps", "batch_size", "masks_per_image", "threads"):
        with pytest.raises(UserError, match=f"TrainConfig.{field} must be a positive integer"):
            TrainConfig(**{field: 0})
    with pytest.raises(UserError, match="save_every must be a positive integer, got 0"):
        train(tiny_config(), save_every=0)


def test_a_preset_that_adds_keys_is_refused_before_training(tmp_path, monkeypatch):
    # The official preset adds a learnable rel-pos coefficient per block: a plain tiny SAM
    # cannot load it, so the run is refused before its first step, not after.
    monkeypatch.chdir(tmp_path)
    before = bundled_files()
    with pytest.raises(UserError, match="adds parameters a plain tiny SAM lacks"):
        main(["train", "--preset", "official", "--write-bundled", *TINY_RUN])
    with pytest.raises(UserError, match="adds parameters"):
        main(["train", "--preset", "official", *TINY_RUN])
    assert list(tmp_path.iterdir()) == []
    assert bundled_files() == before


def test_an_interrupted_save_keeps_the_previous_state(tmp_path, monkeypatch):
    cfg = tiny_config(steps=3)
    train(cfg, run_dir=tmp_path, progress=False, stop_after=1)
    before = (tmp_path / "state.pt").read_bytes()

    def dies_mid_write(obj, f, *args, **kwargs):  # save_state hands torch.save an open file
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(OSError, match="disk full"):
        train(cfg, run_dir=tmp_path, progress=False, stop_after=1, save_every=1)
    assert (tmp_path / "state.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
