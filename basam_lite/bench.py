"""Attention speed and memory, side by side: ``python -m basam_lite bench``.

One global block with ViT-B dimensions (768 channels, 12 heads of 64, SAM's rel-pos tables, MLP
and norms) at each ``--grids`` token grid, in four versions with the same weights:

- (a) ``sam_block``: SAM's own block, unpatched (explicit softmax, rel-pos added to the N x N
  logits);
- (b) ``basam_paper``: the block with the paper preset (lambda and the euclidean 2-D ALiBi mask)
  through :mod:`basam_lite.attention`;
- (b+) ``paper_compiled``: (b) with its bias rows written in one compiled pass
  (:mod:`basam_lite.compiled_bias`, opt-in: ``BASAM_COMPILED_BIAS=1``; its first call, which
  compiles, is timed apart before the warm-up round and reported in the row's note);
- (b0) ``basam_vanilla``: the vanilla preset (SAM's attention) through the same path;
- (c) ``floor``: a bias-free, rel-pos-free block on the plain fused kernel, the floor no SAM
  block can beat.

Times are medians of warm runs, interleaved (every round runs every case, in a rotated order), so
load from other processes hits all cases alike. Attention-only rows (each path of
:mod:`basam_lite.attention`, SAM's rel-pos terms alone) show where the time goes. Peak memory is
measured for each block case in a fresh child process (the kernel's ``VmHWM``, reset before the
forward), so one case never pollutes another's. Then the time per image of the tiny models at
the sweep resolutions and of the ViT-B encoder at 1024 px, with and without BA-SAM, and
(``--encoder-2048``) the full ViT-B encoder with the paper preset at 2048 x 2048 in a child
process against the 2 GB target (and the largest side fitting 16 GB, from
:mod:`basam_lite.memory`'s estimate checked against that measured peak), beside what the
unpatched encoder would need there (``--unpatched-2048``, on by default): a child
capped with ``RLIMIT_AS`` tries it, and its peak is extrapolated from measured 512, 768 and
1024 px peaks (quadratic in the token count). Nothing here ever lets the unpatched encoder
exhaust the machine: SAM's own block is skipped when its logits would not fit in the available
memory, and the 2048 px attempt runs under the cap.

``--peers`` (or ``--peers-only``) adds :mod:`basam_lite.bench_peers`: the ViT-B encoder with the
same weights in timm, Hugging Face (SDPA) and the vanilla and paper presets at 1024, 2048 and
3072 px, each in its own worker process (``--device cuda`` on a GPU).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from . import attention as attn_lib
from . import bench_peers, compiled_bias
from .encoders.sam1 import decomposed_rel_pos
from .encoders.sam1_build import global_block_encoder
from .encoders.specs import model_spec
from .errors import UserError
from .models import build_sam, tiny_checkpoint_path
from .outputs import refuse_foreign, write_text_atomic
from .patch import BASAMConfig, apply_basam, remove_basam
from .patch_state import block_patch
from .provenance import load_line
from .resolution import set_input_size
from .scaling import attention_scale

DEFAULT_GRIDS = (32, 64, 128)
SWEEP_SIZES = (128, 256, 384, 512, 768, 1024)
TARGET_GRID = 64
TARGET_GRIDS = (64, 128)
"""Token grids at which the ratios are judged against their targets."""
TARGET_SPEEDUP = 1.2  # (a)/(b) at least
TARGET_OVERHEAD = 1.03  # (b)/(b0) at most
TARGET_FLOOR = 1.05  # (b)/(c) at most
TARGET_2048_GB = 2.0
FIT_GB = 16.0
"""The memory the largest fitting side is stated for."""
EXTRAPOLATION_SIZES = (512, 768, 1024)
VIT_B = model_spec("vit_b")
"""ViT-B's facts (its global blocks' width and heads), read off the model."""

BLOCK_CASES = {
    "sam_block": "(a) SAM's own block, unpatched",
    "basam_paper": "(b) block, paper preset via basam_lite",
    "paper_compiled": "(b+) block, paper preset, bias rows compiled (BASAM_COMPILED_BIAS=1)",
    "basam_vanilla": "(b0) block, vanilla preset via basam_lite",
    "floor": "(c) bias-free, rel-pos-free fused block",
}
GB = 1 << 30
MB = 1 << 20
FOLDED_MAX_TOKENS = 64 * 64
"""The folded path's attention-only row is timed up to this many tokens (at 128 x 128 it took
32.3 s against 8.8 s for the chunked path: docs/benchmark.md as committed in b89ff12)."""
COMPILE_WARM_GRID = 56
"""The (b+) memory child compiles its kernel here first (chunked: above ``DENSE_MAX_TOKENS``)."""


@dataclass
class Row:
    """One line of the CSV."""

    section: str
    case: str
    description: str
    grid: int | None = None
    tokens: int | None = None
    size_px: int | None = None
    path: str = ""
    seconds: float | None = None
    runs: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    forward_rss_mb: float | None = None
    status: str = "ok"
    note: str = ""
    ratio: float | None = None
    max_rel_diff: float | None = None

    def csv_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["runs"] = ";".join(f"{t:.4f}" for t in self.runs)
        d["seconds"] = None if self.seconds is None else round(self.seconds, 4)
        return d


# ---------------------------------------------------------------- building the cases


def vit_b_global_block(use_rel_pos: bool = True, seed: int = 0) -> nn.Module:
    """A one-block image encoder whose block is a ViT-B global block (so that
    :func:`apply_basam` can patch it): :func:`basam_lite.encoders.sam1_build.global_block_encoder`.
    Rel-pos tables random (SAM initialises them at zero; a trained SAM's are not), weights
    seeded."""
    return global_block_encoder("vit_b", use_rel_pos, seed)


def block_case(case: str, seed: int = 0) -> nn.Module:
    """One of the four block versions; all share the weights of the same seed."""
    if case not in BLOCK_CASES:
        raise ValueError(f"unknown block case {case!r}: one of {', '.join(BLOCK_CASES)}")
    if case == "floor":
        ref = vit_b_global_block(True, seed)
        enc = vit_b_global_block(False, seed)
        enc.load_state_dict(ref.state_dict(), strict=False)  # all but the rel-pos tables
        apply_basam(enc, BASAMConfig.vanilla())
        return enc.blocks[0]
    enc = vit_b_global_block(True, seed)
    if case != "sam_block":
        preset = "vanilla" if case == "basam_vanilla" else "paper"
        apply_basam(enc, BASAMConfig.preset(preset))
    return enc.blocks[0]


def block_call(case: str, module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """One forward of a block case (the compiled case with the compiled bias build on)."""
    if case != "paper_compiled":
        return partial(module, x)

    def run() -> torch.Tensor:
        with compiled_bias.use_compiled_bias(True):
            return module(x)

    return run


def block_cases(seed: int = 0) -> dict[str, nn.Module]:
    """The four block versions, same weights."""
    return {case: block_case(case, seed) for case in BLOCK_CASES}


def block_input(grid: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, grid, grid, VIT_B.global_dim(), generator=g)


def attention_cases(block: nn.Module, x: torch.Tensor) -> dict[str, tuple[str, Callable]]:
    """Attention-only calls on the block's own q, k, v: every path of basam_lite.attention."""
    attn = block.attn
    _, rows, cols, _ = x.shape
    n = rows * cols
    with torch.no_grad():
        qkv = attn.qkv(block.norm1(x)).reshape(1, n, 3, attn.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    grid = (rows, cols)
    scale = attention_scale(n, 4096, "log_ratio") * q.shape[-1] ** -0.5
    state = block_patch(attn)
    slopes = state.slopes if state is not None else None
    if slopes is None:
        from .masks import alibi_slopes

        slopes = alibi_slopes(attn.num_heads)

    def relpos() -> tuple[torch.Tensor, torch.Tensor]:
        return decomposed_rel_pos(q, attn.rel_pos_h, attn.rel_pos_w, grid)

    def paper(path: str) -> Callable:
        def run() -> torch.Tensor:
            rh, rw = relpos()
            bias = attn_lib.AttentionBias(grid, rh, rw, slopes, "euclidean")
            return attn_lib.attend(q, k, v, scale, bias, path)  # type: ignore[arg-type]

        return run

    def vanilla() -> torch.Tensor:
        rh, rw = relpos()
        return attn_lib.attend(q, k, v, scale, attn_lib.AttentionBias(grid, rh, rw))

    def paper_compiled() -> torch.Tensor:
        with compiled_bias.use_compiled_bias(True):
            return paper("chunked")()

    empty = attn_lib.AttentionBias(grid)
    placeholder = attn_lib.AttentionBias(grid, q, q, slopes)  # shapes only, for choose_path
    auto = attn_lib.choose_path(1, attn.num_heads, placeholder)
    cases: dict[str, tuple[str, Callable]] = {
        "attn_floor": ("sdpa", lambda: attn_lib.attend(q, k, v, scale, empty)),
        "attn_relpos_terms": ("", relpos),
        "attn_vanilla": (
            attn_lib.choose_path(1, attn.num_heads, attn_lib.AttentionBias(grid, q, q)),
            vanilla,
        ),
        "attn_paper": (auto, paper("auto")),
    }
    fits = attn_lib.dense_bias_bytes(1, attn.num_heads, placeholder) <= attn_lib.DENSE_BIAS_BUDGET
    if fits:  # the in-kernel cost of any N x N bias, its construction excluded
        with torch.no_grad():
            rh, rw = relpos()
            prebuilt = attn_lib.bias_rows(
                attn_lib.AttentionBias(grid, rh, rw, slopes, "euclidean"), slice(None), q.dtype
            )
        cases["attn_prebuilt_bias"] = (
            "sdpa + mask",
            lambda: torch.nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=prebuilt, scale=scale
            ),
        )
    for path in ("dense", "chunked", "folded"):
        if path == "dense" and not fits:
            continue
        if path == auto or (path == "folded" and rows * cols > FOLDED_MAX_TOKENS):
            continue  # timed above as "auto"; folded is for training, and slow on large grids
        cases[f"attn_paper_{path}"] = (path, paper(path))
    cases["attn_paper_compiled"] = ("chunked", paper_compiled)
    return cases


ATTENTION_DESCRIPTIONS = {
    "attn_floor": "attention only: plain fused SDPA, no bias",
    "attn_relpos_terms": "attention only: SAM's rel-pos terms rel_h, rel_w (einsum)",
    "attn_vanilla": "attention only: rel-pos, path auto",
    "attn_paper": "attention only: rel-pos + lambda + euclidean mask, path auto",
    "attn_prebuilt_bias": "attention only: SDPA with the paper bias prebuilt (build not timed)",
    "attn_paper_dense": "attention only: paper, path dense",
    "attn_paper_chunked": "attention only: paper, path chunked",
    "attn_paper_folded": "attention only: paper, path folded",
    "attn_paper_compiled": "attention only: paper, path chunked, bias rows compiled",
}


def sam_block_bytes(grid: int, heads: int = VIT_B.global_heads()) -> int:
    """What SAM's explicit global block needs at its peak: logits, logits + rel_h, + rel_w."""
    return 3 * heads * grid**4 * 4


# ---------------------------------------------------------------- timing


def interleaved(cases: dict[str, Callable], repeats: int, warmup: int = 1) -> dict[str, list]:
    """Warm every case, then ``repeats`` rounds that run each case once, in a rotated order."""
    names = list(cases)
    with torch.no_grad():
        for _ in range(warmup):
            for name in names:
                cases[name]()
        runs: dict[str, list[float]] = {n: [] for n in names}
        for r in range(repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                t0 = time.perf_counter()
                cases[name]()
                runs[name].append(time.perf_counter() - t0)
    return runs


def median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- child processes


def run_child(spec: dict, timeout: float = 900.0, env: dict[str, str] | None = None) -> dict:
    """Run one measurement in a fresh interpreter (``env``: variables added to its
    environment); returns its JSON result (ok=False on failure, with the error)."""
    cmd = [sys.executable, "-m", "basam_lite.bench", "--child", json.dumps(spec)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    return {"ok": False, "error": f"exit code {proc.returncode}: {tail[0][:300]}"}


def start_children(specs: list[dict], jobs: int, timeout: float = 900.0) -> list[dict]:
    """Run children, ``jobs`` at a time (memory is per process, so concurrency does not change
    any peak; it only saves wall time in --quick)."""
    if jobs <= 1:
        return [run_child(s, timeout) for s in specs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda s: run_child(s, timeout), specs))


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _vms_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().vms


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """This process's peak RSS (VmHWM: per address space, so unlike ``ru_maxrss`` it does not
    inherit the parent's peak through fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _maxrss_bytes()


def child_main(spec: dict) -> dict:
    """One measurement (in the child): build, one forward without gradients, peak RSS.

    Returns ``peak_rss_mb`` (the process's peak over its whole life: imports, building, forward)
    and ``forward_rss_mb`` (the peak during the forward minus the RSS just before it).
    """
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    cap = spec.get("cap_gb")
    if cap:
        # Address-space cap above what the imports already mapped (this torch build maps
        # several GB of libraries it never touches).
        limit = _vms_bytes() + int(cap * GB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if spec["kind"] == "block":
        module = block_case(spec["case"], spec.get("seed", 0))
        run = block_call(spec["case"], module, block_input(spec["grid"]))
        if spec["case"] == "paper_compiled":
            # Compile on a smaller grid that takes the chunked path too (the kernel is
            # shape-generic), so that the measured forward is a first forward like the others'.
            with torch.no_grad():
                block_call(spec["case"], module, block_input(COMPILE_WARM_GRID))()
            attn_lib.release_workspace()  # its forward allocates the bias buffer as the others do
    else:
        sam = build_sam(spec["model"])
        set_input_size(sam, spec["size"])
        if spec.get("preset"):
            apply_basam(sam, BASAMConfig.preset(spec["preset"]))
        size = spec["size"]
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        run = partial(sam.image_encoder, x)
    before_peak = _peak_rss_bytes()
    base = _rss_bytes()
    _reset_peak()
    t0 = time.perf_counter()
    result: dict[str, object] = {"ok": True}
    try:
        with torch.no_grad():
            run()
    except (RuntimeError, MemoryError) as e:
        result = {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    forward_peak = _peak_rss_bytes()
    result.update(
        seconds=time.perf_counter() - t0,
        base_rss_mb=base / MB,
        forward_rss_mb=max(0, forward_peak - base) / MB,
        peak_rss_mb=max(before_peak, forward_peak) / MB,
    )
    return result


# ---------------------------------------------------------------- the sections


def bench_blocks(args: argparse.Namespace, rows: list[Row]) -> None:
    cases = block_cases()
    for i, grid in enumerate(args.grids):
        repeats = args.grid_repeats[min(i, len(args.grid_repeats) - 1)]
        x = block_input(grid)
        n = grid * grid
        timed: dict[str, Callable] = {}
        skipped: dict[str, str] = {}
        need = sam_block_bytes(grid)
        available = _available_bytes()
        for case, module in cases.items():
            if case == "sam_block" and need > available - 2 * GB:
                skipped[case] = (
                    f"skipped: needs about {need / GB:.1f} GB, {available / GB:.1f} GB available"
                )
                continue
            timed[case] = block_call(case, module, x)
        first_call = ""
        if "paper_compiled" in timed:
            from torch._dynamo.utils import counters  # graphs compiled in this process

            graphs, t0 = counters["stats"]["unique_graphs"], time.perf_counter()
            with torch.no_grad():
                timed["paper_compiled"]()
            seconds = time.perf_counter() - t0
            with compiled_bias.use_compiled_bias(True):
                built = compiled_bias.status()
            compiled = counters["stats"]["unique_graphs"] > graphs
            how = "compile included" if compiled else "nothing compiled (an earlier grid's kernel)"
            first_call = (
                f"first call {seconds:.1f} s, {how} (compiled build: {built}); memory: Inductor "
                f"loaded, compiled on a {COMPILE_WARM_GRID}x{COMPILE_WARM_GRID} grid first"
            )
        with torch.no_grad():  # sanity: vanilla through basam_lite equals SAM's block
            if "sam_block" in timed and grid <= TARGET_GRID:
                diff = (cases["sam_block"](x) - cases["basam_vanilla"](x)).abs().max().item()
                print(f"[{grid}x{grid}] max |(a) - (b0)| = {diff:.2e} (must be ~1e-6)")
        attention = attention_cases(cases["basam_paper"], x)
        for name, (_, fn) in attention.items():
            timed[name] = fn
        print(f"[{grid}x{grid}] timing {len(timed)} cases x {repeats} rounds ...", flush=True)
        runs = interleaved(timed, repeats)
        memory = {}
        if not args.no_memory and (not args.quick or grid == min(args.grids)):
            measured = ("sam_block", "basam_paper") if args.quick else tuple(BLOCK_CASES)
            specs = [
                {"kind": "block", "case": c, "grid": grid, "threads": args.threads}
                for c in measured
                if c not in skipped
            ]
            results = start_children(specs, args.jobs)
            memory = {s["case"]: r for s, r in zip(specs, results, strict=True)}
        for case, desc in BLOCK_CASES.items():
            mem = memory.get(case, {})
            row = Row("block", case, desc, grid, n, grid * VIT_B.patch_size)
            row.path = _block_path(cases[case], grid)
            if case in skipped:
                row.status, row.note = "skipped", skipped[case]
            else:
                row.runs = runs[case]
                row.seconds = median(row.runs)
                if case == "paper_compiled" and row.path == "chunked":
                    row.note = first_call
            _fill_memory(row, mem)
            rows.append(row)
        for name, (path, _) in attention.items():
            row = Row(
                "attention",
                name,
                ATTENTION_DESCRIPTIONS[name],
                grid,
                n,
                grid * VIT_B.patch_size,
                path,
            )
            row.runs = runs[name]
            row.seconds = median(row.runs)
            rows.append(row)


def _block_path(block: nn.Module, grid: int) -> str:
    state = block_patch(block.attn)
    if state is None:
        return "sam explicit"
    a = block.attn
    t = torch.empty(0)
    bias = attn_lib.AttentionBias(
        (grid, grid),
        t if a.use_rel_pos else None,
        t if a.use_rel_pos else None,
        t if state.slopes is not None else None,
    )
    return attn_lib.choose_path(1, a.num_heads, bias, state.config.path)


def _fill_memory(row: Row, mem: dict) -> None:
    if not mem:
        return
    if mem.get("ok"):
        row.peak_rss_mb = round(mem["peak_rss_mb"], 1)
        row.forward_rss_mb = round(mem["forward_rss_mb"], 1)
    else:
        row.note = (row.note + "; " if row.note else "") + f"memory child: {mem.get('error')}"


def _available_bytes() -> int:
    import psutil

    return psutil.virtual_memory().available


def tiny_models() -> list[tuple[str, str]]:
    """(model name, label): the trained tiny checkpoints when present, else random 'tiny'."""
    found = [m for m in ("tiny-vanilla", "tiny-basam") if tiny_checkpoint_path(m).exists()]
    if found:
        return [(m, m) for m in found]
    return [("tiny", "tiny (random weights: trained checkpoints not found)")]


def bench_models(args: argparse.Namespace, rows: list[Row]) -> None:
    sizes = args.sizes
    for name, label in tiny_models()[: 1 if args.quick else None]:
        sam = build_sam(name)
        for size in sizes:
            set_input_size(sam, size)
            x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
            runs = _with_without(sam, x, args.repeats)
            _model_rows(rows, "tiny_encoder", name, label, size, runs)
        print(f"[models] {label}: done", flush=True)
    if args.vit_b:
        sam = build_sam("vit_b")
        side = VIT_B.base_side
        x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
        runs = _with_without(sam, x, max(2, args.repeats - 2))
        _model_rows(rows, "vit_b_encoder", "vit_b", "ViT-B (random weights)", side, runs)
        print(f"[models] ViT-B at {side} px: done", flush=True)


def _with_without(sam: nn.Module, x: torch.Tensor, repeats: int) -> dict[str, list[float]]:
    """Encoder time per image without BA-SAM (SAM's own attention) and with the paper preset,
    interleaved (the patch is applied and removed between runs; it only swaps forwards)."""
    enc = sam.image_encoder

    def without() -> None:
        remove_basam(sam)
        enc(x)

    def with_basam() -> None:
        apply_basam(sam, BASAMConfig.paper())
        enc(x)

    runs = interleaved({"without": without, "with": with_basam}, repeats)
    remove_basam(sam)
    return runs


def _model_rows(rows, section, model, label, size, runs) -> None:
    for key, desc in (("without", "SAM's own attention"), ("with", "BA-SAM paper preset")):
        row = Row(section, f"{model}:{key}", f"{label}, {desc}", size // 16, (size // 16) ** 2)
        row.size_px = size
        row.runs = runs[key]
        row.seconds = median(row.runs)
        rows.append(row)


ENCODER_2048 = {"kind": "encoder", "model": "vit_b", "size": 2048, "preset": "paper"}
"""The child spec of the 2048 px rows: one cold forward of the ViT-B encoder, paper preset."""


def encoder_2048_row(case: str, description: str, res: dict, how: str) -> Row:
    """A 2048 px row from a child's result, judged against :data:`TARGET_2048_GB` (``how``: the
    note's opening words); a failed child is a FAIL row with its error."""
    row = Row("encoder_2048", case, description, 128)
    row.tokens, row.size_px, row.path = 128 * 128, 2048, "auto"
    if not res.get("ok"):
        row.status, row.note = "FAIL", str(res.get("error"))
        return row
    row.seconds = res["seconds"]
    row.runs = [res["seconds"]]
    row.peak_rss_mb = round(res["peak_rss_mb"], 1)
    row.forward_rss_mb = round(res["forward_rss_mb"], 1)
    row.status = "PASS" if res["peak_rss_mb"] * MB <= TARGET_2048_GB * 1e9 else "FAIL"
    row.note = f"{how}; target: peak RSS <= {TARGET_2048_GB:g} GB"
    return row


def bench_2048(args: argparse.Namespace, rows: list[Row]) -> None:
    print("[2048] ViT-B encoder, paper preset, 2048 x 2048, in a child process ...", flush=True)
    res = run_child({**ENCODER_2048, "threads": args.threads}, timeout=1800)
    description = "ViT-B encoder, paper preset (basam_lite)"
    rows.append(encoder_2048_row("vit_b:paper", description, res, "one cold forward"))
    if res.get("ok"):
        rows.append(fit_row(res["base_rss_mb"] * MB, res["peak_rss_mb"] * MB))
    rows.append(_encoder_2048_fixed_mmap(args))
    if not args.unpatched_2048:
        return

    print(f"[2048] unpatched ViT-B: capped child ({args.cap_gb:g} GB) ...", flush=True)
    capped = run_child(
        {
            "kind": "encoder",
            "model": "vit_b",
            "size": 2048,
            "cap_gb": args.cap_gb,
            "threads": args.threads,
        },
        timeout=1800,
    )
    row = Row("encoder_2048", "vit_b:without:capped", "ViT-B encoder, SAM's own attention", 128)
    row.tokens, row.size_px, row.path = 128 * 128, 2048, "sam explicit"
    if capped.get("ok"):
        row.status = "ok"
        row.seconds = capped["seconds"]
        row.peak_rss_mb = round(capped["peak_rss_mb"], 1)
        row.note = f"completed under an address-space cap of {args.cap_gb:g} GB"
    else:
        row.status = "failed"
        row.peak_rss_mb = round(capped.get("peak_rss_mb", 0.0), 1) or None
        row.note = f"RLIMIT_AS {args.cap_gb:g} GB above import baseline: {capped.get('error')}"
    rows.append(row)

    print(f"[2048] unpatched ViT-B at {EXTRAPOLATION_SIZES} px (children) ...", flush=True)
    points, bases = [], []
    for size in EXTRAPOLATION_SIZES:
        res = run_child(
            {"kind": "encoder", "model": "vit_b", "size": size, "threads": args.threads},
            timeout=1800,
        )
        row = Row(
            "encoder_unpatched",
            f"vit_b:without:{size}",
            "ViT-B encoder, SAM's own attention (measured, one cold forward)",
            size // 16,
            (size // 16) ** 2,
            size,
            "sam explicit",
        )
        if res.get("ok"):
            row.seconds, row.runs = res["seconds"], [res["seconds"]]
            row.peak_rss_mb = round(res["peak_rss_mb"], 1)
            row.forward_rss_mb = round(res["forward_rss_mb"], 1)
            points.append(((size // 16) ** 2, res["forward_rss_mb"]))
            bases.append(res["base_rss_mb"])
        else:
            row.status, row.note = "failed", str(res.get("error"))
        rows.append(row)
    if len(points) >= 3:
        est = statistics.median(bases) + extrapolate_quadratic(points, 128 * 128)
        row = Row(
            "encoder_2048",
            "vit_b:without:extrapolated",
            "ViT-B encoder, SAM's own attention (extrapolated)",
            128,
            128 * 128,
            2048,
            "sam explicit",
        )
        row.peak_rss_mb = round(est, 1)
        row.status = "extrapolated"
        row.note = (
            "RSS before the forward plus its forward peak fitted as a + b N + c N^2 through the "
            + ", ".join(str(s) for s in EXTRAPOLATION_SIZES)
            + f" px runs; SAM's 3 N x N logit tensors alone: {sam_block_bytes(128) / GB:.1f} GiB"
        )
        rows.append(row)


MMAP_THRESHOLD = 4 << 20
"""glibc's ``M_MMAP_THRESHOLD`` for the second 2048 px child: set, it stops the threshold from
rising after large frees, so every block of 4 MiB or more is its own mapping, returned to the
system when freed, instead of heap that the process keeps resident."""


def _encoder_2048_fixed_mmap(args: argparse.Namespace) -> Row:
    """The same 2048 px forward in a child started with ``MALLOC_MMAP_THRESHOLD_`` fixed
    (glibc only; an environment variable of the user's, nothing the library sets)."""
    env = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    print(f"[2048] the same with MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD} ...", flush=True)
    res = run_child({**ENCODER_2048, "threads": args.threads}, timeout=1800, env=env)
    description = f"ViT-B encoder, paper preset, MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}"
    how = "one cold forward, glibc returning every freed block of 4 MiB or more at once"
    return encoder_2048_row("vit_b:paper:mmap", description, res, how)


def fit_row(base_bytes: float, peak_bytes: float, size: int = 2048) -> Row:
    """The largest side at which the ViT-B encoder with the paper preset fits :data:`FIT_GB`,
    from :mod:`basam_lite.memory`'s estimate (weights + one cell, safety factor included) on top
    of the measured process at rest without its weights (``base_bytes``: RSS with the model
    loaded, before the forward), checked against the peak measured at ``size``."""
    from .memory import largest_fitting, run_bytes, shape_of

    rest = max(0.0, base_bytes - shape_of("vit_b").weight_bytes)  # imports, allocator, etc.
    estimate = rest + run_bytes("vit_b", ("paper",), size)
    side = largest_fitting("vit_b", ("paper",), int(FIT_GB * 1e9 - rest), 32768)
    row = Row(
        "encoder_2048", "vit_b:paper:fits", f"ViT-B encoder, paper preset, fits {FIT_GB:g} GB"
    )
    row.size_px = side
    if side:
        row.grid, row.tokens = side // 16, (side // 16) ** 2
        row.peak_rss_mb = round((rest + run_bytes("vit_b", ("paper",), side)) / MB, 1)
    checked = estimate >= peak_bytes
    row.status = "estimate" if checked else "estimate BELOW measured"
    row.note = (
        f"largest side (multiple of 16) whose memory.py estimate fits {FIT_GB:g} GB; the same "
        f"estimate at {size} px: {estimate / MB:,.0f} MB against {peak_bytes / MB:,.0f} MB measured"
        f" ({'above' if checked else 'below'} it)"
    )
    return row


def extrapolate_quadratic(points: Sequence[tuple[int, float]], n: int) -> float:
    """Least-squares fit of ``peak = a + b N + c N^2`` through ``(N, peak)`` points, at ``n``."""
    xs = torch.tensor([[1.0, p[0], float(p[0]) ** 2] for p in points], dtype=torch.float64)
    ys = torch.tensor([p[1] for p in points], dtype=torch.float64)[:, None]
    coef = torch.linalg.lstsq(xs, ys).solution[:, 0]
    return float(coef[0] + coef[1] * n + coef[2] * n * n)


# ---------------------------------------------------------------- reporting


def ratios(rows: list[Row]) -> list[dict[str, object]]:
    """(a)/(b), (b)/(b0), (b)/(c) for every grid, and (b+)/(b0), (b+)/(c) where the compiled case
    ran, judged against the targets at :data:`TARGET_GRIDS`; a missed target says by how much
    (``value / bound - 1``)."""
    out = []
    by = {(r.case, r.grid): r.seconds for r in rows if r.section == "block"}
    for grid in sorted({r.grid for r in rows if r.section == "block" and r.grid}):
        a, b = by.get(("sam_block", grid)), by.get(("basam_paper", grid))
        b0, c = by.get(("basam_vanilla", grid)), by.get(("floor", grid))
        bc = by.get(("paper_compiled", grid))
        target = grid in TARGET_GRIDS
        judged = [
            ("(a)/(b)", a, b, TARGET_SPEEDUP, "ge"),
            ("(b)/(b0)", b, b0, TARGET_OVERHEAD, "le"),
            ("(b)/(c)", b, c, TARGET_FLOOR, "le"),
        ]
        if bc:
            judged += [
                ("(b+)/(b0)", bc, b0, TARGET_OVERHEAD, "le"),
                ("(b+)/(c)", bc, c, TARGET_FLOOR, "le"),
            ]
        for name, num, den, bound, ok_if in judged:
            value = num / den if num and den else None
            verdict = ""
            if bound is not None and target and value is not None:
                good = value >= bound if ok_if == "ge" else value <= bound
                miss = abs(value / bound - 1) * 100
                verdict = "PASS" if good else f"FAIL (by {miss:.0f}%)"
            goal = "" if bound is None else f"{'>=' if ok_if == 'ge' else '<='} {bound:g}"
            out.append(
                {"grid": grid, "ratio": name, "value": value, "target": goal, "verdict": verdict}
            )
    return out


def floor_gap(rows: list[Row], grid: int) -> list[tuple[str, float]]:
    """What stands between (b) and (c) at ``grid``, from the attention-only rows (seconds)."""
    t = {r.case: r.seconds for r in rows if r.grid == grid and r.seconds is not None}
    need = ("basam_paper", "floor", "attn_floor", "attn_relpos_terms", "attn_paper")
    if not all(k in t for k in need):
        return []
    parts = [("SAM's rel-pos terms rel_h, rel_w (two einsums)", t["attn_relpos_terms"])]
    rest = t["attn_paper"] - t["attn_floor"] - t["attn_relpos_terms"]
    if "attn_prebuilt_bias" in t:
        kernel = t["attn_prebuilt_bias"] - t["attn_floor"]
        parts.append(("adding an N x N bias inside the fused kernel (bias prebuilt)", kernel))
        parts.append(("building the bias rows (+ chunking, key flips)", rest - kernel))
    else:
        parts.append(("building the bias rows and adding them in the kernel", rest))
    block_gap = t["basam_paper"] - t["floor"]
    parts.append(
        (
            "rest of (b) - (c): noise, cache effects outside attention",
            block_gap - sum(p for _, p in parts),
        )
    )
    return parts


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _mb(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def markdown_tables(rows: list[Row]) -> str:
    lines = []
    blocks = [r for r in rows if r.section == "block"]
    if blocks:
        lines += [
            "### One ViT-B global block (12 heads x 64, SAM's rel-pos tables, MLP and norms)",
            "",
            "| grid | case | attention path | median s | peak RSS MB | forward RSS MB | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in blocks:
            lines.append(
                f"| {r.grid}x{r.grid} | {r.description} | {r.path} | {_fmt(r.seconds)} | "
                f"{_mb(r.peak_rss_mb)} | {_mb(r.forward_rss_mb)} | {r.note} |"
            )
        lines += ["", "| grid | ratio | value | target | verdict |", "|---|---|---|---|---|"]
        for q in ratios(rows):
            lines.append(
                f"| {q['grid']}x{q['grid']} | {q['ratio']} | {_fmt(q['value'], 2)} | "  # type: ignore[arg-type]
                f"{q['target']} | {q['verdict']} |"
            )
        lines.append("")
        for grid in sorted({r.grid for r in blocks if r.grid}):
            gap = floor_gap(rows, grid)
            if not gap:
                continue
            lines += [
                f"What stands between (b) and (c) at {grid}x{grid} (seconds, from the "
                "attention-only rows below):",
                "",
            ]
            lines += [f"- {name}: {_fmt(sec)}" for name, sec in gap]
            lines.append("")
    att = [r for r in rows if r.section == "attention"]
    if att:
        lines += [
            "### Attention alone (same q, k, v as the block; where the time goes)",
            "",
            "| grid | case | path | median s |",
            "|---|---|---|---|",
        ]
        for r in att:
            lines.append(f"| {r.grid}x{r.grid} | {r.description} | {r.path} | {_fmt(r.seconds)} |")
        lines.append("")
    enc = [r for r in rows if r.section in ("tiny_encoder", "vit_b_encoder")]
    if enc:
        lines += [
            "### Image encoder, time per image (batch 1, fp32)",
            "",
            "| model | input px | tokens | without BA-SAM s | with BA-SAM (paper) s "
            "| without/with |",
            "|---|---|---|---|---|---|",
        ]
        keyed = {(r.case, r.size_px): r for r in enc}
        for r in enc:
            if not r.case.endswith(":without"):
                continue
            model = r.case.rsplit(":", 1)[0]
            w = keyed.get((f"{model}:with", r.size_px))
            ratio = r.seconds / w.seconds if w and w.seconds and r.seconds else None
            label = r.description.rsplit(",", 1)[0]
            lines.append(
                f"| {label} | {r.size_px} | {r.tokens} | {_fmt(r.seconds)} | "
                f"{_fmt(w.seconds if w else None)} | {_fmt(ratio, 2)} |"
            )
        lines.append("")
    big = [r for r in rows if r.section in ("encoder_2048", "encoder_unpatched")]
    if big:
        lines += [
            "### ViT-B image encoder at 2048 x 2048 (and the unpatched encoder's memory)",
            "",
            "| case | input px | seconds | peak RSS MB | status | note |",
            "|---|---|---|---|---|---|",
        ]
        for r in big:
            lines.append(
                f"| {r.description} | {r.size_px} | {_fmt(r.seconds, 1)} | {_mb(r.peak_rss_mb)} "
                f"| {r.status} | {r.note} |"
            )
        lines.append("")
    return "\n".join(lines)


def peer_rows(results: list[bench_peers.PeerResult]) -> list[Row]:
    """The peers section's CSV rows (``path``: the SDPA kernels that ran)."""
    rows = []
    for r in results:
        patch = 16
        row = Row("peers", r.peer, bench_peers.PEERS[r.peer].description, r.side // patch)
        row.tokens, row.size_px = (r.side // patch) ** 2, r.side
        row.path = "; ".join(r.kernels)
        row.runs, row.seconds = list(r.runs), r.median
        row.peak_rss_mb = None if r.peak_mb is None else round(r.peak_mb, 1)
        row.forward_rss_mb = None if r.forward_mb is None else round(r.forward_mb, 1)
        row.status, row.note = r.status, r.note
        row.ratio = None if r.ratio is None else round(r.ratio, 4)
        row.max_rel_diff = r.max_rel_diff
        rows.append(row)
    return rows


def peers_markdown(results: list[bench_peers.PeerResult], args: argparse.Namespace) -> str:
    """The peers section as markdown: how it was measured, then the table."""
    device = results[0].device if results else args.device
    timing = (
        "CUDA events, peak = torch.cuda.max_memory_allocated"
        if device == "cuda"
        else "perf_counter, peak RSS = the worker's VmHWM, reset after building"
    )
    return "\n".join(
        [
            f"### Peers: the {args.peer_model} image encoder, same weights, on {device}",
            "",
            f"Each peer in its own worker process, built at the side with one seeded "
            f"`{args.peer_model}`'s weights (pos-embed and global rel-pos tables resized once, "
            "as SAM does at every forward); Hugging Face's SamVisionModel refuses any input but "
            "its config's `image_size`, so it is built with `image_size = side`. "
            f"{args.peer_repeats} timed rounds after one warm (profiled, untimed) forward; "
            f"sides up to {args.interleave_max} px interleaved, larger ones one peer at a time. "
            f"{timing}; CPU workers under an address-space cap of {args.peer_cap_gb:g} GB. "
            f"max rel. diff = max |y - y_ref| / max |y_ref| against timm's output (the first "
            f"peer that ran otherwise); agreement means <= {bench_peers.AGREE_TOL:g}.",
            "",
            bench_peers.markdown_table(results),
            "",
        ]
    )


def write_csv(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dicts = [r.csv_dict() for r in rows]
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(dicts[0]) if dicts else ["section"])
    writer.writeheader()
    writer.writerows(dicts)
    write_text_atomic(path, buf.getvalue())


REPORT_START = "# Benchmark: BA-SAM attention speed and memory"


def is_bench_csv(path: Path) -> bool:
    """A CSV :func:`write_csv` wrote (its header starts with the Row fields)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readline().startswith("section,case,description,")


def is_bench_report(path: Path) -> bool:
    """A report :func:`write_report` wrote."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(len(REPORT_START)) == REPORT_START


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before the benchmark runs, to replace a file it did not write."""
    how = "choose another --out / --report"
    refuse_foreign(Path(args.out), is_bench_csv, "a benchmark CSV", how)
    if args.report:
        refuse_foreign(Path(args.report), is_bench_report, "a benchmark report", how)


# ---------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--grids", nargs="+", type=int, default=None, help="token grids (default 32 64 128)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        nargs="+",
        default=None,
        help="timed rounds (default 5); several: one per grid, the last for any further grid "
        "(e.g. --grids 64 128 --repeats 9 3); the encoder rows use the first",
    )
    p.add_argument("--out", default="bench.csv", help="CSV, one row per case")
    p.add_argument("--report", default=None, help="also write the tables as markdown here")
    p.add_argument("--skip-models", action="store_true", help="no encoder time-per-image rows")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (for tests): one 8x8 grid, 1 repeat, memory of (a) and (b) only, "
        "one tiny model at 128 px, no ViT-B encoder, no 2048",
    )
    p.add_argument(
        "--encoder-2048",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ViT-B encoder at 2048 px in a child (default: on, off with --quick)",
    )
    p.add_argument(
        "--unpatched-2048",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --encoder-2048: also SAM's own encoder at 2048 px under the cap, and its "
        "512/768/1024 px peaks for the extrapolation (slow)",
    )
    p.add_argument("--cap-gb", type=float, default=12.0, help="memory cap of the unpatched child")
    p.add_argument("--no-memory", action="store_true", help="skip the per-case memory children")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    peers = p.add_argument_group(
        "peers",
        "SAM's ViT encoder with the same weights in timm, Hugging Face (sdpa) and this "
        "project's vanilla and paper presets; each peer in its own worker process",
    )
    peers.add_argument("--peers", action="store_true", help="add the peers section")
    peers.add_argument(
        "--peers-only", action="store_true", help="run the peers section only (implies --peers)"
    )
    peers.add_argument(
        "--peer-sizes",
        nargs="+",
        type=int,
        default=list(bench_peers.DEFAULT_SIDES),
        help="input sides in px (default 1024 2048 3072)",
    )
    peers.add_argument("--peer-model", default="vit_b", help="the Sam whose weights all load")
    peers.add_argument(
        "--peer-list",
        nargs="+",
        default=list(bench_peers.PEERS),
        choices=list(bench_peers.PEERS),
        help="which peers (default all)",
    )
    peers.add_argument("--peer-repeats", type=int, default=3, help="timed rounds per side")
    peers.add_argument(
        "--peer-cap-gb",
        type=float,
        default=12.0,
        help="CPU: address-space cap of each peer's worker above its imports (0: none)",
    )
    peers.add_argument(
        "--interleave-max",
        type=int,
        default=1024,
        help="sides up to this are timed interleaved (all workers alive); above it one peer at "
        "a time, so only one big model is resident",
    )
    peers.add_argument(
        "--device",
        choices=list(bench_peers.CLOCKS),
        default="cpu",
        help="where the peers run (cuda: CUDA events and max_memory_allocated)",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.child:
        print(json.dumps(child_main(json.loads(args.child))), flush=True)
        return 0
    if not args.cap_gb > 0:
        raise UserError(f"--cap-gb {args.cap_gb:g}: a memory cap is a positive number of GB")
    check_outputs(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    args.grids = args.grids or ([8] if quick else list(DEFAULT_GRIDS))
    args.grid_repeats = args.repeats or [1 if quick else 5]
    if any(r < 1 for r in args.grid_repeats):
        raise UserError(f"--repeats {' '.join(map(str, args.grid_repeats))}: rounds are >= 1")
    args.repeats = args.grid_repeats[0]
    args.sizes = [128] if quick else list(SWEEP_SIZES)
    args.vit_b = not quick
    args.jobs = 2 if quick else 1
    if args.encoder_2048 is None:
        args.encoder_2048 = not quick
    print(f"bench: {load_line()}", flush=True)
    t0 = time.perf_counter()
    rows: list[Row] = []
    if not args.peers_only:
        bench_blocks(args, rows)
        if not args.skip_models:
            bench_models(args, rows)
        if args.encoder_2048:
            bench_2048(args, rows)
    peers: list[bench_peers.PeerResult] = []
    if args.peers or args.peers_only:
        peers = bench_peers.bench_peers(
            args.peer_model,
            args.peer_sizes,
            args.peer_list,
            args.peer_repeats,
            args.device,
            args.peer_cap_gb or None,
            args.threads,
            args.interleave_max,
        )
        rows += peer_rows(peers)
    write_csv(rows, Path(args.out))
    tables = markdown_tables(rows)
    if peers:
        tables += "\n" + peers_markdown(peers, args)
    print()
    print(tables)
    print(f"wrote {args.out} ({len(rows)} rows) in {time.perf_counter() - t0:.0f} s")
    if args.report:
        write_report(args, tables, Path(args.report))
    return 0


def git_commit() -> str:
    """The checkout's short commit (``+ changes`` when the library's code differs from it: the
    run's own outputs do not count), or ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "-uno", "--", "basam_lite"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} + changes" if head and dirty else head or "unknown"


def write_report(args: argparse.Namespace, tables: str, path: Path) -> None:
    """``tables`` as a markdown page with the command that produced them, the machine's load
    and the commit."""
    command = "python -m basam_lite " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
    cases = "\n".join(f"- {desc}" for desc in BLOCK_CASES.values())
    grids = " and ".join(f"{g} x {g}" for g in TARGET_GRIDS)
    blocks = [
        "Block cases (same weights; one global block of ViT-B: 768 channels, 12 heads of 64, "
        "SAM's rel-pos tables, MLP and norms; batch 1, fp32, no gradients):",
        "",
        cases,
        "",
        f"Targets at {grids} tokens: (b)/(c) <= {TARGET_FLOOR:g} (BA-SAM within 5% of the "
        f"bias-free fused floor), (b)/(b0) <= {TARGET_OVERHEAD:g} (BA-SAM's own overhead over "
        f"SAM's attention on the same path), (a)/(b) >= {TARGET_SPEEDUP:g} where SAM's own "
        f"block fits. ViT-B encoder at 2048 px with the paper preset: peak RSS <= "
        f"{TARGET_2048_GB:g} GB. (b+) is (b) with the opt-in compiled bias build "
        "(`BASAM_COMPILED_BIAS=1`), judged against the same targets as (b). A missed target "
        "says by how much.",
        "",
    ]
    text = "\n".join(
        [
            REPORT_START,
            "",
            "Produced by:",
            "",
            "```bash",
            command or "python -m basam_lite bench",
            "```",
            "",
            f"Machine: {load_line()} (at the end of the run); commit {git_commit()}. Times are "
            "medians of warm runs, interleaved (every round runs every case, in a rotated "
            "order), so load from other processes hits all cases alike; peak RSS of each case "
            "comes from its own child process (`forward RSS` = peak during the forward minus the "
            "RSS before it).",
            "",
            *([] if args.peers_only else blocks),
            tables,
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    print(f"wrote {path}")


def _standalone() -> int:
    p = argparse.ArgumentParser(prog="python -m basam_lite.bench", description=__doc__)
    add_arguments(p)
    return run(p.parse_args())


if __name__ == "__main__":
    sys.exit(_standalone())
