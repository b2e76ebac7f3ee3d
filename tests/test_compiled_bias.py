"""The compiled one-pass bias build (``basam_lite.compiled_bias``, opt-in) writes what the eager
two-pass build writes: the chunk's bias rows element for element, and the attention against the
explicit softmax written out (several chunks, batch 1 and 2, each metric, a distance unit); it
is off unless asked for, refuses a bad ``BASAM_COMPILED_BIAS`` in one line, stays out of
autograd, and falls back to the eager build, warning once, when compiling fails."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from basam_lite import attention as attn_lib
from basam_lite import compiled_bias
from basam_lite.attention import AttentionBias, attend
from basam_lite.errors import UserError
from basam_lite.masks import pairwise_distance


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch):
    monkeypatch.delenv(compiled_bias.ENV, raising=False)
    compiled_bias.forget_failure()
    yield
    compiled_bias.set_compiled_bias(None)
    compiled_bias.forget_failure()


@pytest.fixture
def calls(monkeypatch):
    """How many times the compiled kernel ran."""
    seen: list[int] = []
    real = compiled_bias._compiled

    def counting():
        kernel = real()

        def run(*tensors):
            seen.append(1)
            kernel(*tensors)

        return run

    monkeypatch.setattr(compiled_bias, "_compiled", counting)
    return seen


def inputs(b: int, grid: tuple[int, int], h: int = 3, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rows, cols = grid
    n = rows * cols
    q, k, v = (torch.randn(b, h, n, d, generator=g) for _ in range(3))
    rel_h = torch.randn(b, h, n, rows, generator=g)
    rel_w = torch.randn(b, h, n, cols, generator=g)
    return q, k, v, rel_h, rel_w


def explicit(q, k, v, scale, rel_h, rel_w, grid, slopes, metric, unit):
    """softmax(scale q.k + R^h_i[row_j] + R^w_i[col_j] - unit m_h dist(p_i, p_j)) v, written
    out."""
    rows, cols = grid
    n = rows * cols
    r = torch.arange(n) // cols
    c = torch.arange(n) % cols
    pos = torch.stack([r, c], -1).float()
    dist = pairwise_distance(pos, pos, metric, cols=cols)
    logits = (
        scale * q @ k.transpose(-2, -1)
        + rel_h[..., r]
        + rel_w[..., c]
        - unit * slopes[None, :, None, None] * dist
    )
    return logits.softmax(-1) @ v


@pytest.mark.parametrize("b", [1, 2])
@pytest.mark.parametrize(
    "metric,unit", [("euclidean", 1.0), ("manhattan", 0.5), ("chebyshev", 2.0)]
)
def test_compiled_attention_equals_the_explicit_softmax(b, metric, unit, calls, monkeypatch):
    grid = (6, 5)
    q, k, v, rel_h, rel_w = inputs(b, grid)
    slopes = torch.tensor([0.5, 0.25, 0.125])
    # two grid rows per chunk: chunks (0, 2), (2, 4), (4, 6)
    monkeypatch.setattr(attn_lib, "CHUNK_BIAS_BYTES", b * 3 * 2 * 5 * 30 * 4)
    bias = AttentionBias(grid, rel_h, rel_w, slopes, metric, distance_scale=unit)
    with torch.no_grad(), compiled_bias.use_compiled_bias(True):
        got = attend(q, k, v, 0.3, bias, "chunked")
    assert len(calls) == 3
    want = explicit(q, k, v, 0.3, rel_h, rel_w, grid, slopes, metric, unit)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("first,last", [(0, 6), (1, 4), (5, 6)])
def test_compiled_rows_equal_the_eager_rows(first, last, calls):
    """The chunk's bias buffer itself, compiled against eager (queries in reversed row order)."""
    grid = (6, 5)
    _, _, _, rel_h, rel_w = inputs(2, grid)
    bias = AttentionBias(grid, rel_h, rel_w, torch.tensor([0.5, 0.25, 0.125]), "euclidean")
    size = 2 * 3 * (last - first) * 5 * 30
    eager_out = torch.full((size,), float("nan")).view(2, 3, (last - first) * 5, 30)
    fused_out = torch.full((size,), float("nan")).view(2, 3, (last - first) * 5, 30)
    with torch.no_grad():
        eager = attn_lib._reversed_query_bias(bias, first, last, torch.float32, eager_out)
        with compiled_bias.use_compiled_bias(True):
            fused = attn_lib._reversed_query_bias(bias, first, last, torch.float32, fused_out)
    assert len(calls) == 1
    assert fused.data_ptr() == fused_out.data_ptr()
    torch.testing.assert_close(fused, eager, rtol=0, atol=1e-6)
    assert not torch.isnan(fused).any()


