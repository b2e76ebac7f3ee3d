"""The notebooks' thread count: only the cores no other process is running on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from basam_lite import threads


@pytest.mark.parametrize(
    ("cores", "busy", "expected"),
    [(2, 0, 2), (2, 1, 1), (2, 7, 1), (8, 3, 5), (1, 0, 1), (4, 4, 1)],
)
def test_quiet_threads_leaves_the_busy_cores_alone(cores: int, busy: int, expected: int) -> None:
    assert threads.quiet_threads(cores=cores, busy=busy) == expected


def test_runnable_processes_reads_loadavg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "loadavg"
    fake.write_text("0.50 0.40 0.30 3/120 4242\n")
    monkeypatch.setattr(threads, "LOADAVG", fake)
    assert threads.runnable_processes(samples=2, interval_s=0) == 2  # 3 running, one is the reader
    monkeypatch.setattr(threads, "LOADAVG", tmp_path / "missing")
    assert threads.runnable_processes() is None
    assert 1 <= threads.quiet_threads(cores=2) <= 2  # unknown load: all cores


def test_use_quiet_threads_honours_a_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("BASAM_THREADS", "1")
        assert threads.use_quiet_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("BASAM_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(threads, "quiet_threads", lambda: 1)
        assert threads.use_quiet_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "not a number")  # ignored, measured instead
        assert threads.use_quiet_threads() == 1
    finally:
        torch.set_num_threads(before)


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
