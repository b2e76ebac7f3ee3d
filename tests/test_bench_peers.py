"""The peers section of ``bench``: timm and Hugging Face hold the same weights as this project's
encoder at a size and compute the same function; every column is there; a peer that cannot run
(package missing, out of memory) is a row that says why; the CUDA clock's code path."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import get_rel_pos

from basam_lite import bench_peers as bp
from basam_lite.encoders.peers import (
    build_hf_encoder,
    build_timm_encoder,
    hf_refusal,
    resize_rel_pos,
    sized_encoder_state,
)
from basam_lite.models import build_sam
from basam_lite.resolution import set_input_size

pytest.importorskip("timm")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny():
    return build_sam("tiny")


@pytest.mark.parametrize("side", [256, 384])
def test_timm_and_hf_compute_sams_encoder_with_the_same_weights(tiny, side):
    """Reference: the Sam's own forward at ``side`` (segment_anything's encoder at 256 px, the
    base size; this project's SizedEncoder with SAM's own attention at 384)."""
    set_input_size(tiny, side)
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = tiny.image_encoder(x)
        got_timm = build_timm_encoder(tiny, side)(x)
        got_hf = build_hf_encoder(tiny, side)(x)
    set_input_size(tiny, 256)
    assert got_timm.shape == got_hf.shape == want.shape == (1, 128, side // 16, side // 16)
    scale = want.abs().max()
    assert (got_timm - want).abs().max() / scale < bp.AGREE_TOL
    assert (got_hf - want).abs().max() / scale < bp.AGREE_TOL
    # Not vacuous: another seed's weights do not agree.
    other = build_sam("tiny")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
        set_input_size(other, side)
        far = build_timm_encoder(other, side)(x)
    assert (far - want).abs().max() / scale > 100 * bp.AGREE_TOL


def test_resized_rel_pos_table_is_what_sams_get_rel_pos_reads():
    table = torch.randn(31, 8, generator=torch.Generator().manual_seed(0))
    grid = 24
    resized = resize_rel_pos(table, 2 * grid - 1)
    # segment_anything: R[q, k] = resized[q - k + grid - 1]
    want = get_rel_pos(grid, grid, table)
    idx = torch.arange(grid)[:, None] - torch.arange(grid)[None, :] + grid - 1
    torch.testing.assert_close(resized[idx], want)
    assert resize_rel_pos(table, 31) is table
    # written out: linear interpolation with half-pixel centres
    expected = F.interpolate(table.T[None], size=47, mode="linear", align_corners=False)[0].T
    torch.testing.assert_close(resized, expected)


def test_sized_state_resizes_only_position_tensors(tiny):
    state = sized_encoder_state(tiny, 512)
    base = tiny.image_encoder.state_dict()
    assert state["image_encoder.pos_embed"].shape == (1, 32, 32, 192)
    assert state["image_encoder.blocks.2.attn.rel_pos_h"].shape[0] == 63  # global block
    assert (
        state["image_encoder.blocks.0.attn.rel_pos_h"].shape
        == base["blocks.0.attn.rel_pos_h"].shape
    )
    torch.testing.assert_close(
        state["image_encoder.blocks.0.mlp.lin1.weight"], base["blocks.0.mlp.lin1.weight"]
    )
    with pytest.raises(ValueError, match="multiple of the patch size"):
        sized_encoder_state(tiny, 500)


def test_hf_refuses_another_size_which_is_why_it_is_built_at_the_side(tiny):
    assert "doesn't match model" in hf_refusal(tiny, 384)
    assert hf_refusal(tiny, 256) is None


def test_sdpa_kernels_names_the_kernel_that_ran():
    q = torch.randn(1, 2, 16, 8)
    kernels, out = bp.sdpa_kernels(lambda: F.scaled_dot_product_attention(q, q, q))
    assert out.shape == q.shape
    assert len(kernels) == 1 and kernels[0].endswith("x1")
    assert any(name in kernels[0] for name in ("flash", "math", "efficient"))
    none, _ = bp.sdpa_kernels(lambda: (q @ q.transpose(-2, -1)).softmax(-1) @ q)
    assert none == []


class FakeCuda:
    """torch.cuda's timing and memory calls, on the CPU clock (the GPU code path, no GPU)."""

    def __init__(self):
        self.calls = []
        self.allocated = 5 * bp.MB
        self.peak = 9 * bp.MB

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self):
            import time

            self.t = time.perf_counter()

        def elapsed_time(self, other):
            return (other.t - self.t) * 1000.0  # ms, as CUDA events report

    def synchronize(self):
        self.calls.append("sync")

    def memory_allocated(self):
        return self.allocated

    def reset_peak_memory_stats(self):
        self.calls.append("reset")

    def max_memory_allocated(self):
        return self.peak


