"""Where and with what a result was computed: the machine and the library versions.

The one place that asks the platform: the model cards (:func:`machine`), the sweep's metadata
(:func:`versions`, :func:`platform_name`) and the benchmark report (:func:`load_line`) all
call these.
"""

from __future__ import annotations

import contextlib
import os
import platform
from importlib.metadata import PackageNotFoundError, version

import torch


def machine() -> str:
    """CPU, OS, Python and torch in one line (the model cards' timing line)."""
    return (
        f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} logical CPUs, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    ).replace("  ", " ")


def platform_name() -> str:
    """Architecture and OS, e.g. ``x86_64 Linux``."""
    return f"{platform.machine()} {platform.system()}"


def versions() -> dict[str, str]:
    """Versions of Python, basam_lite and the libraries a result depends on."""
    import numpy as np
    import pandas as pd

    from . import __version__

    found = {"python": platform.python_version(), "basam_lite": __version__}
    for name, mod in (("torch", torch), ("numpy", np), ("pandas", pd)):
        found[name] = mod.__version__
    found["segment_anything"] = "1.0"  # its only release; the package has no __version__
    for dist in ("pysodmetrics", "segment_anything", "segment-anything"):
        with contextlib.suppress(PackageNotFoundError):
            found[dist.replace("-", "_")] = version(dist)
    return found


def load_line() -> str:
    """torch version and threads, CPU count and the load average now (timings depend on it)."""
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
