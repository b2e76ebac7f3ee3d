"""Fetching a registered checkpoint file into the cache: resumable, verified, atomic, locked.

The file is written to ``NAME.part`` beside its final place, resumed with an HTTP ``Range``
request after a cut transfer, verified (size, then every checksum the registry holds), and only
then renamed to ``NAME`` with :func:`os.replace` (atomic on one file system). A file lock,
``NAME.lock``, lets one process download while any other waits and then finds the file in place.
A failed check deletes the ``.part`` file and says so in one line.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..errors import UserError
from .registry import Checkpoint

CACHE_ENV = "BASAM_CACHE_DIR"
"""Folder of downloaded checkpoints (default ``$XDG_CACHE_HOME/basam_lite``, else
``~/.cache/basam_lite``)."""
OFFLINE_ENV = "BASAM_OFFLINE"
"""``BASAM_OFFLINE=1`` forbids every download (``HF_HUB_OFFLINE=1`` does too)."""
OFFLINE_VARS = (OFFLINE_ENV, "HF_HUB_OFFLINE")
TIMEOUT_S = 30.0
"""Seconds any one connect or read may wait for the server."""
ATTEMPTS = 3
"""Tries per download; each after the first resumes where the last one stopped."""
CHUNK = 1 << 20
USER_AGENT = "basam-lite (+https://github.com/basam-lab/basam-lab)"
_TRUE = ("1", "true", "yes", "on")
_RETRY_STATUS = (408, 429, 500, 502, 503, 504)


class _Interrupted(Exception):
    """A transfer that stopped early or never started for a passing reason: worth retrying."""


class _CannotResume(_Interrupted):
    """The server refused the partial file's range: the next try starts afresh."""


def cache_dir() -> Path:
    """Where downloaded checkpoints live: ``$BASAM_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/basam_lite``, else ``~/.cache/basam_lite``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "basam_lite"


def downloads_forbidden() -> str | None:
    """The setting that forbids downloads (``"BASAM_OFFLINE=1"``), or ``None`` when allowed."""
    for var in OFFLINE_VARS:
        value = os.environ.get(var, "")
        if value.strip().lower() in _TRUE:
            return f"{var}={value}"
    return None


def cached_path(entry: Checkpoint) -> Path:
    """Where ``entry``'s file lives in the cache (whether or not it is there yet)."""
    assert entry.filename is not None, entry.name
    return cache_dir() / entry.filename


def by_hand(entry: Checkpoint, final: Path, why: str) -> str:
    """The one-line message: what was needed, the URL, where to put the file by hand."""
    return (
        f"checkpoint {entry.name!r} is needed but {why}: download {entry.url} and put it at "
        f"{final} (or pass the file's local path instead)"
    )


# --- verification ---------------------------------------------------------------------------


def digests(path: Path, entry: Checkpoint, chunk: int = 1 << 24) -> dict[str, str]:
    """The checksums ``entry`` records, of the file at ``path``, in one read.

    ``git_blob_sha1`` is git's object id: SHA-1 of ``b"blob <size>\\0" + content``.
    """
    hashes: dict[str, hashlib._Hash] = {}
    if entry.sha256:
        hashes["sha256"] = hashlib.sha256()
    if entry.md5_prefix:
        hashes["md5"] = hashlib.md5()
    if entry.git_blob_sha1:
        hashes["git_blob_sha1"] = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    if hashes:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                for h in hashes.values():
                    h.update(block)
    return {k: h.hexdigest() for k, h in hashes.items()}


