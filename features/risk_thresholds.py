"""The risk thresholds file: which inputs the criteria use and the threshold of each criterion
by level (``features/risk_thresholds.yaml`` by default, or the file named by
``VIGIE_RISK_THRESHOLDS``, :attr:`features.settings.Settings.risk_thresholds`).

A file is validated on load: :class:`RiskThresholdsError` lists every problem, each with the
file, line, field, what was expected and what was found. The levels and their meaning are in
:mod:`features.risk`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from features.errors import Problem
from features.settings import Settings

DEFAULT_THRESHOLDS = Path(__file__).resolve().parent / "risk_thresholds.yaml"
LEVEL_UNKNOWN = -1
LEVELS = (0, 1, 2, 3)
#: French labels shown on the dashboard.
LEVEL_LABELS: dict[int, str] = {
    LEVEL_UNKNOWN: "Niveau inconnu",
    0: "Vigilance",
    1: "Alerte",
    2: "Alerte renforcée",
    3: "Alerte maximale",
}
ICU_OCCUPANCY = "icu_occupancy"
#: Inputs a thresholds file may use: daily cube variables, and the computed ICU occupancy.
KNOWN_INPUTS = ("incidence_rate_7d", "incidence_rate_7d_65_plus", "positivity_rate_7d",
                ICU_OCCUPANCY, "rt", "growth_rate")
SCOPES = ("territory", "region")


class RiskThresholdsError(ValueError):
    """A thresholds file that cannot be used; lists every problem found."""

    def __init__(self, path: Path | str, problems: list[Problem]):
        self.path = str(path)
        self.problems = problems
        super().__init__("risk thresholds rejected:\n  " + "\n  ".join(map(str, problems)))


@dataclass(frozen=True)
class RiskInput:
    """One input of the criteria: ``name`` (cube variable or ``icu_occupancy``), French
    ``label`` and ``units``, and ``scope`` (``territory`` or ``region``)."""

    name: str
    label: str
    units: str
    scope: str


@dataclass(frozen=True)
class Criterion:
    """``input > threshold`` is required for ``level``."""

    level: int
    input: str
    threshold: float

    @property
    def variable(self) -> str:
        """Name of the criterion's variable in :func:`assess`'s output."""
        return f"criterion_{self.level}_{self.input}"


@dataclass(frozen=True)
class RiskThresholds:
    """Validated thresholds: their inputs, criteria by level, and where they come from."""

    name: str
    path: str
    citation: str
    urls: tuple[str, ...]
    notes: str
    inputs: dict[str, RiskInput]
    criteria: tuple[Criterion, ...]

    def of_level(self, level: int) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if c.level == level)


def load_thresholds(settings: Settings | None = None) -> RiskThresholds:
    """The thresholds in force: ``VIGIE_RISK_THRESHOLDS`` if set, else the shipped defaults.

    Raises
    ------
    RiskThresholdsError
        The file is missing, not YAML, or not of the expected shape.
    """
    settings = settings or Settings.from_env()
    return read_thresholds(settings.risk_thresholds or DEFAULT_THRESHOLDS)


#: The last validated file, by path and content: the service loads the thresholds on every
#: request, and parsing the YAML costs about as much as assessing every territory.
_CACHE: dict[tuple[str, bytes], RiskThresholds] = {}


def read_thresholds(path: Path | str) -> RiskThresholds:
    """Read and validate one thresholds file (see ``features/risk_thresholds.yaml``); the same
    content is not parsed twice in a row."""
    path = Path(path)
    try:
        key = (str(path), hashlib.sha256(path.read_bytes()).digest())
    except OSError:
        key = None
    if key in _CACHE:
        return _CACHE[key]
    thresholds = _read(path)
    _CACHE.clear()
    if key is not None:
        _CACHE[key] = thresholds
    return thresholds


def _read(path: Path) -> RiskThresholds:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RiskThresholdsError(name, [Problem(name, "a readable UTF-8 YAML file",
                                                 f"{type(exc).__name__}: {exc}")]) from exc
    try:
        data = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RiskThresholdsError(name, [Problem(
            name, "valid YAML", str(getattr(exc, "problem", exc)),
            line=mark.line + 1 if mark else None)]) from exc
    return _validate(data, name, lines)


def _key_lines(node: Any, path: tuple = ()) -> dict[tuple, int]:
    """1-based line of every mapping key / sequence item, by its path of keys."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            lines[sub] = key.start_mark.line + 1
            lines.update(_key_lines(value, sub))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, str(i))] = item.start_mark.line + 1
            lines.update(_key_lines(item, (*path, str(i))))
    return lines


