"""pyproject.toml and environment.yml must name the same dependencies; the README's commands
must be the scripts CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        deps += extra
    return {_name(d) for d in deps}


def environment_dependencies() -> set[str]:
    names = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:", 1)[1].splitlines():
        m = re.match(r"^\s+-\s+(.+?)\s*(#.*)?$", line)
        if not m or m.group(1).startswith(("-e", "pip", "python")) or m.group(1).endswith(":"):
            continue
        names.add(_name(m.group(1)))
    return names


def test_pyproject_and_environment_agree() -> None:
    py, env = pyproject_dependencies(), environment_dependencies()
    assert py - env == set(), f"in pyproject.toml but not environment.yml: {sorted(py - env)}"
    assert env - py == set(), f"in environment.yml but not pyproject.toml: {sorted(env - py)}"


def test_torch_pair_pinned_everywhere() -> None:
    for path in ("environment.yml", "scripts/setup.sh"):
        text = (ROOT / path).read_text()
        assert "torch==2.14.1" in text and "torchvision==0.29.1" in text, path


def test_readme_commands_are_the_ci_scripts() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/setup.sh && bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_unit_tests_log_their_slowest() -> None:
    """Every CI log names the slowest unit tests, so CI time can be watched test by test."""
    lines = (ROOT / "scripts" / "test.sh").read_text().splitlines()
    unit = [line for line in lines if line.startswith("python -m pytest tests")]
    assert len(unit) == 1 and "--durations=30" in unit[0].split(), unit
