"""How many torch threads a notebook kernel should use on a machine it may share.

PyTorch's CPU kernels split each operation across their threads and wait for all of them at the
end (an OpenMP fork-join). When another process holds one of the cores, every operation waits for
the thread that cannot run, a scheduler time slice at a time. Measured on this project's shared
2-core machine (``python scripts/measure_threads.py --scenes 4 --repeats 2``, 24 tiny-model
segmentations, notebook 01's section 2), with other people's jobs keeping the 1-minute load
average at 4 to 9: 5.7-14.5 s with one thread against 78-152 s with two, and with one more busy
process beside it 11.6-16.9 s against 359 s (one run). So a notebook uses only the cores nobody
else is running on: the cores minus the other runnable processes, at least one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

LOADAVG = Path("/proc/loadavg")


def runnable_processes(samples: int = 5, interval_s: float = 0.01) -> int | None:
    """Other processes ready to run now: the largest count of runnable scheduling entities in
    ``/proc/loadavg`` (its fourth field, ``running/total``) over a few samples, minus the one
    reading it. None where the file does not exist (not Linux)."""
    if not LOADAVG.is_file():
        return None
    most = 0
    for i in range(samples):
        running = int(LOADAVG.read_text().split()[3].split("/")[0])
        most = max(most, running)
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0, most - 1)


def quiet_threads(cores: int | None = None, busy: int | None = None) -> int:
    """Threads that do not wait on a busy core: ``cores - busy``, between 1 and ``cores``.

    ``cores``: the CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count``
    elsewhere); ``busy``: other runnable processes (:func:`runnable_processes`; 0 where unknown).
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, int(cores or 1))
    if busy is None:
        busy = runnable_processes() or 0
    return max(1, min(cores, cores - int(busy)))


def use_quiet_threads() -> int:
    """Set torch's thread count to :func:`quiet_threads` and return it, unless the user chose one
    (``OMP_NUM_THREADS`` or ``BASAM_THREADS`` set: then that number, and nothing is measured)."""
    import torch

    chosen = (os.environ.get("BASAM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "").strip()
    n = int(chosen) if chosen.isdigit() and int(chosen) > 0 else quiet_threads()
    torch.set_num_threads(n)
    return n
