"""Sphinx configuration of the course site (built by ``bash scripts/site.sh OUT_DIR``).

Why Sphinx + myst-nb (and not Jupyter Book 2 or mkdocs-jupyter):
- it builds fully offline from PyPI packages alone: Jupyter Book 2 is a front end to mystmd,
  which needs Node.js and fetches its theme at build time; mkdocs-jupyter has no docstring
  reference of the library;
- myst-nb executes the notebooks through jupyter-cache (``nb_execution_mode = "cache"``): outputs
  are keyed by the notebooks' code, so a rebuild after a change of text re-executes nothing;
- ``sphinx.ext.autodoc`` builds the library's reference from its docstrings in the same site;
- MathJax is served from the site itself (sphinx-mathjax-offline) and no widget JavaScript is
  fetched from a CDN (``nb_ipywidgets_js = {}``), so the pages load with no network.

``scripts/site.sh`` stages the sources (``site/stage.py``) into a work folder and runs
sphinx-build there; this file is copied beside them. ``-t teacher`` adds the solutions.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(os.environ.get("BASAM_SITE_ROOT", Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(ROOT))  # autodoc documents this checkout's basam_lite

project = "basam-lab"
author = "basam-lab contributors"
copyright = "basam-lab contributors, Apache-2.0"
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
]
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "**/runs"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # notebooks' heading levels are the authors' choice

# Execution: every notebook, cached by its code in BASAM_SITE_CACHE (kept between builds).
nb_execution_mode = "cache"
nb_execution_cache_path = os.environ.get("BASAM_SITE_CACHE", str(ROOT / "build" / "site-cache"))
nb_execution_timeout = int(os.environ.get("BASAM_SITE_TIMEOUT", "1800"))  # seconds per cell
nb_execution_raise_on_error = True  # a notebook that fails fails the build, as in CI
nb_execution_in_temp = False  # run in the staged notebooks/ folder, as Jupyter would
nb_ipywidgets_js = {}  # widgets need a live kernel: the explorer's static figure is shown instead
# ...and a static page cannot draw a widget view at all: drop that mime type, so an output that
# carries a PNG beside it (the explorer's) shows the PNG.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_merge_streams = True

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"

html_theme = "sphinx_book_theme"
html_title = "BA-SAM, learned and tested"
html_theme_options = {
    "repository_url": "https://github.com/basam-lab/basam-lab",
    "use_repository_button": True,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "repository_branch": "main",
    "path_to_docs": "",  # the staged tree mirrors the repository: notebooks/ is notebooks/
    "launch_buttons": {
        "binderhub_url": "https://mybinder.org",
        "colab_url": "https://colab.research.google.com",
        "notebook_interface": "jupyterlab",
    },
}
html_context = {"default_mode": "light"}  # else the theme logs a console error on first visit


def _problematic_as_text(app, doctree, docname) -> None:
    """Show a docstring's stray ``|x|`` or ``*`` as the text it is, not a dangling error link."""
    from docutils import nodes

    for node in list(doctree.findall(nodes.problematic)):
        node.replace_self(nodes.inline(node.rawsource, node.astext(), ids=node["ids"]))


def _skip_class_valued_fields(app, what, name, obj, skip, options) -> bool | None:
    """Leave out a class attribute whose value is another package's class
    (``BlockPatch.original = nn.Module``, a dataclass default): its class's Attributes section
    describes it already, and autodoc would describe it again with that class's docstring."""
    if what == "class" and isinstance(obj, type) and obj.__module__.split(".")[0] != "basam_lite":
        return True
    return None


def _defined_as(name: str) -> str | None:
    """Where the object documented as ``name`` is defined (``module.qualname``), if importable."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        return f"{module}.{qualname}" if module and qualname else None
    return None


def _reexports_as_aliases(app, env) -> None:
    """A package page (``basam_lite``, ``basam_lite.datasets``) describes the names it
    re-exports, and the defining module's page describes them again: mark the re-export as an
    alias, so a bare ``BASAMConfig`` or ``Sample`` in a type resolves to the definition, while
    ``basam_lite.BASAMConfig`` still links to the package page."""
    objects = env.domains["py"].objects
    for name, entry in list(objects.items()):
        if entry.aliased or entry.objtype == "module":
            continue
        defined = _defined_as(name)
        if defined and defined != name and defined in objects:
            objects[name] = entry._replace(aliased=True)


def setup(app) -> None:
    app.connect("doctree-resolved", _problematic_as_text)
    app.connect("autodoc-skip-member", _skip_class_valued_fields)
    app.connect("env-check-consistency", _reexports_as_aliases)
