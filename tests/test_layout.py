"""The library's layout: one owner of the patch state, no import cycles, layers that import
only upwards, a command line that lists only what exists, a README map of every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from basam_lite.__main__ import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "basam_lite"


# --- one owner of the patch state ---------------------------------------------------------------


def _basam_attribute_uses(source: str) -> list[str]:
    """Attribute accesses, getattr-style calls, subscripts and dict/parameter look-ups that name a
    ``basam_*`` attribute."""
    uses = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("basam_"):
            uses.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call) and node.args:
            named = [a for a in node.args[:2] if isinstance(a, ast.Constant)]
            for arg in named:
                if isinstance(arg.value, str) and arg.value.startswith("basam_"):
                    uses.append(f"line {node.lineno}: {arg.value!r} passed to a call")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            value = node.slice.value
            if isinstance(value, str) and value.startswith("basam_"):
                uses.append(f"line {node.lineno}: [{value!r}]")
    return uses


ALLOWED_NAMES = {"basam_paper", "basam_vanilla"}
"""bench.py's case names (strings in its tables), not attributes."""


def test_only_patch_state_touches_basam_attributes() -> None:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "patch_state.py":
            continue
        uses = [
            u
            for u in _basam_attribute_uses(path.read_text())
            if not any(repr(n) in u for n in ALLOWED_NAMES)
        ]
        if uses:
            offenders[str(path.relative_to(ROOT))] = uses
    assert not offenders, f"only basam_lite/patch_state.py may name basam_ attributes: {offenders}"


def test_the_scan_sees_each_kind_of_use() -> None:
    source = (
        "a.basam_state\ngetattr(a, 'basam_config', None)\nx.__dict__['basam_gain']\n"
        "a.__dict__.pop('basam_state')\n"
    )
    assert len(_basam_attribute_uses(source)) == 4


# --- no import cycles ---------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(source: str, name: str, is_package: bool = False, type_only: bool = False) -> set[str]:
    """basam_lite modules that module ``name`` imports at run time (function-local imports
    included, ``if TYPE_CHECKING:`` blocks left out unless ``type_only``)."""
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(source)
    skipped = set()
    for node in ast.walk(tree):
        if type_only:
            break
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("basam_lite"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("basam_lite"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).exists() else target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk of ``graph`` (module -> imported modules) meets."""
    cycles = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d) :], d])
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def _graph(type_only: bool = False) -> dict[str, set[str]]:
    graph = {
        _module_name(p): _imports(
            p.read_text(), _module_name(p), p.name == "__init__.py", type_only=type_only
        )
        for p in PACKAGE.rglob("*.py")
    }
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_no_import_cycle() -> None:
    graph = _graph()
    assert "basam_lite.patch" in graph["basam_lite.capture"]
    assert "basam_lite.patch_state" in graph["basam_lite.resolution"]
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_no_import_cycle_with_type_only_imports() -> None:
    graph = _graph(type_only=True)
    assert "basam_lite.config" in graph["basam_lite.patch_state"]  # a TYPE_CHECKING import
    assert not _cycles(graph), f"import cycles through type-only imports: {_cycles(graph)}"


def test_the_cycle_finder_sees_local_imports_and_skips_type_checking() -> None:
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .patch import X\n"
        "def f():\n    from .predictor import y\n"
    )
    assert _imports(source, "basam_lite.resolution") == {"basam_lite.predictor"}
    assert _imports("from . import attention as a\n", "basam_lite.bench") == {
        "basam_lite.attention"
    }
    assert _imports(source, "basam_lite.resolution", type_only=True) == {
        "basam_lite.patch",
        "basam_lite.predictor",
    }
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]


# --- family classes stay behind the encoder interface ---------------------------------------------

FAMILY_PACKAGES = ("segment_anything", "sam2", "transformers", "mobile_sam")
"""Top-level packages of the SAM family's libraries: only basam_lite/encoders/ imports them."""


def _family_imports(source: str) -> list[str]:
    """``line N: module`` for every import (type-only and function-local included) of a family
    package."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        found += [
            f"line {node.lineno}: {n}" for n in names if n.partition(".")[0] in FAMILY_PACKAGES
        ]
    return found


def test_only_the_encoders_package_imports_family_classes() -> None:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        if rel.startswith("basam_lite/encoders/"):
            continue
        found = _family_imports(path.read_text())
        if found:
            offenders[rel] = found
    assert not offenders, f"family classes imported outside basam_lite/encoders/: {offenders}"
    assert _family_imports((PACKAGE / "encoders" / "sam1.py").read_text()), "the scan sees nothing"


def test_the_family_import_scan_sees_each_form() -> None:
    source = (
        "import sam2\nfrom segment_anything.modeling import Sam\nfrom .x import y\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from transformers import A\n"
        "def f():\n    import mobile_sam.modeling\n"
    )
    assert [f.split(": ")[1] for f in _family_imports(source)] == [
        "sam2",
        "segment_anything.modeling",
        "transformers",
        "mobile_sam.modeling",
    ]


# --- layers and the README map -----------------------------------------------------------------


def _library_map() -> dict[str, list[str]]:
    """Layer name -> the module paths its README table lists."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## The library\n")[1].split("\n### ")[0].split("\n## ")[0]
    layers: dict[str, list[str]] = {}
    current = None
    for line in section.splitlines():
        heading = re.match(r"\*\*(\w+)\*\*:", line)
        if heading:
            current = heading.group(1).lower()
            layers[current] = []
        cell = re.match(r"\| `(basam_lite/[^`]+)` \|", line)
        if cell and current:
            layers[current].append(cell.group(1))
    return layers


def _modules_of(entry: str) -> list[str]:
    if entry.endswith("/"):
        return sorted(_module_name(p) for p in (ROOT / entry).rglob("*.py"))
    return [_module_name(ROOT / entry)]


def test_readme_maps_every_module_in_three_layers() -> None:
    layers = _library_map()
    assert list(layers) == ["core", "experiments", "teaching"]
    listed = {m for entries in layers.values() for e in entries for m in _modules_of(e)}
    every = {_module_name(p) for p in PACKAGE.rglob("*.py")} - {"basam_lite"}
    assert every - listed == set(), "modules missing from the README's library map"
    assert listed - every == set(), "the README's library map lists modules that do not exist"


def test_layers_import_only_upwards() -> None:
    layers = _library_map()
    rank = {m: i for i, name in enumerate(layers) for e in layers[name] for m in _modules_of(e)}
    wrong = []
    for p in PACKAGE.rglob("*.py"):
        name = _module_name(p)
        if name not in rank:
            continue
        for dep in _imports(p.read_text(), name, p.name == "__init__.py"):
            if dep in rank and rank[dep] > rank[name]:
                wrong.append(f"{name} imports {dep}")
    assert not wrong, f"a layer imports from a layer below it: {wrong}"


# --- the command line ----------------------------------------------------------------------------


def test_every_command_exists(capsys) -> None:
    for name, (module, _) in COMMANDS.items():
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), name
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    listed = capsys.readouterr().out
    for name in COMMANDS:
        assert name in listed
    assert "demo" not in COMMANDS
