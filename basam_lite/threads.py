"""How many torch threads the notebooks and the main job use on a machine they may share.

PyTorch's CPU kernels split each operation across their threads and wait for all of them at the
end (an OpenMP fork-join). When another process holds one of the cores, every operation waits for
the thread that cannot run, a scheduler time slice at a time: one busy process beside a two-thread
run on two cores makes it many times slower, whereas a one-thread run keeps a core of its own.

The policy (:func:`quiet_threads`): leave one core to the rest of the machine (a browser, another
job) and use no core another runnable process is on: ``min(cores - 1, cores - busy)`` threads, at
least one. On a 2-core machine that is one thread, idle or busy, so a run's time with one
competing CPU-bound process stays at its idle time; on a many-core machine the spare core costs
little. Measured by ``python scripts/measure_threads.py`` (fixed one thread, fixed two, two
with ``OMP_WAIT_POLICY=PASSIVE``, each in a fresh process, alone and beside one spinning
process, the load stated with each run). Re-deciding per run from the load (two threads when
idle, one when busy) would put the busy/idle ratio at t(1 thread)/t(2 threads), which that
script measures above 1.3 on the tiny model, and a process that starts mid-run would still
stall it.
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


SPARE_CORES = 1
"""Cores left to the rest of the machine (where it has more than one)."""


def quiet_threads(cores: int | None = None, busy: int | None = None) -> int:
    """Threads that do not wait on a busy core: ``min(cores - SPARE_CORES, cores - busy)``,
    between 1 and ``cores``.

    ``cores``: the CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count``
    elsewhere); ``busy``: other runnable processes (:func:`runnable_processes`; 0 where unknown).
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, int(cores or 1))
    if busy is None:
        busy = runnable_processes() or 0
    return max(1, min(cores - SPARE_CORES, cores - int(busy)))


def use_quiet_threads() -> int:
    """Set torch's thread count to :func:`quiet_threads` and return it, unless the user chose one
    (``OMP_NUM_THREADS`` or ``BASAM_THREADS`` set: then that number, and nothing is measured)."""
    import torch

    chosen = (os.environ.get("BASAM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "").strip()
    n = int(chosen) if chosen.isdigit() and int(chosen) > 0 else quiet_threads()
    torch.set_num_threads(n)
    return n
