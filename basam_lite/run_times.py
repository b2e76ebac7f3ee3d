"""The notebooks' run times: the measurement file and the "Run time" line each notebook states.

``scripts/time_notebooks.py`` executes every notebook in a fresh kernel, once per mode
(:data:`MODES`): ``native`` (the machine's own instructions) and ``avx2`` (the kernel process
forced onto AVX2-only kernels and onto the no-native-bf16 path, as a CPU without AVX-512 or
native bf16 runs it), and records the wall time of each run in ``notebooks/run_times.json``.
This module reads that file (:func:`load`), renders the line a notebook states near its top
from it (:func:`run_time_line`), finds and replaces that one line in a stored notebook without
touching any other byte (:func:`replace_line`), and renders the teacher's guide table
(:func:`guide_table`).

``--under-load`` measures, side by side in one run, each notebook (``native`` mode) and the
README's main job (:data:`MAIN_JOB_ARGS`, into a temporary folder) alone and beside one competing
CPU-bound process (:data:`COMPETITOR`, started and stopped by the script), and records both times
and their ratio in the record's ``under_load`` section; the issue's target is a ratio of at most
:data:`LOAD_RATIO`. A notebook's line then states both times.

A record (``run_times.json``)::

    {"schema": 1, "date": ISO-8601, "command": str,
     "machine": {"cpu_model": str, "cores": int, "flags": {"avx2": bool, "avx512f": bool,
                 "avx512_bf16": bool, "amx_bf16": bool, "amx_tile": bool}, ...},
     "modes": {mode: {ENV: value}},
     "notebooks": {stem: {mode: {"seconds": float, "cpu_seconds": float, "date": ISO-8601,
                                 "load_before": [1, 5, 15 min], "load_after": [...],
                                 "cpu_capability": str, "torch_threads": int,
                                 "auto_precision": "bf16" | "fp32"}}},
     "under_load": {"date": ISO-8601, "command": str, "competitor": str,   # optional
                    "runs": {stem or "main-job": {"idle": RUN, "competing": RUN,
                                                  "ratio": competing / idle (3 decimals)}}}}

where RUN has at least ``seconds``, ``date`` and ``load_before`` (a notebook's also what its
kernel saw, as above; each also ``runnable_before``, the other runnable processes seen just
before it started).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import UserError
from .precision import OVERRIDE_ENV

SCHEMA = 1
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "notebooks" / "run_times.json"
"""Where the measurement lives, beside the notebooks."""

AVX2_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own vectorised kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (convolutions, bf16 matrix products)
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL's BLAS
    OVERRIDE_ENV: "0",  # basam_lite's precision choice: the no-native-bf16 path
}
MODES: dict[str, dict[str, str]] = {"native": {}, "avx2": AVX2_ENV}
"""Mode -> the environment its kernel runs under (on top of this process's)."""

EXPECTED_CAPABILITY = {"avx2": "AVX2"}
"""What ``torch.backends.cpu.get_cpu_capability()`` must report inside a mode's kernel."""

BUDGET_S = 180.0
BUDGETS: dict[str, float] = {"05_attention_maps": 120.0}
"""Wall seconds a notebook may take in every mode (issue 17: 3 minutes, notebook 05 two)."""

MAIN_JOB = "main-job"
"""The main job's name in the ``under_load`` section."""
MAIN_JOB_ARGS = ("-m", "basam_lite", "sweep")
"""The README's main job (``python -m basam_lite sweep --out runs/sweep.csv``) without its
``--out``: the script gives it a temporary one, so no file of the user's is touched."""
COMPETITOR = "while True: pass"
"""The competing CPU-bound process: ``python -c COMPETITOR``, one core's worth of work."""
LOAD_RATIO = 1.3
"""The most a run may take beside one competing process, as a multiple of its idle time."""
CONDITIONS = ("idle", "competing")

LINE_START = "**Run time:** "
STEP_S = 5


def budget(name: str) -> float:
    return BUDGETS.get(name, BUDGET_S)


def round_up(seconds: float, step: int = STEP_S) -> int:
    """``seconds`` rounded up to a multiple of ``step`` (at least ``step``)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise UserError(f"a run time must be a finite number of seconds >= 0, got {seconds!r}")
    return max(step, math.ceil(seconds / step - 1e-9) * step)


def format_duration(seconds: float) -> str:
    """Rounded up to 5 s: ``25 s``, ``1 min 5 s``, ``3 min``."""
    s = round_up(seconds)
    minutes, rest = divmod(s, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min" + (f" {rest} s" if rest else "")


def _fail(path: object, what: str) -> UserError:
    return UserError(
        f"{path}: {what}; measure again with `python scripts/time_notebooks.py` (it writes it)"
    )


def validate(record: dict, where: object = "run_times.json") -> dict:
    """``record`` if it has the shape in this module's docstring, else a :class:`UserError`."""
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise _fail(where, f"not a run-times record of schema {SCHEMA}")
    for key in ("date", "machine", "modes", "notebooks"):
        if key not in record:
            raise _fail(where, f"has no {key!r}")
    machine = record["machine"]
    if not isinstance(machine.get("cores"), int) or not isinstance(machine.get("flags"), dict):
        raise _fail(where, "its 'machine' needs 'cores' (int) and 'flags'")
    for name, runs in record["notebooks"].items():
        for mode, run in runs.items():
            if mode not in record["modes"]:
                raise _fail(where, f"{name}: mode {mode!r} is not among its 'modes'")
            seconds = run.get("seconds") if isinstance(run, dict) else None
            if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
                raise _fail(where, f"{name} {mode}: 'seconds' must be a number >= 0")
            if "date" not in run:
                raise _fail(where, f"{name} {mode}: no 'date'")
    if "under_load" in record:
        _validate_under_load(record["under_load"], where)
    return record


def _seconds(run: object) -> float | None:
    seconds = run.get("seconds") if isinstance(run, dict) else None
    ok = isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0
    return float(seconds) if ok else None


def _validate_under_load(section: object, where: object) -> None:
    if not isinstance(section, dict) or not isinstance(section.get("runs"), dict):
        raise _fail(where, "its 'under_load' needs 'runs' (name -> idle, competing, ratio)")
    for name, pair in section["runs"].items():
        if not isinstance(pair, dict):
            raise _fail(where, f"under_load {name}: not an object")
        for condition in CONDITIONS:
            if _seconds(pair.get(condition)) is None:
                raise _fail(where, f"under_load {name} {condition}: 'seconds' must be > 0")
            if "date" not in pair[condition]:
                raise _fail(where, f"under_load {name} {condition}: no 'date'")
        expected = load_ratio(pair["idle"]["seconds"], pair["competing"]["seconds"])
        if pair.get("ratio") != expected:
            raise _fail(
                where,
                f"under_load {name}: 'ratio' is {pair.get('ratio')!r}, but competing / idle "
                f"is {expected}",
            )


def load_ratio(idle: float, competing: float) -> float:
    """``competing / idle``, to 3 decimals: how much one busy process slows a run."""
    return round(competing / idle, 3)


def load(path: str | Path = DEFAULT_PATH) -> dict:
    """The validated record in ``path``."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _fail(path, f"not valid JSON ({e})") from None
    return validate(record, path)


def machine_phrase(machine: dict) -> str:
    """``2-core AMD EPYC (AVX-512, native bf16)``: what a reader needs to compare their CPU."""
    flags = machine["flags"]
    if flags.get("avx512f"):
        isa = "AVX-512"
    elif flags.get("avx2"):
        isa = "AVX2"
    else:
        isa = "no AVX2"
    bf16 = "native bf16" if flags.get("avx512_bf16") or flags.get("amx_bf16") else "no native bf16"
    return f"{machine['cores']}-core {machine.get('cpu_model') or 'CPU'} ({isa}, {bf16})"


def run_time_line(record: dict, name: str) -> str:
    """The "Run time" line (one short markdown line, no newline) for notebook ``name`` (its
    stem): the slower of its measured modes, on the machine it was measured on. The modes, the
    CPU and the date are in the teacher's guide's table (:func:`guide_table`)."""
    runs = record["notebooks"].get(name)
    if not runs:
        raise UserError(
            f"notebook {name} is not in the run-times record; measure it with "
            f"`python scripts/time_notebooks.py --only {name}`"
        )
    slowest = format_duration(max(r["seconds"] for r in runs.values()))
    line = f"{LINE_START}about {slowest} on a {record['machine']['cores']}-core CPU"
    loaded = record.get("under_load", {}).get("runs", {}).get(name)
    if loaded:  # the time beside one competing process, measured with an idle run beside it
        line += f", {format_duration(loaded['competing']['seconds'])} beside one busy process"
    return line + "."


def over_budget(record: dict) -> list[str]:
    """One line per run over its notebook's budget."""
    return [
        f"{name} {mode}: {run['seconds']:.0f} s, over its budget of {budget(name):.0f} s"
        for name, runs in sorted(record["notebooks"].items())
        for mode, run in sorted(runs.items())
        if run["seconds"] > budget(name)
    ]


def main_job_phrase(record: dict) -> str | None:
    """What the README says of the main job's time, from the ``under_load`` section (None when
    the main job was not measured there): ``"410 s alone and 415 s beside one busy process on a
    2-core CPU"`` (whole seconds, rounded up)."""
    pair = record.get("under_load", {}).get("runs", {}).get(MAIN_JOB)
    if not pair:
        return None
    idle, busy = (math.ceil(pair[c]["seconds"]) for c in CONDITIONS)
    return (
        f"{idle} s alone and {busy} s beside one busy process on a "
        f"{record['machine']['cores']}-core CPU"
    )


def over_ratio(record: dict) -> list[str]:
    """One line per run of the ``under_load`` section slowed by more than :data:`LOAD_RATIO`."""
    runs = record.get("under_load", {}).get("runs", {})
    return [
        f"{name}: {pair['competing']['seconds']:.0f} s beside one busy process against "
        f"{pair['idle']['seconds']:.0f} s idle ({pair['ratio']:.2f}x, over {LOAD_RATIO}x)"
        for name, pair in sorted(runs.items())
        if pair["ratio"] > LOAD_RATIO
    ]


# --- the line inside a stored notebook -----------------------------------------------------------


def _run_time_lines(nb: dict) -> list[tuple[int, int, str]]:
    found = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", [])
        lines = source if isinstance(source, list) else source.splitlines(keepends=True)
        found += [(i, j, line) for j, line in enumerate(lines) if line.startswith(LINE_START)]
    return found


def notebook_line(text: str, where: object = "notebook") -> str:
    """The one "Run time" line of a notebook's JSON ``text`` (without its newline)."""
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: not a notebook (invalid JSON: {e})") from None
    found = _run_time_lines(nb)
    if len(found) != 1:
        raise UserError(
            f"{where}: needs exactly one markdown line starting with {LINE_START.strip()!r}, "
            f"found {len(found)}; state the run time in one line of its own near the top"
        )
    return found[0][2].rstrip("\n")


def replace_line(text: str, line: str, where: object = "notebook") -> str:
    """``text`` (a stored notebook's JSON) with its "Run time" line replaced by ``line``; every
    other byte is kept."""
    if not line.startswith(LINE_START) or "\n" in line:
        raise UserError(f"a run-time line is one line starting with {LINE_START!r}, got {line!r}")
    old = notebook_line(text, where)
    nb = json.loads(text)
    ((i, j, raw),) = _run_time_lines(nb)
    new_raw = line + ("\n" if raw.endswith("\n") else "")
    old_json = json.dumps(raw, ensure_ascii=False)
    if text.count(old_json) != 1:
        raise UserError(
            f"{where}: its run-time line cannot be edited as text (it occurs "
            f"{text.count(old_json)} times as written); store the notebook with "
            f"scripts/store_notebook.py and try again"
        )
    out = text.replace(old_json, json.dumps(new_raw, ensure_ascii=False))
    expected = nb
    source = expected["cells"][i]["source"]
    if isinstance(source, list):
        source[j] = new_raw
    else:
        expected["cells"][i]["source"] = source.replace(raw, new_raw, 1)
    if json.loads(out) != expected:  # the text edit changed exactly that line, nothing else
        raise UserError(f"{where}: editing the line {old!r} as text changed more than that line")
    return out


# --- the teacher's guide -------------------------------------------------------------------------


def guide_table(record: dict, link: str | None = None) -> str:
    """A markdown table: notebook, wall time per mode, kernel CPU time, load averages; with
    ``link`` (a folder), each name links to ``link/NAME.ipynb``."""
    modes = [m for m in record["modes"] if any(m in r for r in record["notebooks"].values())]
    head = [
        "notebook",
        *(f"{m} (wall)" for m in modes),
        *(f"{m} (kernel CPU)" for m in modes),
        "load average before / after (1 min)",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in sorted(record["notebooks"].items()):
        wall = [format_duration(runs[m]["seconds"]) if m in runs else "-" for m in modes]
        cpu = [
            f"{runs[m]['cpu_seconds']:.0f} s" if m in runs and "cpu_seconds" in runs[m] else "-"
            for m in modes
        ]
        loads = "; ".join(
            f"{m} {runs[m]['load_before'][0]:.1f} / {runs[m]['load_after'][0]:.1f}"
            for m in modes
            if m in runs and "load_before" in runs[m] and "load_after" in runs[m]
        )
        shown = f"[{name}]({link}/{name}.ipynb)" if link else name
        rows.append("| " + " | ".join([shown, *wall, *cpu, loads or "-"]) + " |")
    return "\n".join(rows) + "\n"


def load_table(record: dict, link: str | None = None) -> str:
    """A markdown table of the ``under_load`` section (empty string without one): each run's wall
    time idle and beside one busy process, their ratio, and the 1-minute load average and the
    other runnable processes seen before each."""
    runs = record.get("under_load", {}).get("runs", {})
    if not runs:
        return ""
    rows = [
        "| run | idle | beside one busy process | ratio | load before (1 min) | "
        "other runnable before |",
        "|---|---|---|---|---|---|",
    ]
    for name, pair in sorted(runs.items()):
        idle, busy = pair["idle"], pair["competing"]
        shown = f"[{name}]({link}/{name}.ipynb)" if link and name != MAIN_JOB else name
        loads = " / ".join(
            f"{r['load_before'][0]:.1f}" if "load_before" in r else "-" for r in (idle, busy)
        )
        seen = " / ".join(str(r.get("runnable_before", "-")) for r in (idle, busy))
        rows.append(
            f"| {shown} | {idle['seconds']:.1f} s | {busy['seconds']:.1f} s | "
            f"{pair['ratio']:.2f} | {loads} | {seen} |"
        )
    return "\n".join(rows) + "\n"