class _Findings:
    """The problems of one thresholds file, each at the line of its path of keys."""

    def __init__(self, name: str, lines: dict[tuple, int]):
        self.name, self.lines = name, lines
        self.problems: list[Problem] = []

    def add(self, path: tuple, expected: str, found: Any) -> None:
        path = tuple(map(str, path))
        line = next((self.lines[path[:n]] for n in range(len(path), 0, -1)
                     if path[:n] in self.lines), None)
        self.problems.append(Problem(self.name, expected, repr(found), line=line,
                                     column=".".join(map(str, path)) or None))


def _validate(data: Any, name: str, lines: dict[tuple, int]) -> RiskThresholds:
    """The thresholds of a parsed file, or :class:`RiskThresholdsError` with every problem."""
    if not isinstance(data, dict):
        raise RiskThresholdsError(name, [Problem(name, "a mapping with name, source, inputs "
                                                 "and levels", repr(data))])
    found = _Findings(name, lines)
    for key in sorted(set(data) - {"name", "source", "inputs", "levels"}, key=str):
        found.add((key,), "one of name, source, inputs, levels", key)
    source, urls = _source(data.get("source"), found)
    inputs = _inputs(data.get("inputs"), found)
    criteria = _criteria(data.get("levels"), inputs, found)
    if found.problems:
        raise RiskThresholdsError(name, found.problems)
    return RiskThresholds(
        name=str(data.get("name") or Path(name).stem), path=name,
        citation=" ".join(source["citation"].split()), urls=tuple(urls),
        notes=" ".join(str(source.get("notes", "")).split()),
        inputs=inputs, criteria=tuple(sorted(criteria, key=lambda c: (c.level, c.input))))


def _source(source: Any, found: _Findings) -> tuple[dict, list[str]]:
    """``source``: its citation (required), notes and URLs."""
    if not isinstance(source, dict) or not isinstance(source.get("citation"), str) \
            or not source["citation"].strip():
        found.add(("source",), "a mapping with a non-empty 'citation' (the thresholds' source)",
                  source)
        source = {}
    urls = source.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        found.add(("source", "urls"), "a list of URLs", urls)
        urls = []
    return source, urls


def _inputs(raw_inputs: Any, found: _Findings) -> dict[str, RiskInput]:
    """``inputs``: input name (among :data:`KNOWN_INPUTS`) → label, units, scope."""
    inputs: dict[str, RiskInput] = {}
    if not isinstance(raw_inputs, dict) or not raw_inputs:
        found.add(("inputs",), "a mapping of input name to label, units, scope", raw_inputs)
        raw_inputs = {}
    for key, spec in raw_inputs.items():
        if key not in KNOWN_INPUTS:
            found.add(("inputs", key), f"an input among {', '.join(KNOWN_INPUTS)}", key)
            continue
        if not isinstance(spec, dict):
            found.add(("inputs", key), "a mapping with label, units, scope", spec)
            continue
        for field in ("label", "units"):
            if not isinstance(spec.get(field), str) or not spec[field].strip():
                found.add(("inputs", key, field), "a non-empty text", spec.get(field))
        if spec.get("scope", "territory") not in SCOPES:
            found.add(("inputs", key, "scope"), f"one of {', '.join(SCOPES)}", spec.get("scope"))
        inputs[key] = RiskInput(key, str(spec.get("label", "")), str(spec.get("units", "")),
                                str(spec.get("scope", "territory")))
    return inputs


def _criteria(levels: Any, inputs: dict[str, RiskInput], found: _Findings) -> list[Criterion]:
    """``levels``: level (1, 2, 3) → {declared input: threshold (a finite number)}."""
    criteria: list[Criterion] = []
    if not isinstance(levels, dict) or not levels:
        found.add(("levels",), "a mapping of level (1, 2, 3) to {input: threshold}", levels)
        levels = {}
    for level, rules in levels.items():
        if level not in LEVELS[1:] or isinstance(level, bool):
            found.add(("levels", level), "a level among 1, 2, 3", level)
            continue
        if not isinstance(rules, dict) or not rules:
            found.add(("levels", level), "a non-empty mapping {input: threshold}", rules)
            continue
        for key, threshold in rules.items():
            if key not in inputs:
                found.add(("levels", level, key), "an input declared under 'inputs'", key)
            elif isinstance(threshold, bool) or not isinstance(threshold, int | float) \
                    or not np.isfinite(threshold):
                found.add(("levels", level, key), "a number (the value must be over it)",
                          threshold)
            else:
                criteria.append(Criterion(int(level), key, float(threshold)))
    return criteria
