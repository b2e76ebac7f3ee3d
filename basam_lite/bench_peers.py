"""The peers section of ``python -m basam_lite bench --peers``: SAM's ViT image encoder in the
implementations a user would pick, with the same weights, side by side.

Each peer (:data:`PEERS`) runs in its own worker process (so its peak memory is its own), built
from one seeded ``Sam`` at the input side (:mod:`basam_lite.encoders.peers`: timm's
``samvit_base_patch16``, Hugging Face's ``SamVisionModel`` with SDPA, this project's ``vanilla``
and ``paper`` presets). The parent drives the workers over a line protocol:

1. ``warm``: one untimed forward under the profiler (it names the SDPA kernel that ran) that
   also writes the output, so the parent can show that the peers compute the same thing
   (``max |y - y_ref| / max |y_ref|`` against timm's output, or the first peer that ran);
2. ``run``: one timed forward; the parent sends rounds of ``run`` to every live worker in a
   rotated order (interleaved, so load from other processes hits every peer alike) or, above
   ``interleave_max`` px, to one worker at a time (then only one big model is resident);
3. ``done``: the worker's peak memory (CPU: the kernel's ``VmHWM``, reset before the warm
   forward; CUDA: ``torch.cuda.max_memory_allocated``) and exit.

A peer that cannot run is a row that says why, never a crash: its package missing (skipped), a
refused size, or out of memory under the worker's cap (CPU: ``RLIMIT_AS`` of ``cap_gb`` above
what the imports mapped, so a 24 GB blow-up fails inside the cap instead of exhausting the
machine).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

GB = 1 << 30
MB = 1 << 20
DEFAULT_SIDES = (1024, 2048, 3072)
REFERENCE = "timm"
AGREE_TOL = 1e-4
"""Outputs agree when ``max |y - y_ref| / max |y_ref|`` is at most this (fp32; measured about
1e-6 on the tiny model)."""
PROTOCOL = "@@peer "
"""Prefix of the worker's reply lines (anything else on its stdout is ignored)."""


@dataclass(frozen=True)
class Peer:
    """One implementation of the encoder: what it is, the package it needs, how it is built."""

    description: str
    package: str | None
    build: str
    """Name of the builder in :data:`BUILDERS` (``(sam, side) -> forward``)."""
    same_function: bool = True
    """Whether it computes SAM's attention (checked against the reference); False for BA-SAM's
    paper preset, which adds lambda and the mask by design."""


PEERS: dict[str, Peer] = {
    "timm": Peer("timm samvit_base_patch16, img_size = side", "timm", "timm"),
    "hf_sdpa": Peer(
        "Hugging Face SamVisionModel, sdpa, image_size = side", "transformers", "hf_sdpa"
    ),
    "vanilla": Peer("basam-lite vanilla preset (SAM's attention, fused)", None, "vanilla"),
    "paper": Peer("basam-lite paper preset (BA-SAM)", None, "paper", same_function=False),
}


def _build_timm(sam, side: int) -> Callable[[Tensor], Tensor]:
    from .encoders.peers import build_timm_encoder

    return build_timm_encoder(sam, side)


def _build_hf(sam, side: int) -> Callable[[Tensor], Tensor]:
    from .encoders.peers import build_hf_encoder

    return build_hf_encoder(sam, side, "sdpa")


def _build_preset(preset: str) -> Callable:
    def build(sam, side: int) -> Callable[[Tensor], Tensor]:
        from .patch import BASAMConfig, apply_basam
        from .resolution import set_input_size

        set_input_size(sam, side)
        apply_basam(sam, BASAMConfig.preset(preset))
        return sam.image_encoder

    return build


BUILDERS: dict[str, Callable] = {
    "timm": _build_timm,
    "hf_sdpa": _build_hf,
    "vanilla": _build_preset("vanilla"),
    "paper": _build_preset("paper"),
}


def missing_package(peer: str) -> str | None:
    """Why ``peer`` cannot run here (its optional package is not installed), or None."""
    package = PEERS[peer].package
    if package and importlib.util.find_spec(package) is None:
        return f"skipped: package {package} is not installed"
    return None


# ---------------------------------------------------------------- clocks (CPU, CUDA)