def test_cuda_clock_times_with_events_and_reads_the_allocator():
    import time

    fake = FakeCuda()
    clock = bp.CudaClock(fake)
    seconds, out = clock.time(lambda: time.sleep(0.05) or "y")
    assert out == "y" and 0.04 < seconds < 1.0
    assert fake.calls.count("sync") == 2
    clock.reset_peak()
    assert fake.calls[-1] == "reset"
    assert clock.current_bytes() == 5 * bp.MB and clock.peak_bytes() == 9 * bp.MB
    assert bp.CLOCKS["cuda"] is bp.CudaClock and clock.memory_kind == "peak allocated"


def test_cpu_clock_peak_is_reset_and_grows():
    clock = bp.CpuClock()
    clock.reset_peak()
    low = clock.peak_bytes()
    big = np.ones(64 * bp.MB // 8)  # 64 MB touched
    assert clock.peak_bytes() >= low + 48 * bp.MB
    del big


def test_bench_peers_command_every_column(tmp_path):
    out, report = tmp_path / "peers.csv", tmp_path / "peers.md"
    cmd = [sys.executable, "-m", "basam_lite", "bench", "--peers-only", "--peer-model", "tiny"]
    cmd += ["--peer-sizes", "256", "--peer-repeats", "2", "--threads", "1", "--peer-cap-gb", "4"]
    proc = subprocess.run(
        [*cmd, "--out", str(out), "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["case"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == set(bp.PEERS)
    for name, r in rows.items():
        assert r["status"] == "ok", r
        assert float(r["seconds"]) > 0 and len(r["runs"].split(";")) == 2
        assert float(r["peak_rss_mb"]) > 100 and float(r["forward_rss_mb"]) >= 0
        assert "attention" in r["path"], r["path"]  # the SDPA kernel that ran
        assert float(r["ratio"]) > 0
        diff = float(r["max_rel_diff"])
        if bp.PEERS[name].same_function:
            assert diff <= bp.AGREE_TOL, (name, diff)
        else:
            assert diff > 100 * bp.AGREE_TOL  # the paper preset changes the function
    assert float(rows["timm"]["ratio"]) == 1.0 and float(rows["timm"]["max_rel_diff"]) == 0.0
    text = report.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| px |"))
    for column in ("median s", "min-max s", "/ timm", "peak RSS MB", "SDPA kernel", "max rel."):
        assert column in header
    assert "reference" in text and "(agrees)" in text and "(differs by design)" in text


def test_missing_peer_is_a_skipped_row_with_its_reason(monkeypatch):
    real = bp.importlib.util.find_spec
    monkeypatch.setattr(
        bp.importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real(name)
    )
    results = bp.bench_peers(
        "tiny",
        (256,),
        ("timm", "hf_sdpa", "vanilla"),
        repeats=1,
        threads=1,
        cap_gb=4,
        log=lambda _: None,
    )
    by = {r.peer: r for r in results}
    assert by["timm"].status == "skipped"
    assert by["timm"].note == "skipped: package timm is not installed"
    assert by["timm"].median is None and by["hf_sdpa"].ratio is None  # nothing to divide by
    assert by["hf_sdpa"].status == by["vanilla"].status == "ok"
    assert by["hf_sdpa"].reference == "hf_sdpa" and by["vanilla"].agrees
    table = bp.markdown_table(results)
    assert "package timm is not installed" in table


def test_out_of_memory_under_the_cap_is_a_row_not_a_crash():
    """timm's dense rel-pos bias for the tiny model at 1024 px is 6 heads x 4096^2 floats
    (400 MB per global block): it cannot run under a 0.25 GB cap."""
    (result,) = bp.bench_peers(
        "tiny", (1024,), ("timm",), repeats=1, threads=1, cap_gb=0.25, log=lambda _: None
    )
    assert result.status == "failed"
    assert result.median is None
    assert "memory" in result.note.lower() or "signal" in result.note, result.note


def test_unknown_peer_or_device_is_refused():
    with pytest.raises(ValueError, match="unknown peers"):
        bp.bench_peers("tiny", (256,), ("nope",))
    with pytest.raises(ValueError, match="unknown device"):
        bp.bench_peers("tiny", (256,), ("timm",), device="tpu")
