"""Real SAM-family weights on demand: one registry, a verified download cache, one hook.

``fetch(name)`` is the hook every model builder calls: it returns a local path, downloading
the checkpoint first when it is not cached. ``name`` is a registry name (``"vit_b"``,
``"mobile_sam"``, ``"sam2.1_hiera_tiny"``, ``"facebook/sam-vit-base"``; see
``python -m basam_lite weights list``) or an existing local file or folder, returned as it is
without touching the network. ``entry(name).family`` says which family's builder loads it;
``names(family)`` lists a family's names.

- Files go to :func:`cache_dir` (``$BASAM_CACHE_DIR``, default ``~/.cache/basam_lite``), with a
  progress bar, through ``NAME.part`` (resumed after a cut transfer), verified, then renamed.
- Hugging Face ids go through ``huggingface_hub`` and its own cache; :func:`fetch` returns the
  snapshot folder.
- ``BASAM_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) forbids downloads: a missing file is then one
  line naming the URL and where to put the file by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from .download import (
    CACHE_ENV,
    OFFLINE_ENV,
    cache_dir,
    cached_path,
    checks_done,
    downloads_forbidden,
    fetch_file,
    problems,
)
from .hub import cached_snapshot, fetch_hub
from .registry import REGISTRY, Checkpoint

__all__ = [
    "CACHE_ENV",
    "OFFLINE_ENV",
    "REGISTRY",
    "Checkpoint",
    "cache_dir",
    "cached",
    "cached_path",
    "checks_done",
    "downloads_forbidden",
    "entry",
    "fetch",
    "names",
    "problems",
]


def entry(name: str) -> Checkpoint:
    """The registry entry called ``name`` (one line listing the names if there is none)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(
            f"unknown checkpoint {name!r}: choose one of {', '.join(REGISTRY)} "
            "(`python -m basam_lite weights list`), or give a local path"
        ) from None


def cached(item: Checkpoint) -> Path | None:
    """Where ``item`` is cached, complete (by size), or ``None`` (no network, no checksum)."""
    if item.on_hub:
        return cached_snapshot(item)
    path = cached_path(item)
    if path.is_file() and (item.size is None or path.stat().st_size == item.size):
        return path
    return None


def names(family: str) -> tuple[str, ...]:
    """The registry names of one family (``"segment_anything"``, ``"sam2"``, ``"mobile_sam"``,
    ``"hf"``)."""
    return tuple(name for name, item in REGISTRY.items() if item.family == family)


def fetch(name: str | os.PathLike | Checkpoint, *, progress: bool = True, **options) -> Path:
    """A local path for ``name``: the registry entry's cached copy (downloaded and verified
    first when needed), else ``name`` itself when it is an existing file or folder (returned as
    it is, with no network).

    Args:
        name: a registry name, a :class:`Checkpoint`, or a local path (a registry name wins;
            write ``./vit_b`` for a local file called ``vit_b``).
        progress: show a progress bar while downloading.
        options: for plain files, ``timeout`` (s per connect or read), ``attempts``, ``pause``.

    Returns:
        The checkpoint file, or for a Hugging Face id the snapshot folder.
    """
    if isinstance(name, Checkpoint):
        item = name
    elif isinstance(name, str) and name in REGISTRY:
        item = REGISTRY[name]
    else:
        local = Path(name).expanduser()
        if local.exists():
            return local
        raise UserError(
            f"{os.fspath(name)!r} is neither a registered checkpoint nor an existing file or "
            f"folder: choose one of {', '.join(REGISTRY)} (see `python -m basam_lite weights "
            "list`) or give a local path"
        )
    if item.on_hub:
        return fetch_hub(item)
    return fetch_file(item, progress=progress, **options)