class CpuClock:
    """Wall time (``perf_counter``) and the process's peak RSS (``VmHWM``, resettable)."""

    name = "cpu"
    memory_kind = "peak RSS"

    def sync(self) -> None:
        pass

    def time(self, fn: Callable[[], object]) -> tuple[float, object]:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    def current_bytes(self) -> int:
        import psutil

        return psutil.Process().memory_info().rss

    def reset_peak(self) -> None:
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (Linux >= 4.0)

    def peak_bytes(self) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CudaClock:
    """CUDA events around the forward and the caching allocator's peak
    (``max_memory_allocated``). ``cuda`` is the ``torch.cuda`` namespace (injected, so the code
    path is testable without a GPU)."""

    name = "cuda"
    memory_kind = "peak allocated"

    def __init__(self, cuda=torch.cuda) -> None:
        self.cuda = cuda

    def sync(self) -> None:
        self.cuda.synchronize()

    def time(self, fn: Callable[[], object]) -> tuple[float, object]:
        start = self.cuda.Event(enable_timing=True)
        end = self.cuda.Event(enable_timing=True)
        self.cuda.synchronize()
        start.record()
        out = fn()
        end.record()
        self.cuda.synchronize()
        return start.elapsed_time(end) / 1000.0, out  # ms -> s

    def current_bytes(self) -> int:
        return int(self.cuda.memory_allocated())

    def reset_peak(self) -> None:
        self.cuda.reset_peak_memory_stats()

    def peak_bytes(self) -> int:
        return int(self.cuda.max_memory_allocated())


CLOCKS: dict[str, Callable[[], CpuClock | CudaClock]] = {"cpu": CpuClock, "cuda": CudaClock}


