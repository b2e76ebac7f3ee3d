"""Training precision: bf16 autocast only where the hardware does bfloat16 natively.

On a CPU without bf16 instructions, PyTorch emulates bf16 matrix products through fp32 with
conversions on every load and store, so bf16 autocast makes a training step several times
*slower* than fp32 (issue 17 measured 6.7x on an AVX2 CPU); with native bf16 (x86 AVX512-BF16 or
AMX-BF16, Arm FEAT_BF16) it makes it faster. :func:`resolve_precision` turns ``"auto"`` into
``"bf16"`` or ``"fp32"`` by what :func:`native_bf16` finds, and says why.

The environment variable ``BASAM_NATIVE_BF16`` overrides what the CPU flags say: ``0`` takes the
no-native-bf16 path (fp32), ``1`` the native one. It exists for runs whose kernels are capped
below the CPU's own instructions, e.g. ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``, as
``scripts/time_notebooks.py`` does to time a CPU without AVX-512 or native bf16.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Literal

import torch

from .errors import UserError

Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")

OVERRIDE_ENV = "BASAM_NATIVE_BF16"
"""``0`` or ``1``: whether to treat the CPU as computing bf16 natively, whatever its flags say."""

X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of x86 CPUs that compute bf16 dot products natively."""


def cpu_flags(cpuinfo: str) -> set[str]:
    """Every flag of a ``/proc/cpuinfo`` text (x86 ``flags`` and Arm ``Features`` lines)."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def native_bf16_from_cpuinfo(cpuinfo: str) -> tuple[bool, str]:
    """Whether a ``/proc/cpuinfo`` text shows native bf16, and the flags that say so."""
    flags = cpu_flags(cpuinfo)
    found = [f for f in (*X86_BF16_FLAGS, "bf16") if f in flags]
    if found:
        return True, f"the CPU has {', '.join(found)}"
    shown = "avx2" if "avx2" in flags else ("avx512f" if "avx512f" in flags else "")
    detail = f" (it has {shown}, which emulates bf16 through fp32)" if shown else ""
    return False, f"the CPU has no native bf16 ({'/'.join(X86_BF16_FLAGS)}, Arm bf16){detail}"


@functools.cache
def _cpu_native_bf16() -> tuple[bool, str]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        return native_bf16_from_cpuinfo(cpuinfo.read_text(errors="replace"))
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out == "1":
            return True, "the CPU has Arm FEAT_BF16"
        return False, "the CPU reports no Arm FEAT_BF16"
    return False, "this system does not say whether its CPU does bf16 natively"


def native_bf16(device: str = "cpu") -> tuple[bool, str]:
    """Whether ``device`` ("cpu" or "cuda[:N]") computes bf16 natively, and the reason."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} asked for, but CUDA is not available here")
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{torch.cuda.get_device_name(device)} supports bf16"
        return False, f"{torch.cuda.get_device_name(device)} has no native bf16"
    override = os.environ.get(OVERRIDE_ENV, "").strip()
    if override in ("0", "1"):
        state = "native" if override == "1" else "no native"
        return override == "1", f"{OVERRIDE_ENV}={override} says the CPU has {state} bf16"
    if override:
        raise UserError(
            f"{OVERRIDE_ENV} must be 0 or 1 (or unset, to read the CPU flags), got {override!r}"
        )
    return _cpu_native_bf16()


def resolve_precision(requested: str, device: str = "cpu") -> tuple[str, str]:
    """``("bf16" | "fp32", why)`` for a requested precision (``"auto"`` decided here)."""
    if requested not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested, "asked for explicitly"
    native, why = native_bf16(device)
    return ("bf16", f"auto: {why}") if native else ("fp32", f"auto: {why}")
