"""The sampled trajectories of a scenario and their summaries (peaks, exceedance, quantiles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

QUANTILES: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
INDICATORS: tuple[str, ...] = ("inc_hosp", "hosp", "icu", "er_visits_covid_rate",
                               "mobility_transit_stations")
#: Sampled variables (territory, sample, date), in the order of :attr:`Projection.samples`.
SAMPLED: tuple[str, ...] = ("inc_hosp", "inc_hosp_mean", "hosp", "icu", "er_visits_covid_rate",
                            "mobility_transit_stations")
OCCUPANCY = ("hosp", "icu")


@dataclass
class Projection:
    """Sampled trajectories of one scenario.

    Attributes
    ----------
    data : xarray.Dataset
        Coordinates ``territory`` (codes, with the cube's ``territory_level``,
        ``territory_parent`` and ``population``), ``sample`` and ``date`` (projection dates
        from ``as_of``). Variables (units in their ``attrs``): the trajectories
        (territory, sample, date) ``inc_hosp`` (with observation noise), ``inc_hosp_mean``
        (its expected value, used for summaries and monotonicity), ``hosp``, ``icu``,
        ``er_visits_covid_rate``, ``mobility_transit_stations``; ``r_now`` and
        ``r_now_admissions`` (territory, sample), R^A now after and before the case
        adjustment; ``hosp_capacity``, ``icu_capacity`` (territory,), beds (NaN = none
        configured); ``hosp_observed_last``, ``icu_observed_last`` (territory,), last observed
        stock (NaN when unknown).
    skipped : list of str
        Territories of a group selector left out for lack of recent admissions.
    r_basis : list of dict
        Per territory, what R now was estimated from (:meth:`scenarios.rnow.RNow.info`).
    levers : dict
        What the vaccination and variant levers used (coverage and share now, priors).

    The properties give the same figures as plain arrays: ``samples[indicator]`` (T, S, H),
    ``capacity[indicator]`` and ``observed_last[indicator]`` (T,), ``r_now`` (T, S).
    """

    data: xr.Dataset
    skipped: list[str] = field(default_factory=list)
    r_basis: list[dict[str, Any]] = field(default_factory=list)
    levers: dict[str, Any] = field(default_factory=dict)

    @property
    def territories(self) -> list[str]:
        return [str(t) for t in self.data["territory"].values]

    @property
    def dates(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.data["date"].values)

    @property
    def samples(self) -> dict[str, np.ndarray]:
        """Indicator -> array (T, S, H)."""
        return {k: self.data[k].transpose("territory", "sample", "date").values
                for k in SAMPLED}

    @property
    def capacity(self) -> dict[str, np.ndarray]:
        """Indicator -> beds (T,)."""
        return {k: self.data[f"{k}_capacity"].values for k in OCCUPANCY}

    @property
    def observed_last(self) -> dict[str, np.ndarray]:
        """Indicator -> last observed stock (T,)."""
        return {k: self.data[f"{k}_observed_last"].values for k in OCCUPANCY}

    @property
    def r_now(self) -> np.ndarray:
        """(T, S) draws of R^A on the window before ``as_of``."""
        return self.data["r_now"].transpose("territory", "sample").values

    @property
    def r_now_admissions(self) -> np.ndarray:
        """(T, S) draws of R^A now before the case adjustment."""
        return self.data["r_now_admissions"].transpose("territory", "sample").values


def summarise(proj: Projection) -> dict[str, dict[str, Any]]:
    """Peak, peak date, capacity, exceedance and bed-days per territory and indicator."""
    out: dict[str, dict[str, Any]] = {}
    dates, samples = proj.dates, proj.samples
    capacity, observed_last = proj.capacity, proj.observed_last
    r_now, r_now_adm = proj.r_now, proj.r_now_admissions
    for i, code in enumerate(proj.territories):
        per: dict[str, Any] = {"r_now": _q(r_now[i]), "r_now_admissions": _q(r_now_adm[i])}
        if proj.r_basis:
            per["r_basis"] = proj.r_basis[i]
        for ind in ("inc_hosp", "hosp", "icu"):
            # Admissions: the expected values, without daily observation noise, which would
            # inflate the peak (totals are unaffected in expectation).
            x = samples["inc_hosp_mean" if ind == "inc_hosp" else ind][i]  # (S, H)
            per[ind] = _peak_and_total(x, dates, "total" if ind == "inc_hosp" else "bed_days")
            if ind in OCCUPANCY:
                per[ind]["observed_last"] = _r(observed_last[ind][i])
                per[ind].update(_exceedance(x, float(capacity[ind][i]), dates))
        out[code] = per
    return out


def _peak_and_total(x: np.ndarray, dates: pd.DatetimeIndex, total: str) -> dict[str, Any]:
    """Peak of the median trajectory, its date, 90 % interval of the peak and the total of
    trajectories ``x`` (S, H)."""
    med = np.median(x, axis=0)
    peak_i = int(np.argmax(med))
    return {
        "peak": round(float(med[peak_i]), 1),
        "peak_date": str(dates[peak_i].date()),
        "peak_90": [round(float(v), 1) for v in np.quantile(x.max(axis=1), [0.05, 0.95])],
        total: _q(x.sum(axis=1)),
    }


def _exceedance(x: np.ndarray, cap: float, dates: pd.DatetimeIndex) -> dict[str, Any]:
    """Probability and first dates of beds ``x`` (S, H) over capacity ``cap`` (NaN: none)."""
    if not np.isfinite(cap):
        return {"capacity": None, "prob_exceed": None, "first_exceed_date": None}
    over = x > cap  # (S, H)
    p_day = over.mean(axis=0)
    first = np.where(p_day >= 0.5)[0]
    first5 = np.where(p_day >= 0.05)[0]
    return {
        "capacity": cap,
        "prob_exceed": round(float(over.any(axis=1).mean()), 3),
        "prob_exceed_7d": round(float(over[:, :7].any(axis=1).mean()), 3),
        "prob_exceed_14d": round(float(over[:, :14].any(axis=1).mean()), 3),
        "first_exceed_date": str(dates[first[0]].date()) if len(first) else None,
        "first_possible_exceed_date": str(dates[first5[0]].date()) if len(first5) else None,
        "bed_days_over_capacity": _q(np.maximum(x - cap, 0).sum(axis=1)),
    }


def _r(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 1)


def _q(x: np.ndarray) -> dict[str, float]:
    qs = np.quantile(x, [0.05, 0.5, 0.95])
    return {"q05": round(float(qs[0]), 2), "median": round(float(qs[1]), 2),
            "q95": round(float(qs[2]), 2)}


def quantile_table(proj: Projection, quantiles: tuple[float, ...] = QUANTILES) -> pd.DataFrame:
    """Long table ``territory, indicator, date, quantile, value`` of the sampled trajectories."""
    frames = []
    samples = proj.samples
    for ind in INDICATORS:
        arr = samples[ind]
        if not np.isfinite(arr).any():
            continue
        with np.errstate(all="ignore"):
            q = np.quantile(arr, quantiles, axis=1)  # (Q, T, H)
        qq, tt, hh = np.meshgrid(np.arange(len(quantiles)), np.arange(len(proj.territories)),
                                 np.arange(len(proj.dates)), indexing="ij")
        frames.append(pd.DataFrame({
            "territory": np.asarray(proj.territories)[tt.ravel()],
            "indicator": ind,
            "date": proj.dates[hh.ravel()].strftime("%Y-%m-%d"),
            "quantile": np.asarray(quantiles)[qq.ravel()],
            "value": np.round(q.ravel(), 3),
        }))
    df = pd.concat(frames, ignore_index=True)
    return df[np.isfinite(df["value"])]