def test_off_unless_asked(monkeypatch, calls):
    assert not compiled_bias.enabled() and compiled_bias.status() == "off"
    grid = (6, 5)
    q, k, v, rel_h, rel_w = inputs(1, grid)
    bias = AttentionBias(grid, rel_h, rel_w, torch.tensor([0.5, 0.25, 0.125]))
    with torch.no_grad():
        attend(q, k, v, 0.3, bias, "chunked")
    assert calls == []
    monkeypatch.setenv(compiled_bias.ENV, "1")
    assert compiled_bias.enabled() and compiled_bias.status() == "on"
    with compiled_bias.use_compiled_bias(False):
        assert not compiled_bias.enabled()
    assert compiled_bias.enabled()
    compiled_bias.set_compiled_bias(False)
    assert not compiled_bias.enabled()


def test_a_bad_environment_value_is_one_line(monkeypatch):
    monkeypatch.setenv(compiled_bias.ENV, "maybe")
    with pytest.raises(UserError) as err:
        compiled_bias.enabled()
    msg = str(err.value)
    assert "\n" not in msg and compiled_bias.ENV in msg and "'maybe'" in msg


def test_autograd_keeps_the_eager_build(calls):
    """Under autograd the chunked path builds its bias out of place; the compiled build never
    runs, and the gradients equal the explicit ones."""
    grid = (6, 5)
    q, k, v, rel_h, rel_w = inputs(1, grid)
    q.requires_grad_(True)
    slopes = torch.tensor([0.5, 0.25, 0.125])
    with compiled_bias.use_compiled_bias(True):
        got = attend(q, k, v, 0.3, AttentionBias(grid, rel_h, rel_w, slopes), "chunked")
        assert not compiled_bias.write_rows(*(torch.zeros(1, requires_grad=True),) * 5)
    (grad,) = torch.autograd.grad(got.sum(), q)
    q2 = q.detach().requires_grad_(True)
    want = explicit(q2, k, v, 0.3, rel_h, rel_w, grid, slopes, "euclidean", 1.0)
    (grad2,) = torch.autograd.grad(want.sum(), q2)
    torch.testing.assert_close(grad, grad2)
    assert calls == []


def _recompile_limit() -> Exception:
    from torch._dynamo.exc import FailOnRecompileLimitHit

    return FailOnRecompileLimitHit("Hard failure due to fullgraph=True")


@pytest.mark.parametrize(
    "error,warned,status",
    [
        (
            lambda: RuntimeError("no working C++ compiler found\nlong details"),
            "compiled bias build unavailable",
            "unavailable: RuntimeError: no working C++ compiler found",
        ),
        (_recompile_limit, "recompile limit", "on"),
    ],
    ids=["compile-fails", "recompile-limit"],
)
def test_a_compile_error_warns_once_and_the_eager_build_runs(error, warned, status, monkeypatch):
    """No compiler (or any Inductor error): eager from then on. Dynamo's recompile limit (an
    exception under ``fullgraph``): that call eager, the build still on for the kinds it has."""

    def failing():
        def kernel(*_):
            raise error()

        return kernel

    monkeypatch.setattr(compiled_bias, "_compiled", failing)
    monkeypatch.setattr(compiled_bias, "_warned_limit", False)
    grid = (6, 5)
    q, k, v, rel_h, rel_w = inputs(2, grid)
    bias = AttentionBias(grid, rel_h, rel_w, torch.tensor([0.5, 0.25, 0.125]))
    with torch.no_grad():
        want = attend(q, k, v, 0.3, bias, "chunked")
        with compiled_bias.use_compiled_bias(True):
            with pytest.warns(RuntimeWarning, match=warned):
                got = attend(q, k, v, 0.3, bias, "chunked")
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                again = attend(q, k, v, 0.3, bias, "chunked")
            assert compiled_bias.status() == status
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(again, want, rtol=0, atol=0)


