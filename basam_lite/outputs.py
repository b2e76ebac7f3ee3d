"""Writing result files safely: atomic replacement and one writer per output.

- :func:`atomic_write`: a file is written to a temporary name in its folder, flushed and
  renamed over the target (``os.replace``), so a reader or a killed run sees the old file or
  the new one, never a half-written one.
- :func:`output_lock`: an exclusive lock (``filelock``) on ``OUT.lock`` while a run writes
  ``OUT``; a second writer is refused at once with a :class:`~basam_lite.errors.UserError`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import UserError


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix unless given); when the block ends
    without an exception it replaces ``path``, otherwise it is deleted."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes it 0600; a result file is not a secret
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def write_with(path: str | os.PathLike, writer: Callable[[Path], object]) -> None:
    """``writer(tmp)`` writes the file; ``path`` is then replaced by it atomically."""
    with atomic_write(path) as tmp:
        writer(tmp)


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold ``OUT.lock`` while writing ``OUT``; refuse if another process holds it."""
    out = Path(out)
    lock = FileLock(str(lock_path(out)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"another run is writing {out} (it holds {lock_path(out)}): wait for it to finish, "
            f"or write elsewhere with --out"
        ) from None
    try:
        yield
    finally:
        lock.release()


def hold_folder(folder: str | os.PathLike, flag: str = "--run-dir") -> FileLock:
    """Take ``FOLDER/.lock`` (creating the folder) so one process at a time writes into it;
    refuse at once if another holds it. The lock is released when the returned object is
    released or dropped (or the process ends)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / ".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"another run is writing {folder} (it holds {folder / '.lock'}): wait for it to "
            f"finish, or give this run its own folder with {flag}"
        ) from None
    return lock


# ------------------------------------------------------------ files written beside a result


def refuse_foreign(
    path: str | os.PathLike, is_ours: Callable[[Path], bool], what: str, how: str
) -> None:
    """Refuse, before any work, to replace ``path`` unless it is absent or ``is_ours`` knows it
    as a file this project wrote (``what``: "a plot", ...; ``how``: the way out)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder where {what} would be written; {how}")
    if path.exists() and not is_ours(path):
        raise UserError(
            f"{path} exists and is not {what} this project wrote; it is never replaced, and "
            f"nothing was written: {how}"
        )


def _head(path: Path, n: int = 65536) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def is_matplotlib_png(path: Path) -> bool:
    """A PNG whose ``Software`` text chunk says Matplotlib (how every plot here is saved)."""
    head = _head(path)
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"Software\x00Matplotlib" in head


def is_torch_checkpoint(path: Path) -> bool:
    """A ``torch.save`` zip archive (its ``data.pkl`` inside), read without loading it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/data.pkl") or n == "data.pkl" for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def is_model_card(path: Path) -> bool:
    """A Markdown model card as :func:`basam_lite.model_card.write_card` writes it."""
    text = _head(path).decode("utf-8", errors="replace")
    return text.startswith("# ") and "\n## Architecture" in text and "\nsha256: `" in text