def problems(path: Path, entry: Checkpoint) -> list[str]:
    """What is wrong with ``path`` as ``entry``'s file (empty when every check passes).

    The size is checked first (no checksum is computed for a file of the wrong size)."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return [f"{size:,} bytes, not {entry.size:,}"]
    found = digests(path, entry)
    bad = []
    if entry.sha256 and found["sha256"] != entry.sha256.lower():
        bad.append(f"SHA-256 {found['sha256'][:16]}..., not {entry.sha256[:16]}...")
    if entry.md5_prefix and not found["md5"].startswith(entry.md5_prefix):
        bad.append(f"MD5 {found['md5'][:12]}... does not start with {entry.md5_prefix}")
    if entry.git_blob_sha1 and found["git_blob_sha1"] != entry.git_blob_sha1:
        bad.append(
            f"git blob id {found['git_blob_sha1'][:12]}..., not {entry.git_blob_sha1[:12]}..."
        )
    return bad


def checks_done(entry: Checkpoint) -> str:
    """The checks :func:`problems` applies to ``entry``, in words."""
    done = []
    if entry.size is not None:
        done.append(f"size {entry.size:,} bytes")
    if entry.sha256:
        done.append(f"SHA-256 {entry.sha256[:12]}...")
    if entry.md5_prefix:
        done.append(f"MD5 prefix {entry.md5_prefix}")
    if entry.git_blob_sha1:
        done.append(f"git blob id {entry.git_blob_sha1[:12]}...")
    return ", ".join(done) or "nothing (no size or checksum is registered)"


# --- the transfer ---------------------------------------------------------------------------


def _reason(error: BaseException, timeout: float) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason if isinstance(error.reason, BaseException) else error
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(error) or type(error).__name__


def _content_range(value: str | None) -> tuple[int, int | None]:
    """``(start, total)`` of a ``Content-Range: bytes START-END/TOTAL`` header."""
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    if m is None:
        raise _Interrupted(f"the server resumed with an unreadable Content-Range {value!r}")
    return int(m.group(1)), None if m.group(2) == "*" else int(m.group(2))


def _open(entry: Checkpoint, have: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(str(entry.url), headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code in _RETRY_STATUS:
            raise _Interrupted(f"HTTP {e.code} {e.reason}") from None
        if e.code == 416 and have:  # our partial file is not a prefix the server knows
            raise _CannotResume("the server cannot resume from the partial file") from None
        why = f"the server answered HTTP {e.code} {e.reason}"
        raise UserError(by_hand(entry, cached_path(entry), why)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Interrupted(_reason(e, timeout)) from None


def _transfer(entry: Checkpoint, part: Path, timeout: float, progress: bool) -> None:
    """One HTTP request: append to ``part`` from where it ends (or restart it). Raises
    :class:`_Interrupted` when the transfer stops early; ``part`` keeps what arrived."""
    have = part.stat().st_size if part.exists() else 0
    if entry.size is not None and have > entry.size:
        part.unlink()
        have = 0
    if entry.size is not None and have == entry.size:
        return
    try:
        response = _open(entry, have, timeout)
    except _CannotResume:
        part.unlink()
        raise
    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != have:
                part.unlink()
                raise _Interrupted(f"the server resumed at byte {start}, not {have}")
            mode = "ab"
        else:
            if have:
                print(
                    f"{entry.filename}: the server does not resume; starting again", file=sys.stderr
                )
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if entry.size is not None and total is not None and total != entry.size:
            part.unlink(missing_ok=True)
            raise UserError(
                f"{entry.url} is {total:,} bytes but {entry.name} is registered as "
                f"{entry.size:,}: not the registered file, nothing was kept"
            )
        expected = entry.size if entry.size is not None else total
        if expected is not None:
            free = shutil.disk_usage(part.parent).free
            if free < expected - have:
                raise UserError(
                    f"{entry.filename} needs {(expected - have) / 1e6:,.0f} MB more but "
                    f"{part.parent} has {free / 1e6:,.0f} MB free: free some space or set "
                    f"{CACHE_ENV} to another folder"
                )
        bar = tqdm(
            total=expected,
            initial=have,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=entry.filename,
            disable=not progress,
            file=sys.stderr,
        )
        with open(part, mode) as f, bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Interrupted(_reason(e, timeout)) from None
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
    got = part.stat().st_size
    if expected is not None and got < expected:
        raise _Interrupted(f"the transfer stopped at {got:,} of {expected:,} bytes")


def _download(
    entry: Checkpoint, part: Path, timeout: float, attempts: int, progress: bool, pause: float
) -> None:
    """:func:`_transfer` up to ``attempts`` times, each resuming the last."""
    for attempt in range(1, attempts + 1):
        try:
            _transfer(entry, part, timeout, progress)
            return
        except _Interrupted as e:
            have = part.stat().st_size if part.exists() else 0
            if attempt == attempts:
                kept = f"{have:,} bytes are kept in {part}, " if have else ""
                raise UserError(
                    f"could not download {entry.name!r} from {entry.url} ({e}; {attempts} "
                    f"tries): {kept}run again "
                    f"to resume, or download it by hand and put it at {cached_path(entry)} (or "
                    "pass the file's local path instead)"
                ) from None
            print(
                f"{entry.filename}: {e}; try {attempt + 1} of {attempts}"
                + (f", resuming at byte {have:,}" if have else ""),
                file=sys.stderr,
            )
            time.sleep(pause * attempt)


def _writable(folder: Path, entry: Checkpoint) -> None:
    """Create ``folder`` and check that a file can be written there (one line if not)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(
            f"the weights cache {folder} is not writable ({e.strerror or e}): set {CACHE_ENV} to "
            f"a writable folder, or download {entry.url} by hand and pass its path"
        ) from None


def fetch_file(
    entry: Checkpoint,
    *,
    progress: bool = True,
    timeout: float = TIMEOUT_S,
    attempts: int = ATTEMPTS,
    pause: float = 1.0,
) -> Path:
    """``entry``'s file in the cache, downloaded (and verified) first when it is not there.

    A cached file of the registered size is returned as it is (``python -m basam_lite weights
    verify`` checks its checksums); one of another size is downloaded again.
    """
    final = cached_path(entry)
    if final.is_file() and (entry.size is None or final.stat().st_size == entry.size):
        return final
    forbidden = downloads_forbidden()
    if forbidden:
        raise UserError(
            by_hand(entry, final, f"it is not in the cache and downloads are off ({forbidden})")
        )
    _writable(final.parent, entry)
    lock = FileLock(f"{final}.lock")
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        print(f"{entry.filename}: another process is downloading it; waiting", file=sys.stderr)
        lock.acquire()
    try:
        if final.is_file():
            if entry.size is None or final.stat().st_size == entry.size:
                return final  # the other process finished it
            print(
                f"{final}: {final.stat().st_size:,} bytes, not {entry.size:,}; downloading again",
                file=sys.stderr,
            )
            final.unlink()
        part = final.with_name(final.name + ".part")
        if progress:
            action = "resuming" if part.exists() else "downloading"
            print(f"{action} {entry.url} ({entry.approx_size}) to {final}", file=sys.stderr)
        _download(entry, part, timeout, attempts, progress, pause)
        if progress:
            print(f"verifying {part.name}: {checks_done(entry)}", file=sys.stderr)
        bad = problems(part, entry)
        if bad:
            part.unlink()
            raise UserError(
                f"{entry.filename} from {entry.url} failed verification ({'; '.join(bad)}): the "
                "download was deleted; run again to download it afresh"
            )
        os.replace(part, final)
    finally:
        lock.release()
    return final
