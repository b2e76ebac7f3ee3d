"""Measure how long each notebook takes, with and without the CPU's AVX-512 and native bf16.

Each notebook is executed in memory (the stored file is only read), in a fresh kernel, the way
``scripts/store_notebook.py`` executes it, once per mode and one mode after the other:

- ``native``: the machine's own instructions;
- ``avx2``: the kernel process forced onto AVX2-only kernels (``ATEN_CPU_CAPABILITY=avx2``,
  ``ONEDNN_MAX_CPU_ISA=AVX2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``) and onto basam_lite's
  no-native-bf16 path (``BASAM_NATIVE_BF16=0``), as a CPU without AVX-512 or native bf16 runs
  it. A cell appended to the in-memory copy checks, inside the kernel, that
  ``torch.backends.cpu.get_cpu_capability()`` reports AVX2 and records the precision "auto"
  picks there.

The kernel imports this checkout's basam_lite (its root is put first on PYTHONPATH). The wall
time of each run, the kernel's CPU time, the load average before and after, the CPU and its
flags go to ``notebooks/run_times.json``, written atomically after every run: a run of every
notebook starts the file afresh, a run with ``--only`` adds to it (same machine only). Measure on
a quiet machine:

    python scripts/time_notebooks.py                       # every notebook, both modes
    python scripts/time_notebooks.py --only 03_scaling_factor --modes native
    python scripts/time_notebooks.py --write-lines         # each notebook's "Run time" line
    python scripts/time_notebooks.py --check               # lines match the file, budgets hold

``--under-load`` measures, side by side in one run, each notebook (``native`` mode) and the
README's main job (``python -m basam_lite sweep``, into a temporary ``--out``; name it
``main-job`` in ``--only``) first alone, then beside one competing CPU-bound process (a Python
process spinning on one core, started before the run and stopped after it, by its pid). Both
times, their ratio (the target: at most ``basam_lite.run_times.LOAD_RATIO``), the load average
and the other runnable processes seen before each run go to the record's ``under_load`` section
(a run of everything starts that section afresh; ``--only`` adds to it). ``--check`` then also
checks the ratios:

    python scripts/time_notebooks.py --under-load                   # every notebook + main job
    python scripts/time_notebooks.py --under-load --only 01_quickstart
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from store_notebook import execute  # noqa: E402

from basam_lite import run_times as rt  # noqa: E402
from basam_lite.errors import UserError  # noqa: E402
from basam_lite.outputs import output_lock, write_text_atomic  # noqa: E402
from basam_lite.precision import cpu_flags  # noqa: E402
from basam_lite.threads import runnable_processes  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
PROBE_TAG = "RUN_TIMES_PROBE "
PROBE = (
    "import json as _json, torch as _torch\n"
    "from basam_lite.precision import resolve_precision as _resolve\n"
    "_p, _why = _resolve('auto')\n"
    "_seen = {'cpu_capability': _torch.backends.cpu.get_cpu_capability(),\n"
    "         'torch_threads': _torch.get_num_threads(),\n"
    "         'auto_precision': _p, 'precision_reason': _why}\n"
    f"print({PROBE_TAG!r} + _json.dumps(_seen))\n"
)


def machine() -> dict:
    """The CPU model, the flags that decide the kernels, the core count, torch's version."""
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text(errors="replace") if cpuinfo.is_file() else ""
    model = next(
        (ln.partition(":")[2].strip() for ln in text.splitlines() if ln.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    flags = cpu_flags(text)
    return {
        "cpu_model": model,
        "cores": os.cpu_count() or 1,
        "flags": {f: f in flags for f in FLAGS},
        "platform": f"{platform.machine()} {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),  # a kernel's default; each run records its own
    }


@contextlib.contextmanager
def environment(mode: str) -> Iterator[dict[str, str]]:
    """This process's environment with ``mode``'s variables set (a kernel started inside
    inherits it), restored afterwards."""
    changes = {
        **rt.MODES[mode],
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    saved = {k: os.environ.get(k) for k in changes}
    for k in rt.MODES["avx2"]:  # a native run must not inherit a cap from the caller
        saved.setdefault(k, os.environ.get(k))
        if mode == "native":
            os.environ.pop(k, None)
    os.environ.update(changes)
    try:
        yield dict(os.environ)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def parse_probe(text: str) -> dict:
    for line in text.splitlines():
        if line.startswith(PROBE_TAG):
            return json.loads(line[len(PROBE_TAG) :])
    raise UserError(f"the probe printed no {PROBE_TAG.strip()} line: {text[-300:]!r}")


def check_probe(mode: str, probe: dict) -> None:
    expected = rt.EXPECTED_CAPABILITY.get(mode)
    if expected and probe["cpu_capability"] != expected:
        raise UserError(
            f"mode {mode}: torch reports CPU capability {probe['cpu_capability']} under "
            f"{' '.join(f'{k}={v}' for k, v in rt.MODES[mode].items())}, not {expected}; "
            f"this CPU cannot be timed in that mode, leave it out with --modes"
        )
    if mode == "avx2" and probe["auto_precision"] != "fp32":
        raise UserError(f"mode avx2: precision 'auto' picked {probe['auto_precision']}, not fp32")


def probe(mode: str) -> dict:
    """What a fresh Python process under ``mode``'s environment reports (capability, threads,
    the precision "auto" picks)."""
    with environment(mode) as env:
        out = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=False
        )
    if out.returncode:
        raise UserError(f"mode {mode}: the probe failed: {out.stderr.strip()[-300:]}")
    return parse_probe(out.stdout)


def time_one(path: Path, mode: str, timeout: int) -> dict:
    """Execute ``path`` (in memory) under ``mode``; its wall seconds and what the kernel saw."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    with environment(mode):
        before = os.getloadavg()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        execute(nb, path, timeout)
        seconds = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = os.getloadavg()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    seen = parse_probe(text)
    check_probe(mode, seen)
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 2),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_before": [round(x, 2) for x in before],
        "load_after": [round(x, 2) for x in after],
        **{k: seen[k] for k in ("cpu_capability", "torch_threads", "auto_precision")},
    }


class RunFailed(Exception):
    """A timed run (the main job) did not finish; its message is one line."""


@contextlib.contextmanager
def competitor() -> Iterator[int]:
    """One competing CPU-bound process (``python -c rt.COMPETITOR``) for the duration; its pid.
    Stopped by its own pid, however the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", rt.COMPETITOR])
    try:
        time.sleep(1.0)  # running, and seen by the scheduler, before the timed run starts
        if proc.poll() is not None:
            raise UserError(f"the competing process exited at once (status {proc.returncode})")
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def time_main_job(timeout: int) -> dict:
    """Run the README's main job into a temporary folder (its working directory too, so nothing
    of the user's is written); its wall seconds, CPU seconds and the load before and after."""
    with tempfile.TemporaryDirectory(prefix="basam-main-job-") as folder:
        command = [sys.executable, *rt.MAIN_JOB_ARGS, "--out", str(Path(folder) / "sweep.csv")]
        with environment("native") as env:
            seen = runnable_processes()
            before = os.getloadavg()
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            try:
                out = subprocess.run(
                    command,
                    env=env,
                    cwd=folder,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise RunFailed(f"the main job ran past {timeout} s") from None
            seconds = time.perf_counter() - start
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            after = os.getloadavg()
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RunFailed(f"the main job exited with status {out.returncode} ({last})")
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 2),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_before": [round(x, 2) for x in before],
        "load_after": [round(x, 2) for x in after],
        "runnable_before": seen,
        "command": "python " + " ".join(rt.MAIN_JOB_ARGS) + " --out runs/sweep.csv",
    }


def notebooks(folder: Path, only: list[str] | None) -> dict[str, Path]:
    found = {p.stem: p for p in sorted(folder.glob("*.ipynb"))}
    if not found:
        raise UserError(f"{folder}: no notebooks (*.ipynb) there; pass the notebooks' folder")
    if not only:
        return found
    names = [Path(n).stem for n in only]
    unknown = [n for n in names if n not in found]
    if unknown:
        raise UserError(
            f"no notebook {', '.join(unknown)} in {folder}; choose from {', '.join(found)}"
        )
    return {n: found[n] for n in names}


def new_record(here: dict) -> dict:
    return {
        "schema": rt.SCHEMA,
        "date": None,
        "command": None,
        "machine": here,
        "modes": {},
        "notebooks": {},
    }


def starting_record(out: Path, here: dict) -> dict:
    """The record in ``out`` to add to (measured on this machine), or a new one."""
    if not out.exists():
        return new_record(here)
    record = rt.load(out)
    keys = ("cpu_model", "cores", "flags")
    if any(record["machine"].get(k) != here[k] for k in keys):
        raise UserError(
            f"{out} was measured on another machine ({rt.machine_phrase(record['machine'])}); "
            f"remove it or write elsewhere with --out"
        )
    return record


def measure(args: argparse.Namespace) -> int:
    paths = notebooks(args.dir, args.only)
    here = machine()
    # --only adds to the record in --out; a run of every notebook starts a new one.
    record = starting_record(args.out, here) if args.only else new_record(here)
    for mode in args.modes:  # fail fast, before the first long run
        seen = probe(mode)
        check_probe(mode, seen)
        print(
            f"mode {mode}: capability {seen['cpu_capability']}, {seen['torch_threads']} "
            f"torch threads, precision auto -> {seen['auto_precision']} "
            f"({seen['precision_reason']})",
            flush=True,
        )
    record["command"] = "python scripts/time_notebooks.py " + " ".join(sys.argv[1:])
    with output_lock(args.out):
        for name, path in paths.items():
            for mode in args.modes:
                try:
                    run = time_one(path, mode, args.timeout)
                except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
                    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # no colour codes
                    first = text.splitlines()[-1] if text else type(e).__name__
                    print(
                        f"error: {name} {mode}: the notebook failed ({first}); nothing of this "
                        f"run was recorded",
                        file=sys.stderr,
                    )
                    return 1
                record["machine"] = here
                record["modes"][mode] = rt.MODES[mode]
                record["notebooks"].setdefault(name, {})[mode] = run
                record["date"] = run["date"]
                record["notebooks"] = dict(sorted(record["notebooks"].items()))
                write_text_atomic(args.out, json.dumps(rt.validate(record), indent=1) + "\n")
                print(
                    f"{name} {mode}: {run['seconds']:.1f} s wall, {run['cpu_seconds']:.1f} s "
                    f"kernel CPU, load {run['load_before'][0]:.2f} -> "
                    f"{run['load_after'][0]:.2f}, {run['cpu_capability']}",
                    flush=True,
                )
    print(f"wrote {args.out}")
    return 0


def load_targets(args: argparse.Namespace) -> dict[str, Path | None]:
    """The notebooks (and the main job, as ``None``) an ``--under-load`` run measures."""
    if not args.only:
        return {**notebooks(args.dir, None), rt.MAIN_JOB: None}
    names = [n for n in args.only if n != rt.MAIN_JOB]
    found = notebooks(args.dir, names) if names else {}
    return {n: (None if n == rt.MAIN_JOB else found[Path(n).stem]) for n in args.only}


def time_loaded(name: str, path: Path | None, args: argparse.Namespace) -> dict:
    """One run of ``name`` (a notebook in native mode, or the main job when ``path`` is None)."""
    if path is None:
        return time_main_job(args.main_job_timeout)
    seen = runnable_processes()
    return {**time_one(path, "native", args.timeout), "runnable_before": seen}


def measure_under_load(args: argparse.Namespace) -> int:
    targets = load_targets(args)
    here = machine()
    record = starting_record(args.out, here)
    section = record.get("under_load") if args.only else None
    section = section or {"runs": {}}
    section.update(
        command="python scripts/time_notebooks.py " + " ".join(sys.argv[1:]),
        competitor=f"python -c {rt.COMPETITOR!r} (one process, started 1 s before the run)",
    )
    with output_lock(args.out):
        for name, path in targets.items():
            pair = {}
            for condition in rt.CONDITIONS:
                try:
                    with competitor() if condition == "competing" else contextlib.nullcontext():
                        pair[condition] = time_loaded(name, path, args)
                except (CellExecutionError, CellTimeoutError, DeadKernelError, RunFailed) as e:
                    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
                    first = text.splitlines()[-1] if text else type(e).__name__
                    print(
                        f"error: {name} {condition}: {first}; nothing of this run was recorded",
                        file=sys.stderr,
                    )
                    return 1
            pair["ratio"] = rt.load_ratio(pair["idle"]["seconds"], pair["competing"]["seconds"])
            section["runs"][name] = pair
            section["runs"] = dict(sorted(section["runs"].items()))
            section["date"] = pair["competing"]["date"]
            record["machine"] = here
            record["under_load"] = section
            write_text_atomic(args.out, json.dumps(rt.validate(record), indent=1) + "\n")
            idle, busy = pair["idle"], pair["competing"]
            print(
                f"{name}: {idle['seconds']:.1f} s idle (load {idle['load_before'][0]:.2f}, "
                f"{idle['runnable_before']} other runnable), {busy['seconds']:.1f} s beside "
                f"one busy process (load {busy['load_before'][0]:.2f}, "
                f"{busy['runnable_before']} other runnable): {pair['ratio']:.2f}x",
                flush=True,
            )
    phrase = rt.main_job_phrase(record)
    if phrase:
        print(f"the README's main-job sentence: {phrase}")
    print(f"wrote {args.out}")
    return 0


def check(args: argparse.Namespace) -> int:
    record = rt.load(args.out)
    paths = notebooks(args.dir, args.only)
    bad = [f"{n}: not measured" for n in paths if n not in record["notebooks"]]
    for name, path in paths.items():
        if name not in record["notebooks"]:
            continue
        stated = rt.notebook_line(path.read_text(encoding="utf-8"), path)
        if stated != rt.run_time_line(record, name):
            bad.append(
                f"{name}: its line differs from {args.out} (run --write-lines):\n"
                f"  stated:   {stated}\n  measured: {rt.run_time_line(record, name)}"
            )
    bad += rt.over_budget(
        {**record, "notebooks": {n: r for n, r in record["notebooks"].items() if n in paths}}
    )
    loaded = record.get("under_load", {}).get("runs", {})
    bad += rt.over_ratio(
        {
            "under_load": {
                "runs": {
                    n: r
                    for n, r in loaded.items()
                    if n in paths or (n == rt.MAIN_JOB and not args.only)
                }
            }
        }
    )
    print("\n".join(bad) if bad else f"{len(paths)} notebook(s) agree with {args.out}")
    return 1 if bad else 0


def write_lines(args: argparse.Namespace) -> int:
    record = rt.load(args.out)
    paths = notebooks(args.dir, args.only)
    edits = {}
    for name, path in paths.items():  # every line first, so bad input writes nothing
        text = path.read_text(encoding="utf-8")
        new = rt.replace_line(text, rt.run_time_line(record, name), path)
        if new != text:
            edits[path] = new
    for path, text in edits.items():
        write_text_atomic(path, text)
        print(f"{path}: run-time line updated")
    print(f"{len(edits)} of {len(paths)} notebook line(s) changed")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="notebook stems (default: all)")
    ap.add_argument("--modes", nargs="+", default=list(rt.MODES), help="native and/or avx2")
    ap.add_argument("--out", type=Path, default=rt.DEFAULT_PATH, help="the run-times JSON")
    ap.add_argument("--dir", type=Path, default=ROOT / "notebooks", help="the notebooks' folder")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    ap.add_argument(
        "--main-job-timeout",
        type=int,
        default=3600,
        help="with --under-load: seconds the main job may take (default 3600)",
    )
    what = ap.add_mutually_exclusive_group()
    what.add_argument(
        "--check",
        action="store_true",
        help="compare each notebook's run-time line with --out; check budgets",
    )
    what.add_argument(
        "--write-lines",
        action="store_true",
        help="set each notebook's run-time line from --out (no execution)",
    )
    what.add_argument(
        "--under-load",
        action="store_true",
        help="time each notebook and the main job alone and beside one busy "
        "process (native mode; --only may name main-job)",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        unknown = [m for m in args.modes if m not in rt.MODES]
        if unknown or len(set(args.modes)) != len(args.modes):
            raise UserError(
                f"--modes takes distinct names among {', '.join(rt.MODES)}, got "
                f"{' '.join(args.modes)}"
            )
        if args.timeout <= 0:
            raise UserError(f"--timeout must be a positive number of seconds, got {args.timeout}")
        if args.main_job_timeout <= 0:
            raise UserError(
                f"--main-job-timeout must be a positive number of seconds, got "
                f"{args.main_job_timeout}"
            )
        if not args.dir.is_dir():
            raise UserError(f"--dir {args.dir}: no such folder")
        if not args.out.parent.is_dir():
            raise UserError(f"--out {args.out}: its folder does not exist")
        if args.check:
            return check(args)
        if args.write_lines:
            return write_lines(args)
        if args.under_load:
            return measure_under_load(args)
        return measure(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
