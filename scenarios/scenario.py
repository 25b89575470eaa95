"""A scenario resolved against its ``as_of``: interventions and levers with absolute dates.

:func:`resolve` validates a definition (:mod:`scenarios.schema`) and turns its relative dates
(whole numbers of days from ``as_of``) into dates; :class:`Scenario` is what the engine runs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scenarios.levers import Vaccination, Variant, parse_vaccination, parse_variant
from scenarios.schema import (
    ScenarioValidationError,
    load_definition,
    territory_override_errors,
    validate_definition,
)


@dataclass(frozen=True)
class Intervention:
    """One intervention with absolute dates (``end`` inclusive; None = to the horizon)."""

    type: str
    start: pd.Timestamp
    end: pd.Timestamp | None
    ramp_days: int = 0
    effect: str | dict[str, float] = "history"
    hour: int | None = None
    territories: tuple[str, ...] | None = None
    lifts: tuple[str, ...] | None = None
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "label": self.label,
            "start": str(self.start.date()),
            "end": str(self.end.date()) if self.end is not None else None,
            "ramp_days": self.ramp_days,
            "effect": self.effect,
            "hour": self.hour,
            "territories": list(self.territories) if self.territories else None,
            "lifts": list(self.lifts) if self.lifts else None,
        }


@dataclass(frozen=True)
class Scenario:
    """A validated definition resolved against an ``as_of`` date."""

    name: str
    description: str
    as_of: pd.Timestamp
    horizon_days: int
    territories: tuple[str, ...]
    interventions: tuple[Intervention, ...]
    capacity: dict[str, Any]
    parameters: dict[str, Any]
    n_samples: int = 500
    seed: int = 20201025
    prior_policy: str = "as_of"
    rt_basis: str = "cases"
    rt_pool: bool = True
    vaccination: Vaccination | None = None
    variant: Variant | None = None
    source: str = "<definition>"
    raw: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The definition as resolved (JSON-able), for the ``inputs`` block of a result."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "as_of": str(self.as_of.date()),
            "horizon_days": self.horizon_days,
            "territories": list(self.territories),
            "interventions": [i.to_dict() for i in self.interventions],
            "capacity": self.capacity,
            "parameters": self.parameters,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "prior_policy": self.prior_policy,
            "rt_basis": self.rt_basis,
            "rt_pool": self.rt_pool,
            "vaccination": self.vaccination.to_dict() if self.vaccination else None,
            "variant": self.variant.to_dict() if self.variant else None,
        }


def _to_date(value: int | str | None, as_of: pd.Timestamp) -> pd.Timestamp | None:
    if value is None:
        return None
    if isinstance(value, int):
        return as_of + pd.Timedelta(days=value)
    return pd.Timestamp(value)


def resolve(
    definition: dict[str, Any] | str | Path,
    as_of: str | dt.date | pd.Timestamp | None = None,
    territories: list[str] | None = None,
) -> Scenario:
    """Validate a definition and resolve it to absolute dates.

    Parameters
    ----------
    definition:
        A mapping or the path of a YAML file.
    as_of:
        Overrides the file's ``as_of`` (first day not known; the projection starts on it).
    territories:
        Overrides the file's territory list.

    Raises
    ------
    ScenarioValidationError
        Invalid definition, or no ``as_of`` anywhere.
    """
    d, source = _validated(definition)
    if territories:
        bad = territory_override_errors(d, list(territories))
        if bad:
            raise ScenarioValidationError(bad, source)
    a = _as_of(as_of if as_of is not None else d.get("as_of"), source)
    ivs, errors = _interventions(d.get("interventions") or [], a)
    vac = d.get("vaccination")
    by = _to_date(vac["by"], a) if vac else None
    if by is not None and by < a:
        errors.append(f"vaccination.by: {by.date()} is before as_of {a.date()}")
    if errors:
        raise ScenarioValidationError(errors, source)
    return Scenario(
        name=d["name"],
        description=d.get("description", ""),
        as_of=a,
        horizon_days=int(d.get("horizon_days", 42)),
        territories=tuple(territories or d.get("territories") or ["FR"]),
        interventions=tuple(ivs),
        capacity=d.get("capacity", {}),
        parameters=d.get("parameters", {}),
        n_samples=int(d.get("n_samples", 500)),
        seed=int(d.get("seed", 20201025)),
        prior_policy=d.get("prior_policy", "as_of"),
        rt_basis=d.get("rt_basis", "cases"),
        rt_pool=bool(d.get("rt_pool", True)),
        vaccination=parse_vaccination(vac, by),
        variant=parse_variant(d.get("variant")),
        source=source,
        raw=d,
    )


def _validated(definition: dict[str, Any] | str | Path) -> tuple[dict[str, Any], str]:
    """The validated, normalised definition and the file it came from."""
    if isinstance(definition, str | Path):
        d = load_definition(definition)
    else:
        src = definition.get("_source", "<definition>") if isinstance(
            definition, dict) else "<definition>"
        body = {k: v for k, v in definition.items() if k != "_source"} if isinstance(
            definition, dict) else definition
        d = validate_definition(body, src)
        d["_source"] = src
    source = d.pop("_source", "<definition>")
    return d, source


def _as_of(a: Any, source: str) -> pd.Timestamp:
    """``as_of`` as a day of 2000-2099 (raises :class:`ScenarioValidationError`)."""
    if a is None:
        raise ScenarioValidationError(
            ["as_of: missing; give it in the file or with --as-of"], source
        )
    try:
        a = pd.Timestamp(a).normalize()
    except (ValueError, TypeError, OverflowError) as exc:
        raise ScenarioValidationError([f"as_of: {a!r} is not a date: {exc}"], source) from exc
    if not 2000 <= a.year <= 2099:
        raise ScenarioValidationError([f"as_of: {a.date()} is outside 2000-2099"], source)
    return a


def _interventions(items: list[dict[str, Any]],
                   a: pd.Timestamp) -> tuple[list[Intervention], list[str]]:
    """The interventions with absolute dates, and the errors of those ending before they
    start."""
    ivs, errors = [], []
    for i, iv in enumerate(items):
        start = _to_date(iv["start"], a)
        end = _to_date(iv.get("end"), a)
        if end is None and "duration_days" in iv:
            end = start + pd.Timedelta(days=iv["duration_days"] - 1)
        if end is not None and end < start:
            errors.append(f"interventions[{i}].end: {end.date()} is before start {start.date()}")
        hour = iv.get("hour")
        if iv["type"] == "curfew" and hour is None:
            hour = 21
        ivs.append(
            Intervention(
                type=iv["type"],
                start=start,
                end=end,
                ramp_days=int(iv.get("ramp_days", 0)),
                effect=iv.get("effect", "history"),
                hour=hour,
                territories=tuple(iv["territories"]) if iv.get("territories") else None,
                lifts=tuple(iv["lifts"]) if iv.get("lifts") else None,
                label=iv.get("label", ""),
            )
        )
    return ivs, errors
