"""Hugging Face model ids: fetched by ``huggingface_hub`` into its own cache, never by hand.

``huggingface_hub`` keeps the files under ``HF_HUB_CACHE`` (default
``~/.cache/huggingface/hub``), resumes them and checks each file's size against the Hub's
metadata. Only the files the entry names (plus the small ``*.json`` configs) are fetched: never
pickled ``pytorch_model.bin`` or TensorFlow weights.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from ..errors import UserError
from .download import OFFLINE_ENV, downloads_forbidden
from .registry import Checkpoint


def _hub() -> ModuleType:
    """``huggingface_hub``, or one line saying how to install it (it comes with
    ``transformers``, which every Hugging Face model needs anyway)."""
    try:
        return importlib.import_module("huggingface_hub")
    except ImportError:
        raise UserError(
            "Hugging Face ids need huggingface_hub: `pip install huggingface_hub` (it comes with "
            "transformers)"
        ) from None


def allow_patterns(entry: Checkpoint) -> list[str]:
    """The file patterns ``snapshot_download`` may fetch for ``entry``."""
    return ["*.json", *entry.hub_files]


def hub_cache() -> Path:
    """``huggingface_hub``'s cache folder (``HF_HUB_CACHE``)."""
    _hub()
    return Path(importlib.import_module("huggingface_hub.constants").HF_HUB_CACHE)


def cached_snapshot(entry: Checkpoint) -> Path | None:
    """The local snapshot folder of ``entry`` when all its files are cached, else ``None``
    (no network)."""
    hub = _hub()
    paths = [hub.try_to_load_from_cache(str(entry.hub_id), name) for name in entry.hub_files]
    if entry.hub_files and all(isinstance(p, str) for p in paths):
        return Path(str(paths[0])).parent
    return None


def fetch_hub(entry: Checkpoint) -> Path:
    """The snapshot folder of ``entry`` (``config.json``, ``model.safetensors``, ...), from
    ``huggingface_hub``'s cache or downloaded by it; one line when that is impossible."""
    hub = _hub()
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    hub_id = str(entry.hub_id)
    forbidden = downloads_forbidden()
    try:
        folder = Path(
            hub.snapshot_download(
                hub_id, allow_patterns=allow_patterns(entry), local_files_only=bool(forbidden)
            )
        )
    except LocalEntryNotFoundError:
        raise UserError(
            f"{hub_id} is needed but is not in the Hugging Face cache {hub_cache()} and "
            f"downloads are off ({forbidden or 'no connection'}): unset {OFFLINE_ENV} and "
            f"HF_HUB_OFFLINE where there is a network and run `python -m basam_lite weights "
            f"get {hub_id}`, or pass a local folder holding {', '.join(entry.hub_files)}"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{hub_id} could not be fetched from the Hub: {first}") from None
    missing = [name for name in entry.hub_files if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"{hub_id} on the Hub has no {', '.join(missing)}: it is not a transformers "
            f"checkpoint of {entry.model} at this revision"
        )
    return folder
