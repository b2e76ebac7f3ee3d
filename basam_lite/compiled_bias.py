r"""The paper preset's chunk bias written in one compiled pass (opt-in).

On the chunked path (:func:`basam_lite.attention._chunked`) a masked chunk's bias rows are

.. math::
    B_{(t,c),(r',c')} = R^h_{(t,c)}[r'] + R^w_{(t,c)}[c'] - m_h\, T[c,\ \mathrm{rows} -
        \mathrm{last} + t + r',\ c']

(queries in reversed grid-row order, :func:`basam_lite.attention._reversed_query_bias`). Eager
PyTorch writes them in two passes over the chunk, a broadcast add and then an ``addcmul_`` that
reads and writes every element again; the vanilla preset needs only the first. Here the three
terms go into the chunk's buffer in one pass, with a loop that ``torch.compile`` (Inductor; a C++
compiler on the CPU) generates from the formula, so the paper preset costs what the vanilla
path costs (``docs/fused-bias-probe.md``; the ``(b+)`` rows of ``docs/benchmark.md``).

Off by default, because the first call compiles: about 2 to 4 s on a 2-core CPU (once per
process and per kind of chunk; Inductor keeps its generated code in its own cache directory, by
default under the system's temporary folder), while one ViT-B forward saves about 0.1 s at
1024 px and 2 s at 2048 px. Turn it on for long runs::

    BASAM_COMPILED_BIAS=1 python -m basam_lite ...

or in code, :func:`use_compiled_bias` (a context manager) or :func:`set_compiled_bias`. It applies
without autograd, on the CPU, outside any enclosing ``torch.compile``; everywhere else the eager
build runs. Where compiling fails (no C++ compiler, an Inductor error) it warns once and the eager
build runs from then on. The two builds agree to fp32 rounding (tests/test_compiled_bias.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from .errors import UserError

ENV = "BASAM_COMPILED_BIAS"
_ON = ("1", "true", "on", "yes")
_OFF = ("", "0", "false", "off", "no")

_lock = threading.Lock()
_override: bool | None = None
_failure: str | None = None
_kernel: Callable[..., None] | None = None
_signatures: set[tuple] = set()
MAX_SIGNATURES = 4
"""Distinct kinds of chunk (rank, dtype, size-1 axes) compiled per process, kept under
``torch._dynamo``'s recompile limit so that it never falls back to running the formula eagerly
(which would allocate two chunk-sized temporaries); beyond it the eager build runs."""


def _from_env() -> bool:
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in _OFF:
        return False
    if raw in _ON:
        return True
    raise UserError(
        f"{ENV}={os.environ[ENV]!r} is not understood: set it to 1 (compile the paper preset's "
        "bias rows) or 0 (the eager build, the default)"
    )


def enabled() -> bool:
    """Whether the compiled build is asked for: :func:`set_compiled_bias`'s choice, else the
    ``BASAM_COMPILED_BIAS`` environment variable (unset: off)."""
    return _from_env() if _override is None else _override


def set_compiled_bias(on: bool | None) -> None:
    """Ask for the compiled build (True), the eager one (False), or what ``BASAM_COMPILED_BIAS``
    says (None)."""
    global _override
    _override = on


@contextlib.contextmanager
def use_compiled_bias(on: bool = True) -> Iterator[None]:
    """Within the block, the compiled build on (or off); the earlier choice afterwards."""
    global _override
    before = _override
    _override = on
    try:
        yield
    finally:
        _override = before


def status() -> str:
    """``"off"``, ``"on"``, or ``"unavailable: REASON"`` after a failed compile."""
    if _failure is not None:
        return f"unavailable: {_failure}"
    return "on" if enabled() else "off"


def compiled_kinds() -> int:
    """How many kinds of chunk this process has compiled the kernel for so far."""
    return len(_signatures)


def _fill(out: Tensor, rel_h: Tensor, rel_w: Tensor, neg: Tensor, dist: Tensor) -> None:
    # B = R^h[.., r', 1] + R^w[.., 1, c'] + (-m_h) T[.., r', c'], each element written once
    out.copy_(rel_h + rel_w + neg * dist)


def _compiled() -> Callable[..., None]:
    global _kernel
    if _kernel is None:
        _kernel = torch.compile(_fill, dynamic=True, fullgraph=True)  # one kernel for all sizes
    return _kernel


@contextlib.contextmanager
def _quiet_compiler_logs() -> Iterator[None]:
    """Inductor's first import logs that no CUDA runtime was found on a CPU machine: not news."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _signature(*tensors: Tensor) -> tuple:
    return tuple((t.dtype, t.dim(), tuple(s == 1 for s in t.shape)) for t in tensors)


def write_rows(out: Tensor, rel_h: Tensor, rel_w: Tensor, neg: Tensor, dist: Tensor) -> bool:
    r"""Write ``rel_h + rel_w + neg * dist`` into ``out`` in one compiled pass.

    Args:
        out: ``[B, H, L, cols, rows, cols]`` the chunk's bias buffer (a view of it).
        rel_h: ``[B, H, L, cols, rows, 1]`` the chunk's :math:`R^h` rows.
        rel_w: ``[B, H, L, cols, 1, cols]`` the chunk's :math:`R^w` rows.
        neg: ``[1, H, 1, 1, 1, 1]`` :math:`-m_h` (times the distance unit).
        dist: ``[L, cols, rows, cols]`` the distances (a strided view of the small table).

    Returns False, with nothing written, where the compiled build is off, does not apply (autograd,
    not the CPU, inside another ``torch.compile``) or is unavailable: the caller then builds the
    rows eagerly.
    """
    global _failure
    if not enabled() or _failure is not None:
        return False
    tensors = (out, rel_h, rel_w, neg, dist)
    if any(t.device.type != "cpu" for t in tensors) or torch.compiler.is_compiling():
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    sig = _signature(*tensors)
    try:
        if sig in _signatures:
            _call(tensors)
        else:
            with _lock:  # a new kind of chunk compiles: once, whichever thread comes first
                if sig not in _signatures and len(_signatures) >= MAX_SIGNATURES:
                    return False
                _call(tensors)
                _signatures.add(sig)
    except Exception as exc:  # no C++ compiler, an Inductor error: eager from now on
        text = str(exc).strip().splitlines()
        _failure = f"{type(exc).__name__}: {text[0][:160] if text else ''}".rstrip(": ")
        warnings.warn(
            f"basam_lite: the compiled bias build is unavailable ({_failure}); the eager "
            "build runs instead (same results)",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


def _call(tensors: tuple[Tensor, ...]) -> None:
    with _quiet_compiler_logs(), torch.no_grad():
        _compiled()(*tensors)


def forget_failure() -> None:
    """Try compiling again after a failure (for tests, or once a compiler is installed)."""
    global _failure
    _failure = None
