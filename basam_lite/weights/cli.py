"""Real SAM checkpoints: what is cached and where, fetch one, check one.

``list`` shows every registered checkpoint (family, size, licence, where it is cached);
``get NAME`` fetches one (a progress bar; nothing when it is already cached) and prints its
path (only the path on stdout); ``verify [PATH]`` checks a file (or, without PATH, every cached
one) against the registry: size and every checksum it records, one line per file, exit status 1
when a check fails. Downloads go to $BASAM_CACHE_DIR (default ~/.cache/basam_lite);
BASAM_OFFLINE=1 or HF_HUB_OFFLINE=1 forbids them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from . import REGISTRY, Checkpoint, cache_dir, cached, cached_path, checks_done, fetch, problems
from .download import CACHE_ENV, downloads_forbidden
from .hub import hub_cache


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="every registered checkpoint and where it is cached")
    ls.add_argument("--details", action="store_true", help="also the source and what is checked")
    get = sub.add_parser("get", help="fetch one checkpoint (if not cached) and print its path")
    get.add_argument("name", metavar="NAME", help="a name from `weights list`")
    get.add_argument("--no-progress", action="store_true", help="no progress bar")
    ver = sub.add_parser("verify", help="check a file, or every cached one, against the registry")
    ver.add_argument("path", nargs="?", default=None, metavar="PATH", help="default: the cache")
    ver.add_argument("--name", default=None, help="the registry name PATH stands for")


def _state(item: Checkpoint) -> str:
    try:
        path = cached(item)
    except UserError:  # a Hugging Face id without huggingface_hub installed
        return "- (needs huggingface_hub)"
    if path is not None:
        return str(path)
    if not item.on_hub:
        part = cached_path(item).with_name(f"{item.filename}.part")
        if part.is_file():
            return f"partial: {part.stat().st_size / 1e6:,.0f} MB in {part} (resumes)"
    return "-"


def list_entries(details: bool) -> None:
    state = downloads_forbidden()
    try:
        hub = f"{hub_cache()} (HF_HUB_CACHE)"
    except UserError:
        hub = "huggingface_hub is not installed"
    print(f"cache: {cache_dir()} (${CACHE_ENV}); Hugging Face ids: {hub}")
    print(f"downloads: {'off (' + state + ')' if state else 'allowed'}")
    rows = [("name", "family", "size", "licence", "cached")]
    rows += [(e.name, e.family, e.approx_size, e.licence, _state(e)) for e in REGISTRY.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4])
    if details:
        for e in REGISTRY.values():
            checks = "by huggingface_hub" if e.on_hub else checks_done(e)
            print(f"\n{e.name}: {e.source}\n  checked: {checks}\n  provenance: {e.verified}")


def _identify(path: Path, name: str | None) -> Checkpoint:
    if name is not None:
        if name not in REGISTRY:
            raise UserError(f"unknown checkpoint {name!r}: see `python -m basam_lite weights list`")
        return REGISTRY[name]
    for e in REGISTRY.values():
        if e.filename == path.name:
            return e
    raise UserError(
        f"{path.name} is not the file name of any registered checkpoint: give --name NAME"
    )


def verify_one(item: Checkpoint, path: Path) -> bool:
    """Print one line: ``ok`` and what was checked, or ``BAD`` and what is wrong."""
    if item.on_hub or path.is_dir():
        missing = [f for f in item.hub_files if not (path / f).is_file()]
        if missing:
            print(f"BAD  {item.name}  {path}: no {', '.join(missing)}")
            return False
        print(
            f"ok   {item.name}  {path}: {', '.join(item.hub_files)} present (sizes checked by "
            "huggingface_hub when it downloaded them)"
        )
        return True
    bad = problems(path, item)
    if bad:
        print(f"BAD  {item.name}  {path}: {'; '.join(bad)}")
        return False
    print(f"ok   {item.name}  {path}: {checks_done(item)}")
    return True


def _cached_or_none(item: Checkpoint) -> Path | None:
    try:
        return cached(item)
    except UserError:  # a Hugging Face id without huggingface_hub installed
        return None


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        list_entries(args.details)
        return 0
    if args.action == "get":
        print(fetch(args.name, progress=not args.no_progress))
        return 0
    if args.path is not None:
        path = Path(args.path).expanduser()
        if not path.exists():
            raise UserError(f"{path} does not exist")
        return 0 if verify_one(_identify(path, args.name), path) else 1
    found = [(e, p) for e in REGISTRY.values() if (p := _cached_or_none(e)) is not None]
    if not found:
        print(f"nothing is cached in {cache_dir()} (nor in the Hugging Face cache)")
        return 0
    results = [verify_one(e, p) for e, p in found]
    return 0 if all(results) else 1
