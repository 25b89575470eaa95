"""Forecast targets and the Forecast Hub CSV format.

A target names a cube variable, its frequency and how its horizons are labelled:
``2 wk ahead inc hosp`` ends on the Saturday of the second week starting on the (Monday)
forecast date; ``7 day ahead hosp`` is the forecast date + 7 days.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    name: str
    variable: str
    frequency: str
    horizons: tuple[int, ...]
    label: str
    unit: str
    levels: tuple[str, ...] = ("national", "region", "department")

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
            ("national", "region"),
        ),
        Target(
            "unemployment", "unemployment_rate", "quarterly", (1, 2), "unemployment", "qtr",
            ("national", "region", "department"),
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
    "all": ("country", "region", "department"),
}


def get_target(name: str, frequency: str | None = None) -> Target:
    frequency = frequency or DEFAULT_FREQUENCY.get(name, "weekly")
    try:
        return TARGETS[(name, frequency)]
    except KeyError:
        known = ", ".join(f"{n}/{f}" for n, f in TARGETS)
        raise KeyError(f"unknown target {name}/{frequency}; known: {known}") from None


def parse_hub_target(target: str) -> tuple[Target, int]:
    """``'2 wk ahead inc hosp'`` → (Target, 2)."""
    n, unit, _ahead, label = target.split(" ", 3)
    for t in TARGETS.values():
        if t.unit == unit and t.label == label:
            return t, int(n)
    raise KeyError(f"unknown Hub target {target!r}")


def select_territories(
    ds: xr.Dataset, level: str, territories: list[str] | None = None
) -> list[str]:
    """Territory codes of a level (optionally restricted to ``territories``), in cube order."""
    kinds = LEVELS[level]
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


def from_hub(frame: pd.DataFrame) -> pd.DataFrame:
    """Wide table (one row per forecast, one ``q…`` column per quantile) from Hub rows."""
    frame = frame[frame["type"] == "quantile"].copy()
    frame["location"] = frame["location"].astype(str)
    parsed = {t: parse_hub_target(t) for t in frame["target"].unique()}
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
