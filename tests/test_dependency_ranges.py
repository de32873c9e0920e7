"""The declared dependency ranges and the pins that prove their lower bounds agree.

``scripts/test-lowest`` installs every dependency at the version in ``constraints/lowest.txt``;
that proves the ranges in ``pyproject.toml`` only if each pin is the range's lower bound.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The extras the lowest run installs: all of them.
PROVEN_EXTRAS = ("fast", "embedded", "test", "bench")
#: Tools whose new releases can change lint/type results: pinned exactly, never a range.
EXACT_TOOLS = ("ruff", "mypy", "deptry", "import-linter")
#: Pinned though not declared by wsmq: a dependency's own lower bound (redis[hiredis] 8.1
#: requires hiredis>=3.2.0), pinned because wsmq.realtime.pubsub_reader relies on its reader.
TRANSITIVE = {"hiredis"}

_REQ = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(.*)$")
_SPEC = re.compile(r"^(==|>=|<=|<|>|!=|~=)\s*(\S+)$")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _declared() -> dict[str, dict[str, str]]:
    """``{name: {operator: version}}`` of the runtime dependencies and the proven extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in PROVEN_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    declared: dict[str, dict[str, str]] = {}
    for requirement in requirements:
        match = _REQ.match(requirement)
        assert match, requirement
        specs: dict[str, str] = {}
        for spec in filter(None, (s.strip() for s in match[2].split(","))):
            op = _SPEC.match(spec)
            assert op, f"unexpected specifier {spec!r} in {requirement!r}"
            specs[op[1]] = op[2]
        declared[_name(match[1])] = specs
    return declared


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints" / "lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints/lowest.txt pins exact versions only: {line!r}"
            pins[_name(name)] = version.strip()
    return pins


def test_every_lower_bound_is_pinned_to_itself() -> None:
    declared, pins = _declared(), _pins()
    for name, specs in declared.items():
        if "==" in specs:
            continue  # an exact pin is its own lowest version
        assert ">=" in specs, f"{name}: declare a lower bound (the lowest version CI proves)"
        bound, pin = _version(specs[">="]), _version(pins.get(name, "0"))
        # The pin is the first release of the bound's series: 3.12 -> 3.12.0, 6.2 -> 6.2.x.
        assert pin[: len(bound)] == bound and pin >= bound, (
            f"{name}: declared >={specs['>=']}, constraints/lowest.txt pins {pins.get(name)}"
        )
        if "<" in specs:
            assert pin < _version(specs["<"]), name


def test_nothing_else_is_pinned() -> None:
    declared = {name for name, specs in _declared().items() if "==" not in specs}
    assert set(_pins()) == declared | TRANSITIVE


@pytest.mark.parametrize("tool", EXACT_TOOLS)
def test_lint_and_type_tools_are_pinned_exactly(tool: str) -> None:
    assert set(_declared()[tool]) == {"=="}, f"{tool}: pin it (==) so a release cannot fail CI"
