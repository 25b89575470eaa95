"""Validation on real history: lockdown "as estimated from history" vs status quo.

For each period, the scenario starts at ``as_of`` with only what was known then (cube vintage
cut at ``as_of``; effects learned from data and literature before it) and is compared with the
admissions observed over the next 4 weeks (read from the latest cube, which is only used for
scoring).

Run ``python -m scenarios.validation`` (with ``VIGIE_HOME`` pointing at an ingested store) to
print the table reported in ``scenarios/README.md``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scenarios.engine import run_scenario
from scenarios.schema import load_library_scenario

TERRITORIES = ("FR", "69", "13", "59", "75", "38")
PERIODS = {"2020-11": ("2020-10-25", "lockdown_2020_11"), "2021-04": ("2021-03-28",
                                                                        "lockdown_2021_04")}
WINDOW_DAYS = 28
TOLERANCE = 0.25  # issue 12: lockdown median 28-day admissions within 25 % of what happened


@dataclass
class Row:
    """Scores of one territory in one period (admissions, next 28 days)."""

    period: str
    territory: str
    observed_total: float
    lockdown_total: tuple[float, float, float]  # q05, median, q95 of the 28-day total
    status_quo_total: tuple[float, float, float]
    lockdown_daily_coverage: float  # share of days with the observation in the 90 % band
    status_quo_daily_coverage: float
    status_quo_median_above_days: float  # share of days where status-quo median > observed
    icu_peak: tuple[float, float, float] = (np.nan, np.nan, np.nan)  # lockdown: q05, med, q95
    icu_observed_peak: float = np.nan
    icu_capacity: float | None = None
    icu_prob_exceed: float | None = None
    r_now: float = np.nan  # median R now used by the projection
    r_basis: str = ""  # what R now was estimated from ("cases" or "admissions: <why>")

    @property
    def lockdown_error(self) -> float:
        """Relative error of the lockdown median 28-day total (+0.2 = 20 % too high)."""
        return self.lockdown_total[1] / self.observed_total - 1 if self.observed_total else np.nan

    def hit(self, tolerance: float = 0.25) -> bool:
        """Lockdown median within ``tolerance`` of what happened and status quo above it."""
        return bool(abs(self.lockdown_error) <= tolerance and self.status_quo_above)

    @property
    def icu_peak_inside(self) -> bool:
        return self.icu_peak[0] <= self.icu_observed_peak <= self.icu_peak[2]

    @property
    def lockdown_total_inside(self) -> bool:
        return self.lockdown_total[0] <= self.observed_total <= self.lockdown_total[2]

    @property
    def status_quo_above(self) -> bool:
        return self.status_quo_total[1] > self.observed_total

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "lockdown_total_inside": self.lockdown_total_inside,
                "status_quo_above": self.status_quo_above,
                "lockdown_error": self.lockdown_error, "hit": self.hit()}


def validate(period: str, settings: Any = None, territories: tuple[str, ...] = TERRITORIES,
             n_samples: int = 500, rt_basis: str | None = None,
             rt_pool: bool | None = None) -> list[Row]:
    """Run lockdown and status quo for one period and score them against what happened.

    Parameters
    ----------
    period:
        ``"2020-11"`` or ``"2021-04"`` (see :data:`PERIODS`).
    settings:
        Store settings (default: environment).
    territories:
        Codes or groups (``"departments"``); a territory of a group without recent admissions
        is skipped by the engine and has no row.
    rt_basis, rt_pool:
        How R now is estimated (default: the engine's, cases where they exist, départements
        pooled toward their région); ``"admissions"`` and ``False`` give the former method.
    """
    from features.store import open_cube

    as_of, lib_name = PERIODS[period]
    lock_def = load_library_scenario(lib_name)
    sq_def = {"name": "status_quo", "interventions": []}
    common = dict(as_of=as_of, territories=list(territories), n_samples=n_samples,
                  settings=settings, include_trajectories=False, return_projection=True,
                  rt_basis=rt_basis, rt_pool=rt_pool)
    lock_def = {**lock_def, "horizon_days": WINDOW_DAYS}
    sq_def = {**sq_def, "horizon_days": WINDOW_DAYS}
    lock = run_scenario(lock_def, **common)["_projection"]
    sq = run_scenario(sq_def, **common)["_projection"]
    assert lock.territories == sq.territories
    codes = lock.territories
    full = open_cube("daily", settings=settings)  # scoring only: the future as it happened
    start = pd.Timestamp(as_of)
    window = dict(territory=codes,
                  date=slice(start, start + pd.Timedelta(days=WINDOW_DAYS - 1)))
    obs = full["inc_hosp"].sel(**window).values.astype(float)
    icu_obs = full["icu"].sel(**window).values.astype(float)
    rows = []
    for i, t in enumerate(codes):
        o = obs[i]

        def band(p, i=i, o=o):
            x = p.samples["inc_hosp"][i]
            lo, med, hi = np.quantile(x, [0.05, 0.5, 0.95], axis=0)
            tot = np.quantile(x.sum(axis=1), [0.05, 0.5, 0.95])
            return (float(np.mean((o >= lo) & (o <= hi))), med,
                    tuple(round(float(v), 0) for v in tot))

        lc, _, ltot = band(lock)
        sc, smed, stot = band(sq)
        peaks = lock.samples["icu"][i].max(axis=1)
        cap = float(lock.capacity["icu"][i])
        with np.errstate(invalid="ignore"):
            icu_peak_obs = float(np.nanmax(icu_obs[i])) if np.isfinite(icu_obs[i]).any() \
                else np.nan
        rows.append(Row(
            period, t, float(np.nansum(o)), ltot, stot, round(lc, 3), round(sc, 3),
            round(float(np.mean(smed > o)), 3),
            icu_peak=tuple(round(float(v), 0) for v in np.quantile(peaks, [0.05, 0.5, 0.95])),
            icu_observed_peak=icu_peak_obs,
            icu_capacity=cap if np.isfinite(cap) else None,
            icu_prob_exceed=round(float((peaks > cap).mean()), 3) if np.isfinite(cap) else None,
            r_now=round(float(np.median(sq.r_now[i])), 3),
            r_basis=_basis_label(sq.r_basis[i] if sq.r_basis else {}),
        ))
    return rows


def _basis_label(info: dict[str, Any]) -> str:
    """``"cases R84, k 0.12"``: what R now came from (see scenarios.rnow.RNow.info)."""
    label = f"{info.get('basis', '')} {info.get('source') or ''}".strip()
    if info.get("shrink") not in (None, 1.0):
        label += f", k {info['shrink']:.2f}"
    return label + (f" ({info['note']})" if info.get("note") else "")


def hit_fraction(rows: list[Row], tolerance: float = TOLERANCE) -> float:
    """Share of rows where the lockdown median 28-day total is within ``tolerance`` of what
    happened and the status-quo median lies above it (the issue-12 criterion)."""
    return float(np.mean([r.hit(tolerance) for r in rows])) if rows else float("nan")


def markdown(rows: list[Row]) -> str:
    """The README table."""
    head = ("| period | territory | observed 28-d admissions | lockdown: median [90 %] | "
            "days in lockdown 90 % band | status quo: median [90 %] | status-quo median above "
            "obs. (days) |\n|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lt, st = r.lockdown_total, r.status_quo_total
        lines.append(
            f"| {r.period} | {r.territory} | {r.observed_total:,.0f} | {lt[1]:,.0f} "
            f"[{lt[0]:,.0f}–{lt[2]:,.0f}] | {r.lockdown_daily_coverage:.0%} | {st[1]:,.0f} "
            f"[{st[0]:,.0f}–{st[2]:,.0f}] | {r.status_quo_median_above_days:.0%} |"
        )
    return "\n".join(lines)


def markdown_icu(rows: list[Row]) -> str:
    """The README table of ICU occupancy (lockdown scenario)."""
    lines = ["| period | territory | ICU peak: median [90 %] | observed peak | DREES adult ICU "
             "beds | P(exceed) |", "|---|---|---|---|---|---|"]
    for r in rows:
        q = r.icu_peak
        cap = f"{r.icu_capacity:,.0f}" if r.icu_capacity is not None else "-"
        p = f"{r.icu_prob_exceed:.2f}" if r.icu_prob_exceed is not None else "-"
        lines.append(f"| {r.period} | {r.territory} | {q[1]:,.0f} [{q[0]:,.0f}–{q[2]:,.0f}] | "
                     f"{r.icu_observed_peak:,.0f} | {cap} | {p} |")
    return "\n".join(lines)


def main() -> int:
    rows = [r for p in PERIODS for r in validate(p)]
    print(markdown(rows))
    print()
    print(markdown_icu(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
