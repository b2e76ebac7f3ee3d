r"""The paper preset's chunk bias written in one compiled pass (opt-in).

On the chunked path (:func:`basam_lite.attention._chunked`) a masked chunk's bias rows are

.. math::
    B_{(t,c),(r',c')} = R^h_{(t,c)}[r'] + R^w_{(t,c)}[c'] - m_h\, T[c,\ \mathrm{rows} -
        \mathrm{last} + t + r',\ c']

(queries in reversed grid-row order, :func:`basam_lite.attention._reversed_query_bias`). Eager
PyTorch writes them in two passes over the chunk, a broadcast add and then an ``addcmul_`` that
reads and writes every element again; the vanilla preset needs only the first. Here the three
terms go into the chunk's buffer in one pass, with a loop that ``torch.compile`` (Inductor; a C++
compiler on the CPU) generates from the formula, so the paper preset's attention costs what the
vanilla path's costs (``docs/fused-bias-probe.md``; the ``(b+)`` rows of ``docs/benchmark.md``).

Off by default, because the first call compiles (seconds on a 2-core CPU: the ``(b+)`` rows'
notes in ``docs/benchmark.md``; Inductor keeps the generated code in its own cache directory,
by default under the system's temporary folder), which pays only over many forwards at large
sizes. Turn it on for long runs::

    BASAM_COMPILED_BIAS=1 python -m basam_lite ...

or in code with :func:`use_compiled_bias` (a context manager) or :func:`set_compiled_bias`; the
choice is process-wide, like ``torch.backends`` flags. It applies without autograd, on the CPU,
outside any enclosing ``torch.compile``; everywhere else the eager build runs. One kernel serves
every size (``dynamic=True``, sizes not merged by value), so a process compiles it once per dtype
and pattern of size-1 axes. Where compiling fails (no C++ compiler, an Inductor error) it warns
once and the eager build runs from then on; past ``torch._dynamo``'s recompile limit, new kinds of
chunk run eagerly (one warning). In fp32 the two builds agree to rounding (tests/
test_compiled_bias.py); in bf16 or fp16 the compiled build rounds once where the eager one
rounds after each pass.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from .errors import UserError

ENV = "BASAM_COMPILED_BIAS"
_ON = ("1", "true", "on", "yes")
_OFF = ("", "0", "false", "off", "no")

_override: bool | None = None
_failure: str | None = None
_warned_limit = False
_kernel: Callable[..., None] | None = None


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


def _fill(out: Tensor, rel_h: Tensor, rel_w: Tensor, neg: Tensor, dist: Tensor) -> None:
    # B = R^h[.., r', 1] + R^w[.., 1, c'] + (-m_h) T[.., r', c'], each element written once
    out.copy_(rel_h + rel_w + neg * dist)


def _compiled() -> Callable[..., None]:
    global _kernel
    if _kernel is None:
        # Inductor's first import logs that no CUDA runtime was found on a CPU machine: not news.
        log = logging.getLogger("torch.utils.cpp_extension")
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            import torch.utils.cpp_extension  # it logs that line when imported
        finally:
            log.setLevel(level)
        _kernel = torch.compile(_fill, dynamic=True, fullgraph=True)  # one kernel for all sizes
    return _kernel


def _sizes_apart() -> contextlib.AbstractContextManager:
    """Dynamo's shape config with equal sizes kept as separate symbols (a private setting:
    nothing where this torch lacks it)."""
    try:
        from torch.fx.experimental import _config

        return _config.patch(use_duck_shape=False)
    except (ImportError, AttributeError):
        return contextlib.nullcontext()


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
    global _failure, _warned_limit
    if torch.compiler.is_compiling():  # an enclosing torch.compile traces the eager build
        return False
    if not enabled() or _failure is not None:
        return False
    tensors = (out, rel_h, rel_w, neg, dist)
    if any(t.device.type != "cpu" for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    try:
        # Every size its own symbol: no guard that, say, rows == cols, which a later grid would
        # break and recompile for (dynamo's own compile lock serialises first calls).
        with _sizes_apart(), torch.no_grad():
            _compiled()(*tensors)
    except Exception as exc:
        from torch._dynamo.exc import FailOnRecompileLimitHit

        if isinstance(exc, FailOnRecompileLimitHit):  # this kind of chunk: eager
            if not _warned_limit:
                _warned_limit = True
                warnings.warn(
                    "compiled bias build: torch._dynamo's recompile limit is reached; new "
                    "kinds of chunk get the eager bias build",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return False
        # no C++ compiler, an Inductor error: eager from now on
        text = str(exc).strip().splitlines()
        _failure = f"{type(exc).__name__}: {text[0][:160] if text else ''}".rstrip(": ")
        warnings.warn(
            f"compiled bias build unavailable ({_failure}); the eager build runs instead",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


def forget_failure() -> None:
    """Try compiling again after a failure (for tests, or once a compiler is installed)."""
    global _failure
    _failure = None
