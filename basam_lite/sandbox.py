"""Running untrusted code (a student's notebook kernel) apart from everything else.

With bubblewrap (``bwrap``, Debian's ``bubblewrap``) the kernel runs in new user, pid, network,
IPC and UTS namespaces: the whole file system is visible read-only, ``/tmp`` is a fresh empty
tmpfs, the only writable folder is the notebook's own temporary copy (``writable``), named paths
can be hidden (``hidden``: a file is replaced by an empty one, a folder by an empty tmpfs), there
is no network, and when the kernel ends (or the grader dies: ``--die-with-parent``) the pid
namespace ends with it, so every process it started ends too. ``--new-session`` keeps it from
typing into the grader's terminal.

Without bubblewrap (absent, or unable to create namespaces on this machine) the kernel still
runs in its own temporary copy and working folder, in its own session, and every process it
leaves behind is ended (:func:`end_leftovers`, with this process as the subreaper of orphans);
but its code can read and write whatever this user can, and reach the network.
:attr:`Isolation.note` says which of the two holds, in one line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

MODES = ("auto", "bwrap", "none")
"""``--sandbox``: bubblewrap where it runs (auto), bubblewrap or refuse (bwrap), or none."""

BWRAP_NAMESPACES = ("--unshare-all", "--die-with-parent", "--new-session")
PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Isolation:
    """How kernels run: ``bwrap`` is the path of bubblewrap, or None for the fallback."""

    bwrap: str | None
    note: str

    def command(
        self,
        cmd: Sequence[str],
        writable: Path,
        workdir: Path,
        hidden: Iterable[Path] = (),
        setenv: dict[str, str] | None = None,
    ) -> list[str]:
        """``cmd`` wrapped so that it runs isolated (unchanged in the fallback); ``setenv``:
        variables set inside the sandbox only."""
        if self.bwrap is None:
            return list(cmd)
        keep = _needed_paths(writable)
        args = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        args += ["--tmpfs", "/tmp"]
        for path in _under_tmp(keep, writable):  # a project or venv in /tmp stays visible
            args += ["--ro-bind", str(path), str(path)]
        for path in hidden:
            path = Path(path)
            if path.is_dir():
                if not any(_inside(k, path) for k in keep):
                    args += ["--tmpfs", str(path)]
            elif path.exists():
                args += ["--ro-bind", "/dev/null", str(path)]
        args += ["--bind", str(writable), str(writable)]
        for key, value in (setenv or {}).items():
            args += ["--setenv", key, value]
        args += [*BWRAP_NAMESPACES, "--chdir", str(workdir), "--"]
        return args + list(cmd)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def _under_tmp(paths: Iterable[Path], writable: Path) -> list[Path]:
    """The outermost existing ``paths`` inside ``/tmp`` (not ``/tmp`` itself, not the writable
    copy, which is bound on its own): re-bound read-only over the sandbox's empty ``/tmp``."""
    tmp = Path("/tmp").resolve()
    found = sorted(
        {
            Path(p).resolve()
            for p in paths
            if Path(p).exists()
            and _inside(p, tmp)
            and Path(p).resolve() != tmp
            and not _inside(p, writable)
        },
        key=lambda p: len(p.parts),
    )
    outer: list[Path] = []
    for p in found:
        if not any(_inside(p, o) for o in outer):
            outer.append(p)
    return outer


def _needed_paths(writable: Path) -> list[Path]:
    """What the kernel must still see when input folders are hidden: Python, the project, the
    copy."""
    project = Path(__file__).resolve().parents[1]
    paths = [project, Path(sys.prefix), Path(sys.executable).resolve().parent, Path(writable)]
    paths += [Path(p) for p in sys.path if p and Path(p).is_dir()]
    paths += [Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return paths


def probe_bwrap() -> tuple[str | None, str]:
    """``(path, "")`` when bubblewrap runs here with the namespaces used, else ``(None, why)``."""
    path = shutil.which("bwrap")
    if path is None:
        return None, "bubblewrap (bwrap) is not installed"
    try:
        done = subprocess.run(
            [
                path,
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--tmpfs",
                "/tmp",
                *BWRAP_NAMESPACES,
                "--",
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"bubblewrap cannot run here ({type(e).__name__})"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return None, f"bubblewrap cannot create its namespaces here ({why})"
    return path, ""


def choose(mode: str = "auto") -> Isolation:
    """The isolation for ``--sandbox MODE``; ``bwrap`` refuses in one line where it cannot run."""
    if mode not in MODES:
        raise UserError(f"--sandbox {mode}: choose one of {', '.join(MODES)}")
    why = "--sandbox none"
    if mode != "none":
        path, why = probe_bwrap()
        if path is not None:
            return Isolation(
                path,
                "isolation: bubblewrap; each notebook sees the system read-only, writes only to "
                "its own temporary copy, has no network, and its processes end with it",
            )
        if mode == "bwrap":
            raise UserError(f"--sandbox bwrap: {why}; install bubblewrap or use --sandbox auto")
    return Isolation(
        None,
        f"isolation: partial ({why}): each notebook runs in its own temporary copy and working "
        "folder and its processes are ended, but its code can read and write any file you can "
        "and reach the network",
    )


# ------------------------------------------------------------------- processes left behind


def become_subreaper() -> bool:
    """Make orphans of our descendants our children (Linux), so they can be found and ended."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry.name)] = int(fields[1])
    return table


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def end_leftovers(before: set[int]) -> int:
    """SIGKILL every descendant of this process that was not in ``before``; return how many."""
    ended = 0
    for _ in range(3):
        extra = descendants(os.getpid()) - before
        if not extra:
            break
        for pid in extra:
            try:
                os.kill(pid, signal.SIGKILL)
                ended += 1
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        for pid in extra:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
    return ended
