"""Importing ``mobile_sam`` (the ``mobilesam-mirror`` package) without its side effects.

``mobile_sam`` is an optional dependency (``pip install 'basam-lite[mobilesam]'``). Importing it
has two side effects this project contains:

- it imports the deprecated ``timm.models.layers`` and ``timm.models.registry`` paths, which warn
  (``FutureWarning``) on timm 1.x;
- ``mobile_sam/modeling/tiny_vit_sam.py`` registers its own ``tiny_vit_*`` classifiers in timm's
  model registry under the names timm already uses for its TinyViT, so that afterwards
  ``timm.create_model("tiny_vit_5m_224")`` would build MobileSAM's copy (and timm warns about
  each overwrite).

:func:`mobile_sam_module` imports it once, lazily, with those warnings silenced and timm's
registry put back exactly as it was before the import. A missing package is one
:class:`~basam_lite.errors.UserError` line naming the extra to install.
"""

from __future__ import annotations

import copy
import importlib
import warnings
from types import ModuleType

from ..errors import UserError

EXTRA = "mobilesam"
PACKAGE = "mobilesam-mirror"
_MODULE: ModuleType | None = None


def missing_message(what: str = "MobileSAM") -> str:
    """The one line printed when ``mobile_sam`` cannot be imported."""
    return (
        f"{what} needs the optional package {PACKAGE} (import name mobile_sam): "
        f"pip install 'basam-lite[{EXTRA}]'"
    )


def _timm_registry_state() -> tuple[ModuleType, dict[str, object]] | None:
    """timm's registry module and a copy of its module-level tables (None without timm)."""
    try:
        import timm.models  # noqa: F401  (registers timm's own models first)
        from timm.models import _registry
    except ImportError:
        return None
    tables = {
        name: copy.copy(value)
        for name, value in vars(_registry).items()
        if name.startswith(("_model", "_module", "_deprecated")) and isinstance(value, dict | set)
    }
    # one level deeper: the dicts hold sets and lists that register_model mutates in place
    for table in tables.values():
        if isinstance(table, dict):
            for key, value in table.items():
                if isinstance(value, set | list | dict):
                    table[key] = copy.copy(value)
    return _registry, tables


def _restore(state: tuple[ModuleType, dict[str, object]] | None) -> None:
    if state is None:
        return
    registry, tables = state
    for name, saved in tables.items():
        live = getattr(registry, name)
        live.clear()
        live.update(saved)  # type: ignore[attr-defined]


def mobile_sam_module() -> ModuleType:
    """The ``mobile_sam`` package, imported once with its warnings and its timm registrations
    contained; :class:`~basam_lite.errors.UserError` naming the extra when it is missing."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    state = _timm_registry_state()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"timm\..*")
            warnings.filterwarnings("ignore", r"Overwriting tiny_vit_", UserWarning)
            module = importlib.import_module("mobile_sam")
            importlib.import_module("mobile_sam.modeling.tiny_vit_sam")
    except ImportError as e:
        raise UserError(missing_message()) from e
    finally:
        _restore(state)
    _MODULE = module
    return module
