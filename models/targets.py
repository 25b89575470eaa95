"""Forecast targets and the Forecast Hub CSV format.

A target names a cube variable, its frequency and how its horizons are labelled:
``2 wk ahead inc hosp`` ends on the Saturday of the second week starting on the (Monday)
forecast date; ``7 day ahead hosp`` is the forecast date + 7 days.

Vigie's built-in targets (:data:`TARGETS`: hospital and ICU admissions and beds, emergency
visits, unemployment) keep their names, Hub labels and horizons. Any other count or rate of the
cube is a target too, derived from its indicator metadata (:func:`derive_target`: frequency,
count or rate, aggregation; horizons and Hub label by frequency), so a city's own indicator
(``food_aid_requests``) is forecast, backtested, calibrated and served with no code change:
:func:`resolve_target` finds either kind, :func:`cube_targets` lists every target of a cube.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from models.base import QUANTILES

HUB_COLUMNS = [
    "forecast_date", "target", "target_end_date", "location", "type", "quantile", "value"
]


@dataclass(frozen=True)
class Target:
    """What is forecast.

    Attributes
    ----------
    name:
        CLI name (``inc_hosp``).
    variable:
        Cube variable (``inc_hosp``, ``er_visits_covid_rate``, …).
    frequency:
        Cube frequency it is read from (``weekly``, ``daily``, ``quarterly``).
    horizons:
        Default horizons, in ``unit``.
    label:
        Hub target suffix (``inc hosp``).
    unit:
        ``wk``, ``day`` or ``qtr``.
    levels:
        Territory levels it exists at.
    pool:
        Cube territory levels a model pooling the hierarchy (``gbm``, ``growth``) learns from.
    derived:
        True for a target derived from indicator metadata (:func:`derive_target`).
    min_periods:
        Observed periods a level needs before the fitted models are used; fewer (a city's
        first months), every model is replaced by the Hub baseline, logged and recorded in
        the forecast's metadata (``short_history``). 0: never (the built-in targets, whose
        members fall back series by series).
    kind:
        ``count`` or ``rate``.
    """

    name: str
    variable: str
    frequency: str
    horizons: tuple[int, ...]
    label: str
    unit: str
    levels: tuple[str, ...] = ("national", "region", "department")
    pool: tuple[str, ...] = ("country", "region", "department")
    derived: bool = False
    min_periods: int = 0
    kind: str = "count"

    def hub_target(self, n: int) -> str:
        return f"{n} {self.unit} ahead {self.label}"

    def end_date(self, forecast_date: pd.Timestamp, n: int) -> pd.Timestamp:
        """Date the ``n``-ahead target refers to (end of its week/quarter for sums)."""
        fd = pd.Timestamp(forecast_date).normalize()
        if self.unit == "wk":
            to_saturday = (5 - fd.weekday()) % 7
            return fd + pd.Timedelta(days=to_saturday + 7 * (n - 1))
        if self.unit == "day":
            return fd + pd.Timedelta(days=n)
        return fd + pd.offsets.QuarterEnd(0) + pd.offsets.QuarterEnd(n - 1)


TARGETS: dict[tuple[str, str], Target] = {
    (t.name, t.frequency): t
    for t in [
        Target("inc_hosp", "inc_hosp", "weekly", (1, 2, 3, 4), "inc hosp", "wk"),
        Target("inc_icu", "inc_icu", "weekly", (1, 2, 3, 4), "inc icu", "wk"),
        Target("inc_hosp", "inc_hosp", "daily", (7, 14), "inc hosp", "day"),
        Target("inc_icu", "inc_icu", "daily", (7, 14), "inc icu", "day"),
        Target("hosp", "hosp", "daily", (7, 14), "hosp", "day"),
        Target("icu", "icu", "daily", (7, 14), "icu", "day"),
        Target(
            "er_visits", "er_visits_covid_rate", "weekly", (1, 2, 3, 4), "er visits", "wk",
            ("national", "region"), kind="rate",
        ),
        Target(
            "unemployment", "unemployment_rate", "quarterly", (1, 2), "unemployment", "qtr",
            ("national", "region", "department"), kind="rate",
        ),
    ]
}
#: Frequency used when the CLI is not told one.
DEFAULT_FREQUENCY = {
    "inc_hosp": "weekly", "inc_icu": "weekly", "hosp": "daily", "icu": "daily",
    "er_visits": "weekly", "unemployment": "quarterly",
}
LEVELS = {
    "national": ("country",), "region": ("region",), "department": ("department",),
    "epci": ("epci",), "commune": ("commune",),
    "all": ("country", "region", "department"),
}
#: Cube territory level → forecast level (overseas collectivités have none).
LEVEL_OF = {"country": "national", "region": "region", "department": "department",
            "epci": "epci", "commune": "commune"}
#: Horizons, their unit and the observed periods below which a derived target falls back to
#: the baseline (half a year of weeks, eight weeks of days, two years of quarters), by
#: frequency. Yearly indicators (populations, bed capacities) are not forecast.
DERIVED_HORIZONS: dict[str, tuple[tuple[int, ...], str, int]] = {
    "daily": ((7, 14), "day", 56),
    "weekly": ((1, 2, 3, 4), "wk", 26),
    "quarterly": ((1, 2, 3, 4), "qtr", 8),
}
_NAME = re.compile(r"^[a-z][a-z0-9_]{2,62}$")


def get_target(name: str, frequency: str | None = None) -> Target:
    frequency = frequency or DEFAULT_FREQUENCY.get(name, "weekly")
    try:
        return TARGETS[(name, frequency)]
    except KeyError:
        known = ", ".join(f"{n}/{f}" for n, f in TARGETS)
        raise KeyError(f"unknown target {name}/{frequency}; known: {known}") from None


def indicator_kind(attrs: Mapping[str, Any]) -> str | None:
    """``count`` or ``rate`` for an indicator a forecast makes sense of (from its cube
    attributes), else None: values defined once for France (``national``: policy indices),
    codes, estimates without units of a count or rate (R(t), growth rates, doubling times)."""
    aggregation = str(attrs.get("aggregation", ""))
    if aggregation == "national":
        return None
    if int(attrs.get("count", 0) or 0):
        return "count"
    units = str(attrs.get("units", "")).lower()
    if aggregation == "population_mean" or "%" in units or "per 100" in units \
            or "/100" in units:
        return "rate"
    return None


def builtin_for(variable: str, frequency: str) -> Target | None:
    """The built-in target forecasting ``variable`` at ``frequency``, if any."""
    return next((t for t in TARGETS.values()
                 if t.variable == variable and t.frequency == frequency), None)


def derive_target(name: str, frequency: str, attrs: Mapping[str, Any],
                  levels: Iterable[str]) -> Target:
    """The target forecasting the cube indicator ``name`` at ``frequency``.

    Parameters
    ----------
    attrs:
        The indicator's cube attributes (:meth:`features.indicators.IndicatorSpec.attrs`:
        ``units``, ``aggregation``, ``count``).
    levels:
        Forecast levels (:data:`LEVEL_OF` values) where it is observed.

    Raises
    ------
    KeyError
        Not forecastable: a yearly indicator, neither a count nor a rate, a name that is not
        a cube identifier, or the variable of a built-in target (named in the message).
    """
    builtin = builtin_for(name, frequency)
    if (name, frequency) in TARGETS:
        return TARGETS[(name, frequency)]
    if builtin is not None:
        raise KeyError(f"{name} ({frequency}) is forecast as the target {builtin.name}")
    if frequency not in DERIVED_HORIZONS:
        raise KeyError(f"{name} is a {frequency} indicator: only daily, weekly and quarterly "
                       "indicators are forecast")
    if not _NAME.fullmatch(name):
        raise KeyError(f"{name!r} is not an indicator name")
    kind = indicator_kind(attrs)
    if kind is None:
        raise KeyError(f"{name} ({frequency}) is neither a count nor a rate (units "
                       f"{attrs.get('units', '')!r}, aggregation "
                       f"{attrs.get('aggregation', '')!r}): it is not forecast")
    horizons, unit, min_periods = DERIVED_HORIZONS[frequency]
    levels = tuple(lv for lv in LEVEL_OF.values() if lv in set(levels))
    return Target(name, name, frequency, horizons, name.replace("_", " "), unit, levels,
                  tuple(LEVELS[lv][0] for lv in levels), derived=True,
                  min_periods=min_periods, kind=kind)


def observed_levels(ds: xr.Dataset, variable: str) -> tuple[str, ...]:
    """Forecast levels where ``variable`` has at least one value in ``ds``."""
    seen = ds[variable].notnull().any("date").values
    kinds = set(np.asarray(ds["territory_level"].values)[seen].astype(str))
    return tuple(lv for kind, lv in LEVEL_OF.items() if kind in kinds)


CubeOpener = Callable[[str, Any], xr.Dataset]


def _datasets(opener: CubeOpener, frequencies: Iterable[str]):
    for frequency in frequencies:
        try:
            yield frequency, opener(frequency, None)
        except (KeyError, LookupError, FileNotFoundError):
            continue  # the vintage has no dataset of that frequency


def resolve_target(name: str, frequency: str | None = None,
                   opener: CubeOpener | None = None) -> Target:
    """A built-in target, else the one derived from the cube indicator ``name`` (read through
    ``opener(frequency, None)``; default frequency: the first of daily, weekly, quarterly
    holding it, the built-in one for Vigie's own targets).

    Raises
    ------
    KeyError
        No such target: the message names the built-in ones and why ``name`` is not one.
    """
    if (name, frequency or DEFAULT_FREQUENCY.get(name, "")) in TARGETS or opener is None:
        return get_target(name, frequency)
    for freq, ds in _datasets(opener, [frequency] if frequency else DERIVED_HORIZONS):
        if name in ds.data_vars:
            return derive_target(name, freq, ds[name].attrs, observed_levels(ds, name))
    known = ", ".join(f"{n}/{f}" for n, f in TARGETS)
    where = f"{frequency} " if frequency else ""
    raise KeyError(f"unknown target {name}{'/' + frequency if frequency else ''}: no "
                   f"{where}indicator of that name in the cube; built-in targets: {known}, "
                   "and every count or rate of the cube (GET /api/v1/targets)")


def cube_targets(opener: CubeOpener) -> list[Target]:
    """Every target of a cube: the built-in ones whose variable it holds, then one per count
    or rate indicator at each of its daily, weekly and quarterly datasets (name order)."""
    out: list[Target] = []
    datasets = dict(_datasets(opener, DERIVED_HORIZONS))
    for (_name, frequency), target in TARGETS.items():
        if frequency in datasets and target.variable in datasets[frequency].data_vars:
            out.append(target)
    for frequency, ds in datasets.items():
        for name in sorted(map(str, ds.data_vars)):
            if builtin_for(name, frequency) is not None \
                    or indicator_kind(ds[name].attrs) is None or not _NAME.fullmatch(name):
                continue
            out.append(derive_target(name, frequency, ds[name].attrs,
                                     observed_levels(ds, name)))
    return out


def parse_hub_target(target: str, derived: Iterable[Target] = ()) -> tuple[Target, int]:
    """``'2 wk ahead inc hosp'`` → (Target, 2); the labels of ``derived`` targets (from
    :func:`cube_targets`, ``'2 wk ahead food aid requests'``) are recognised too."""
    parts = target.split(" ", 3)
    if len(parts) == 4 and parts[0].isdigit() and parts[2] == "ahead":
        n, unit, _ahead, label = parts
        for t in [*TARGETS.values(), *derived]:
            if t.unit == unit and t.label == label:
                return t, int(n)
    raise KeyError(f"unknown Hub target {target!r}")


def select_territories(
    ds: xr.Dataset, level: str, territories: list[str] | None = None,
    kinds: tuple[str, ...] | None = None,
) -> list[str]:
    """Territory codes of a level (optionally restricted to ``territories``), in cube order;
    ``kinds``: the cube territory levels meant (default: the level's, :data:`LEVELS`)."""
    kinds = LEVELS[level] if kinds is None else kinds
    codes = [
        str(t)
        for t, lv in zip(ds["territory"].values, ds["territory_level"].values, strict=True)
        if str(lv) in kinds
    ]
    if territories:
        wanted = {str(t) for t in territories}
        missing = wanted - set(codes)
        if missing:
            raise KeyError(f"territories not at level {level}: {sorted(missing)}")
        codes = [c for c in codes if c in wanted]
    return codes


def to_hub(fc: xr.DataArray, target: Target, forecast_date: pd.Timestamp) -> pd.DataFrame:
    """Hub CSV rows of a forecast whose ``horizon`` coordinate is the Hub's N.

    Parameters
    ----------
    fc:
        (territory, horizon, quantile) with ``target_date`` coordinate.
    """
    n_t, n_h, n_q = fc.shape
    horizons = np.asarray(fc["horizon"].values)
    frame = pd.DataFrame(
        {
            "forecast_date": pd.Timestamp(forecast_date).date().isoformat(),
            "target": np.repeat([target.hub_target(int(h)) for h in horizons], n_q).tolist() * n_t,
            "target_end_date": np.repeat(
                pd.DatetimeIndex(fc["target_date"].values).strftime("%Y-%m-%d"), n_q
            ).tolist() * n_t,
            "location": np.repeat(fc["territory"].values.astype(str), n_h * n_q),
            "type": "quantile",
            "quantile": np.tile(np.asarray(QUANTILES), n_t * n_h),
            "value": np.round(fc.values.reshape(-1), 3),
        }
    )
    return frame[HUB_COLUMNS]


def from_hub(frame: pd.DataFrame, derived: Iterable[Target] = ()) -> pd.DataFrame:
    """Wide table (one row per forecast, one ``q…`` column per quantile) from Hub rows
    (``derived``: the derived targets whose labels may appear, see :func:`parse_hub_target`)."""
    frame = frame[frame["type"] == "quantile"].copy()
    frame["location"] = frame["location"].astype(str)
    derived = list(derived)
    parsed = {t: parse_hub_target(t, derived) for t in frame["target"].unique()}
    frame["target_name"] = frame["target"].map(lambda t: parsed[t][0].name)
    frame["frequency"] = frame["target"].map(lambda t: parsed[t][0].frequency)
    frame["horizon"] = frame["target"].map(lambda t: parsed[t][1])
    keys = [
        "model", "forecast_date", "target_name", "frequency", "horizon", "target_end_date",
        "location",
    ]
    if "model" not in frame:
        frame["model"] = "model"
    wide = frame.pivot_table(index=keys, columns="quantile", values="value").reset_index()
    wide.columns = [c if isinstance(c, str) else f"q{c:g}" for c in wide.columns]
    wide["forecast_date"] = pd.to_datetime(wide["forecast_date"])
    wide["target_end_date"] = pd.to_datetime(wide["target_end_date"])
    return wide.rename(columns={"location": "territory"})
