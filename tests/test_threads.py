"""The thread policy (basam_lite.threads): the formula, the user's override, and that the main job
(``python -m basam_lite sweep``) and the notebooks' model helpers (``course_model``,
``sam_from_env``) run under it. Nothing here times anything; scripts/measure_threads.py does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import basam_lite as bl
from basam_lite import sweep, threads
from basam_lite.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
HELPERS = ("bl.course_model(", "bl.sam_from_env(")


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch: pytest.MonkeyPatch):
    for name in ("BASAM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def machine(monkeypatch: pytest.MonkeyPatch, cores: int, busy: int) -> None:
    """Pretend this process may run on ``cores`` CPUs with ``busy`` other runnable processes."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(threads, "runnable_processes", lambda *a, **k: busy)


@pytest.mark.parametrize(
    ("cores", "busy", "expected"),
    [
        (1, 0, 1),  # one core: one thread
        (1, 3, 1),
        (2, 0, 1),  # two cores, idle: one left to the rest of the machine
        (2, 1, 1),  # ... and with one competing process: the same thread count
        (2, 5, 1),  # never fewer than one
        (4, 0, 3),
        (8, 3, 5),  # cores the others are not on
        (16, 0, 15),
    ],
)
def test_quiet_threads_is_written_out_formula(cores: int, busy: int, expected: int) -> None:
    assert threads.quiet_threads(cores, busy) == expected
    assert expected == max(1, min(cores - 1, cores - busy))  # the docstring's formula


def test_two_cores_use_one_thread_idle_and_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measured case: on 2 cores the count does not depend on the load, so a run's time with
    one competing process is compared with an idle run of the same thread count."""
    for busy in (0, 1, 2):
        machine(monkeypatch, 2, busy)
        assert threads.use_quiet_threads() == 1 == torch.get_num_threads()


def test_the_user_choice_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch, 8, 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.use_quiet_threads() == 2 == torch.get_num_threads()
    monkeypatch.setenv("BASAM_THREADS", "3")  # the project's own variable first
    assert threads.use_quiet_threads() == 3 == torch.get_num_threads()
    monkeypatch.setenv("BASAM_THREADS", "zero")  # not a count: the policy decides
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.use_quiet_threads() == 7
    monkeypatch.delenv("BASAM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert threads.use_quiet_threads() == 7


def test_runnable_processes_reads_loadavg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "loadavg"
    f.write_text("0.50 0.40 0.30 3/412 9999\n")
    monkeypatch.setattr(threads, "LOADAVG", f)
    assert threads.runnable_processes(samples=2, interval_s=0) == 2  # minus the reader
    monkeypatch.setattr(threads, "LOADAVG", tmp_path / "absent")
    assert threads.runnable_processes() is None
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert threads.quiet_threads() == 2  # unknown load: all cores but the spare one


@pytest.mark.parametrize(("cores", "expected"), [(2, 1), (4, 3)])
def test_notebook_helpers_set_the_policy(
    monkeypatch: pytest.MonkeyPatch, cores: int, expected: int
) -> None:
    machine(monkeypatch, cores, 0)
    torch.set_num_threads(cores)
    bl.course_model("tiny")
    assert torch.get_num_threads() == expected
    torch.set_num_threads(cores)
    bl.sam_from_env("tiny")
    assert torch.get_num_threads() == expected


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_builds_its_model_through_a_helper_first(path: Path) -> None:
    """The imports cell (the first code cell after Colab's) calls a helper that sets the policy,
    and no notebook sets torch's thread count itself."""
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"]]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    first = next(s for s in code if "colab" not in s.lower())
    assert any(h in first for h in HELPERS), f"{path.name}: first cell {first[:120]!r}"
    assert not any("set_num_threads" in s or "OMP_NUM_THREADS" in s for s in code), path.name


class Stop(Exception):
    pass


@pytest.mark.parametrize(
    ("extra", "cores", "expected"), [([], 2, 1), ([], 4, 3), (["--threads", "2"], 4, 2)]
)
def test_the_main_job_runs_under_the_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: list[str], cores: int, expected: int
) -> None:
    """The README's main job (``sweep --out runs/sweep.csv``, both axes): the thread count in
    force when its first table is computed."""
    machine(monkeypatch, cores, 0)
    seen: list[int] = []

    def record(*args: object, **kwargs: object) -> None:
        seen.append(torch.get_num_threads())
        raise Stop

    monkeypatch.setattr(sweep, "run_sweep", record)
    parser, _ = build_parser()
    args = parser.parse_args(["sweep", "--out", str(tmp_path / "sweep.csv"), *extra])
    torch.set_num_threads(cores)
    with pytest.raises(Stop):
        sweep.run(args)
    assert seen == [expected]


def test_show_sam_layout_draws_every_block_and_colours_the_global_ones() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from basam_lite import analysis, viz

    table = analysis.architecture_table(["vit_b", "tiny"])
    fig, axes = plt.subplots(2, 1)
    viz.show_sam_layout(table, axes, factors=(1, 2))
    squares = [p for p in axes[1].patches if isinstance(p, Rectangle)]
    assert len(squares) == 12 + 6
    red = [p for p in squares if p.get_facecolor()[:3] != (1.0, 1.0, 1.0)]
    assert len(red) == 4 + 2  # ViT-B's blocks 2, 5, 8, 11 and the tiny model's 2, 5
    text = " ".join(t.get_text() for t in axes[1].texts)
    assert "4096 at 1024 px, 16384 at 2048 px" in text and "256 at 256 px, 1024 at 512 px" in text
    plt.close(fig)
