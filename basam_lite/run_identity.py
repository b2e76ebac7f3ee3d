"""The identity of a results table: everything that decides its numbers.

A sweep's identity is a plain JSON dict stored with its table (the ``.meta.json`` beside it and
the Parquet metadata). It is built from the run's config dataclass, so a field added to the
config enters the identity without touching this module:

- every config field, except the grid dimensions named in ``extendable`` (their values are
  compared value by value, see below) and the ``scope`` fields (which part of the run this
  table is, e.g. the shard);
- ``weights``: per model, the sha256 of the checkpoint file it loads (the bundled file for the
  trained tiny models; ``"random init"`` for a model built without weights);
- ``data``: the dataset spec's fingerprint: for files, every file's path (relative to the
  dataset root), size and sha256; for procedural scenes, a hash of every scene's parameters;
- ``definitions``: per variant (or another grid value), what it runs (the ``BASAMConfig``
  fields), so a variant redefined between two runs is a different identity;
- ``versions``: the packages that change numbers (torch, segment_anything, numpy, pysodmetrics,
  basam_lite).

Two identities are compatible (a rerun may resume the table) when everything but the extendable
grid agrees, and the values both grids contain are defined the same way: a run with more
sizes or variants extends the table, anything else is refused with :func:`differences`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

Identity = dict[str, Any]

_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes (cached per path, size and mtime within a process)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def json_hash(obj: object) -> str:
    """sha256 of an object's canonical JSON (sorted keys; non-JSON values by ``repr``)."""
    text = json.dumps(obj, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def plain(obj: object) -> object:
    """``obj`` as JSON-comparable values: dataclasses as dicts, tuples as lists."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return plain(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def files_fingerprint(root: Path, files: Iterable[Path]) -> dict[str, object]:
    """Each file's path relative to ``root``, size and sha256, and one hash over them all."""
    entries = []
    for f in files:
        f = Path(f)
        try:
            rel = str(f.resolve().relative_to(root.resolve()))
        except ValueError:
            rel = str(f)
        try:
            entries.append([rel, f.stat().st_size, file_sha256(f)])
        except OSError as e:  # unreadable: part of the fingerprint, reported when it is read
            entries.append([rel, -1, f"unreadable: {type(e).__name__}"])
    return {"files": len(entries), "sha256": json_hash(entries)}


def config_identity(
    cfg: object,
    extendable: Sequence[str],
    scope: Sequence[str],
    normalise: Mapping[str, Callable[[Any], object]] | None = None,
) -> Identity:
    """The config part of an identity: every dataclass field of ``cfg`` but ``extendable``
    (stored under ``"grid"``) and ``scope`` (stored under ``"scope"``); ``normalise`` maps a
    field to the value compared (e.g. ``"cuda:1"`` -> ``"cuda"``)."""
    normalise = normalise or {}
    config: dict[str, object] = {}
    grid: dict[str, object] = {}
    part: dict[str, object] = {}
    for f in fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        value = normalise[f.name](value) if f.name in normalise else value
        target = grid if f.name in extendable else part if f.name in scope else config
        target[f.name] = plain(value)
    return {"config": config, "grid": grid, "scope": part}


def _flat(d: object, prefix: str = "") -> dict[str, object]:
    if isinstance(d, Mapping) and d:
        out: dict[str, object] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def _show(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:18] + "..." + text[-18:]


def differences(
    old: Identity, new: Identity, *, keyed: Sequence[str] = (), compare_grid: bool = False
) -> list[str]:
    """What differs between two identities, as ``"field: table X, this run Y"`` lines.

    ``keyed`` sections (per-model weights, per-variant definitions) compare only the keys both
    have, so a grid extension (a new model or variant) is not a difference; with
    ``compare_grid`` the grid must be equal too (shards of one run). The scope (the shard) is
    always compared.
    """
    out = []
    sections = {k for k in (*old, *new) if compare_grid or k != "grid"}
    for section in sorted(sections):
        a, b = old.get(section, {}), new.get(section, {})
        if section in keyed and not compare_grid and isinstance(a, dict) and isinstance(b, dict):
            common = set(a) & set(b)
            a = {k: v for k, v in a.items() if k in common}
            b = {k: v for k, v in b.items() if k in common}
        fa, fb = _flat(a, f"{section}."), _flat(b, f"{section}.")
        for key in sorted(set(fa) | set(fb)):
            if fa.get(key, "<absent>") != fb.get(key, "<absent>"):
                out.append(
                    f"{key.removeprefix('config.')}: table {_show(fa.get(key, '<absent>'))}, "
                    f"this run {_show(fb.get(key, '<absent>'))}"
                )
    return out


def union(first: Sequence[object], second: Sequence[object], *, sort: bool = False) -> list:
    """``first`` followed by the values of ``second`` it lacks (sorted when ``sort``)."""
    values = list(first) + [v for v in second if v not in first]
    if sort:
        with contextlib.suppress(TypeError):
            values = sorted(values)  # type: ignore[type-var]
    return values