def sdpa_kernels(fn: Callable[[], object]) -> tuple[list[str], object]:
    """Run ``fn`` once under the profiler; the SDPA kernels that ran (the ``aten`` ops
    ``_scaled_dot_product_*`` dispatched, e.g. ``flash_attention_for_cpu``,
    ``efficient_attention``, ``cudnn_attention``, ``attention_math``) with their call counts,
    and ``fn``'s result. None ran: ``[]``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = fn()
    counts: dict[str, int] = {}
    for event in prof.events():
        name = event.name
        if name.startswith("aten::_scaled_dot_product_"):
            short = name.removeprefix("aten::_scaled_dot_product_")
            counts[short] = counts.get(short, 0) + 1
    return [f"{k} x{v}" for k, v in sorted(counts.items())], out


# ---------------------------------------------------------------- the worker (child process)


def _reply(**message: object) -> None:
    print(PROTOCOL + json.dumps(message), flush=True)


def _error_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {(text[0] if text else '')[:240]}"


def _set_cap(cap_gb: float) -> None:
    """``RLIMIT_AS`` at ``cap_gb`` above what this process has mapped now (this torch build maps
    several GB of libraries it never touches)."""
    import resource

    import psutil

    limit = psutil.Process().memory_info().vms + int(cap_gb * GB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker_main(spec: dict, commands=None) -> int:
    """One peer at one side, driven by lines on stdin (``warm``, ``run``, ``done``)."""
    commands = commands if commands is not None else sys.stdin
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    peer, side, device = spec["peer"], int(spec["side"]), spec.get("device", "cpu")
    why = missing_package(peer)
    if why:
        _reply(status="skipped", note=why)
        return 0
    clock = CLOCKS[device]()
    if spec.get("cap_gb") and device == "cpu":
        _set_cap(float(spec["cap_gb"]))
    try:
        from .models import build_sam

        torch.manual_seed(int(spec.get("seed", 0)))
        sam = build_sam(spec["model"])
        forward = BUILDERS[PEERS[peer].build](sam, side)
        module = getattr(forward, "model", getattr(forward, "__self__", forward))
        if isinstance(module, torch.nn.Module):
            module.to(device)
        g = torch.Generator().manual_seed(int(spec.get("input_seed", 1)))
        x = torch.randn(1, 3, side, side, generator=g).to(device)
    except (RuntimeError, MemoryError, ValueError) as e:
        _reply(status="failed", note=f"build: {_error_line(e)}")
        return 0
    _reply(status="ready")
    base = clock.current_bytes()
    clock.reset_peak()
    for line in commands:
        command = line.strip()
        try:
            with torch.no_grad():
                if command == "warm":
                    t0 = time.perf_counter()
                    kernels, out = sdpa_kernels(lambda: forward(x))
                    clock.sync()
                    seconds = time.perf_counter() - t0
                    np.save(spec["output"], out.float().cpu().numpy())
                    del out
                    _reply(status="ok", seconds=seconds, kernels=kernels)
                elif command == "run":
                    seconds, out = clock.time(lambda: forward(x))
                    del out
                    _reply(status="ok", seconds=seconds)
                elif command == "done":
                    peak = clock.peak_bytes()
                    _reply(
                        status="ok",
                        memory_kind=clock.memory_kind,
                        base_mb=base / MB,
                        peak_mb=peak / MB,
                        forward_mb=max(0, peak - base) / MB,
                    )
                    return 0
                else:
                    _reply(status="failed", note=f"unknown command {command!r}")
        except (RuntimeError, MemoryError) as e:
            _reply(status="failed", note=_out_of_memory(e, spec))
            return 0
    return 0


def _out_of_memory(e: BaseException, spec: dict) -> str:
    line = _error_line(e)
    lowered = line.lower()
    if "memory" in lowered or "alloc" in lowered or isinstance(e, MemoryError):
        cap = spec.get("cap_gb")
        where = f"under a {cap:g} GB address-space cap" if cap else "out of memory"
        return f"out of memory {where}: {line}" if cap else f"{where}: {line}"
    return line


# ---------------------------------------------------------------- the parent


class Worker:
    """A worker process and a line reader on its stdout that never blocks past a timeout."""

    def __init__(self, spec: dict, log: Path) -> None:
        self.spec = spec
        self.log = log
        cmd = [sys.executable, "-m", "basam_lite.bench_peers", "--worker", json.dumps(spec)]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        with open(log, "w") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env
            )
        self.buffer = b""

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(command.encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def reply(self, timeout: float) -> dict:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(PROTOCOL):
                    return json.loads(text[len(PROTOCOL) :])
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                return {"status": "failed", "note": f"no reply within {timeout:.0f} s"}
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait()
                return {"status": "failed", "note": self._death()}
            self.buffer += chunk

    def _death(self) -> str:
        code = self.proc.returncode
        tail = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        last = tail[-1][:240] if tail else ""
        if code is not None and code < 0:
            return f"killed by signal {-code} (out of memory?) {last}".strip()
        return f"exit code {code}: {last}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class PeerResult:
    """One peer at one side."""

    peer: str
    side: int
    device: str
    status: str = "ok"
    runs: list[float] = field(default_factory=list)
    warm_seconds: float | None = None
    kernels: list[str] = field(default_factory=list)
    peak_mb: float | None = None
    forward_mb: float | None = None
    memory_kind: str = ""
    max_rel_diff: float | None = None
    reference: str = ""
    ratio: float | None = None
    note: str = ""
    output: Path | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    @property
    def spread(self) -> tuple[float, float] | None:
        return (min(self.runs), max(self.runs)) if self.runs else None

    @property
    def agrees(self) -> bool | None:
        if self.max_rel_diff is None:
            return None
        return self.max_rel_diff <= AGREE_TOL


def _fail(result: PeerResult, message: dict) -> None:
    result.status = "skipped" if message.get("status") == "skipped" else "failed"
    result.note = str(message.get("note", ""))


def bench_peers(
    model: str = "vit_b",
    sides: Sequence[int] = DEFAULT_SIDES,
    peers: Sequence[str] = tuple(PEERS),
    repeats: int = 3,
    device: str = "cpu",
    cap_gb: float | None = 12.0,
    threads: int | None = None,
    interleave_max: int = 1024,
    timeout: float = 3600.0,
    log: Callable[[str], None] = print,
) -> list[PeerResult]:
    """Every peer at every side (see the module's docstring); one :class:`PeerResult` each."""
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ValueError(f"unknown peers {unknown}: choose from {', '.join(PEERS)}")
    if device not in CLOCKS:
        raise ValueError(f"unknown device {device!r}: one of {', '.join(CLOCKS)}")
    results: list[PeerResult] = []
    with tempfile.TemporaryDirectory(prefix="basam-peers-") as tmp:
        for side in sides:
            specs = [
                {
                    "peer": p,
                    "side": side,
                    "model": model,
                    "device": device,
                    "cap_gb": cap_gb,
                    "threads": threads,
                    "output": str(Path(tmp) / f"{p}-{side}.npy"),
                }
                for p in peers
            ]
            together = side <= interleave_max
            groups = [specs] if together else [[s] for s in specs]
            how = "interleaved" if together else "one peer at a time"
            log(f"[peers] {model} at {side} px: {len(specs)} peers, {how}, {repeats} rounds")
            side_results: list[PeerResult] = []
            for group in groups:
                side_results += _run_group(group, repeats, device, Path(tmp), timeout, log)
            _compare(side_results)
            for r in side_results:
                if not together and r.status == "ok":
                    r.note = (r.note + "; " if r.note else "") + "timed alone (not interleaved)"
            results += side_results
    return results


def _run_group(
    specs: list[dict],
    repeats: int,
    device: str,
    tmp: Path,
    timeout: float,
    log: Callable[[str], None],
) -> list[PeerResult]:
    results = {s["peer"]: PeerResult(s["peer"], s["side"], device) for s in specs}
    workers: dict[str, Worker] = {}
    try:
        for s in specs:  # built one at a time: never two builds at once
            why = missing_package(s["peer"])
            if why:  # no process started for a peer whose package is missing
                _fail(results[s["peer"]], {"status": "skipped", "note": why})
                continue
            w = Worker(s, tmp / f"{s['peer']}-{s['side']}.log")
            message = w.reply(timeout)
            if message.get("status") != "ready":
                _fail(results[s["peer"]], message)
                w.stop()
                continue
            workers[s["peer"]] = w
        for name, w in list(workers.items()):
            w.send("warm")
            message = w.reply(timeout)
            if message.get("status") != "ok":
                _fail(results[name], message)
                w.stop()
                del workers[name]
                continue
            results[name].warm_seconds = message["seconds"]
            results[name].kernels = list(message.get("kernels", []))
            results[name].output = Path(w.spec["output"])
            log(f"[peers]   {name} warm: {message['seconds']:.2f} s")
        names = list(workers)
        for r in range(repeats):
            order = names[r % len(names) :] + names[: r % len(names)] if names else []
            for name in order:
                if name not in workers:
                    continue
                w = workers[name]
                w.send("run")
                message = w.reply(timeout)
                if message.get("status") != "ok":
                    _fail(results[name], message)
                    w.stop()
                    del workers[name]
                    continue
                results[name].runs.append(message["seconds"])
            log(f"[peers]   round {r + 1}/{repeats} done")
        for name, w in workers.items():
            w.send("done")
            message = w.reply(timeout)
            if message.get("status") == "ok":
                results[name].peak_mb = message["peak_mb"]
                results[name].forward_mb = message["forward_mb"]
                results[name].memory_kind = message["memory_kind"]
            w.proc.wait(timeout=60)
    finally:
        for w in workers.values():
            w.stop()
    return list(results.values())


def _compare(results: list[PeerResult]) -> None:
    """Each peer's output against the reference's (timm's when it ran, else the first peer that
    computes SAM's attention and ran), and each time against timm's."""
    ran = [r for r in results if r.status == "ok" and r.output is not None and r.output.exists()]
    same = [r for r in ran if PEERS[r.peer].same_function]
    ref = next((r for r in same if r.peer == REFERENCE), same[0] if same else None)
    timm = next((r for r in results if r.peer == REFERENCE and r.median), None)
    if ref is not None:
        y_ref = np.load(ref.output, allow_pickle=False)
        scale = float(np.abs(y_ref).max()) or 1.0
        for r in ran:
            y = np.load(r.output, allow_pickle=False)
            r.reference = ref.peer
            if y.shape != y_ref.shape:
                r.note = (r.note + "; " if r.note else "") + f"output shape {y.shape}"
                continue
            r.max_rel_diff = float(np.abs(y - y_ref).max()) / scale
    for r in results:
        if timm is not None and r.median:
            r.ratio = r.median / timm.median  # type: ignore[operator]


# ---------------------------------------------------------------- reporting


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def agreement_cell(r: PeerResult) -> str:
    if r.max_rel_diff is None:
        return "-"
    if r.peer == r.reference:
        return "reference"
    text = f"{r.max_rel_diff:.1e}"
    if not PEERS[r.peer].same_function:
        return f"{text} (differs by design)"
    return f"{text} ({'agrees' if r.agrees else 'DISAGREES'})"


def markdown_table(results: list[PeerResult]) -> str:
    """The peers table (one row per peer and side)."""
    if not results:
        return ""
    device = results[0].device
    memory = "peak allocated MB" if device == "cuda" else "peak RSS MB"
    lines = [
        f"| px | tokens | peer | status | median s | min-max s | / timm | {memory} "
        "| forward MB | SDPA kernel | max rel. diff | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        spread = r.spread
        tokens = (r.side // 16) ** 2
        lines.append(
            f"| {r.side} | {tokens} | {PEERS[r.peer].description} | {r.status} | "
            f"{_f(r.median)} | {'-' if spread is None else f'{spread[0]:.2f}-{spread[1]:.2f}'} "
            f"| {_f(r.ratio)} | {'-' if r.peak_mb is None else f'{r.peak_mb:,.0f}'} | "
            f"{'-' if r.forward_mb is None else f'{r.forward_mb:,.0f}'} | "
            f"{', '.join(r.kernels) or '-'} | {agreement_cell(r)} | {r.note} |"
        )
    return "\n".join(lines)


def _main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "--worker":
        return worker_main(json.loads(argv[1]))
    print("usage: python -m basam_lite bench --peers (this module runs its workers)")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