def test_the_benchmark_times_the_compiled_case_with_the_build_on():
    from basam_lite import bench

    def probe(_x):
        return compiled_bias.enabled()

    x = torch.zeros(1)
    assert bench.block_call("paper_compiled", probe, x)() is True
    assert bench.block_call("basam_paper", probe, x)() is False
    assert not compiled_bias.enabled()
    assert bench.COMPILE_WARM_GRID**2 > attn_lib.DENSE_MAX_TOKENS  # warms the chunked path
    rows = [
        bench.Row("block", case, "", 64, seconds=t)
        for case, t in (
            ("basam_paper", 1.10),
            ("paper_compiled", 1.02),
            ("basam_vanilla", 1.0),
            ("floor", 0.5),
        )
    ]
    got = {
        r["ratio"]: (round(r["value"], 3), r["verdict"]) for r in bench.ratios(rows) if r["value"]
    }
    assert got["(b)/(b0)"] == (1.1, "FAIL (by 7%)")
    assert got["(b+)/(b0)"] == (1.02, "PASS")
    assert got["(b+)/(c)"] == (2.04, "FAIL (by 94%)")


def test_release_workspace_drops_the_kept_bias_buffer():
    first = attn_lib._workspace(1000, torch.float32, torch.device("cpu"))
    assert attn_lib._workspace(500, torch.float32, torch.device("cpu")).data_ptr() == (
        first.data_ptr()
    )
    assert attn_lib.release_workspace() >= 4000
    assert attn_lib.release_workspace() == 0


def test_the_cli_refuses_a_bad_value_before_any_work(tmp_path):
    out = tmp_path / "never.csv"
    env = {**os.environ, compiled_bias.ENV: "fast"}
    proc = subprocess.run(
        [sys.executable, "-m", "basam_lite", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and compiled_bias.ENV in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_inside_an_enclosing_compile_the_eager_build_is_traced():
    tensors = [torch.zeros(2, 3)] * 3 + [torch.zeros(1), torch.zeros(2, 3)]
    with compiled_bias.use_compiled_bias(True):
        traced = torch.compile(compiled_bias.write_rows, backend="eager", fullgraph=True)
        assert traced(*tensors) is False


@pytest.mark.parametrize("grid", [(6, 5), (5, 6), (4, 4)])
def test_on_demand_rel_rows_and_other_grids(grid, calls, monkeypatch):
    """The rows SAM 1 and HF hand over per chunk at large sizes (``rel_rows``), on grids of
    other shapes in the same process (the kernel is shape-generic)."""
    q, k, v, rel_h, rel_w = inputs(2, grid)
    rows, cols = grid
    slopes = torch.tensor([0.5, 0.25, 0.125])
    monkeypatch.setattr(attn_lib, "CHUNK_BIAS_BYTES", 2 * 3 * 2 * cols * rows * cols * 4)

    def rel_rows(first: int, last: int):
        return rel_h[:, :, first * cols : last * cols], rel_w[:, :, first * cols : last * cols]

    bias = AttentionBias(grid, slopes=slopes, rel_rows=rel_rows)
    with torch.no_grad(), compiled_bias.use_compiled_bias(True):
        got = attend(q, k, v, 0.3, bias, "chunked")
    assert len(calls) == -(-rows // 2)
    want = explicit(q, k, v, 0.3, rel_h, rel_w, grid, slopes, "euclidean", 1.0)
    torch.testing.assert_close(got, want)


def test_bf16_rows_round_once():
    """In bf16 the compiled build rounds its sum once, the eager one after each pass: both
    within bf16's resolution of the fp32 rows, the compiled one no further."""
    grid = (6, 5)
    _, _, _, rel_h, rel_w = inputs(1, grid)
    bias = AttentionBias(grid, rel_h, rel_w, torch.tensor([0.5, 0.25, 0.125]), "euclidean")

    def rows(dtype: torch.dtype, out: bool) -> torch.Tensor:
        buf = torch.empty(3 * 30 * 30, dtype=dtype).view(1, 3, 30, 30) if out else None
        return attn_lib._reversed_query_bias(bias, 0, 6, dtype, buf).float()

    with torch.no_grad():
        exact = rows(torch.float32, False)
        eager = rows(torch.bfloat16, True)
        with compiled_bias.use_compiled_bias(True):
            fused = rows(torch.bfloat16, True)
    assert (fused - exact).abs().max() <= (eager - exact).abs().max() + 1e-6
    torch.testing.assert_close(fused, exact, rtol=1e-2, atol=2e-2)
