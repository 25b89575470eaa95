"""Reproduction number, growth rate and doubling time: daily cube variables.

For every territory with an incidence series, and every day ``t``, from data dated ``<= t``
only (a backtest reading the cube ``as_of`` a date sees exactly what it would have computed):

``rt``, ``rt_lower``, ``rt_upper``
    Posterior mean and 95 % credible interval of the instantaneous reproduction number over the
    7 days ending on ``t``, by the renewal equation of Cori et al. 2013 (*A new framework and
    software to estimate time-varying reproduction numbers during epidemics*, Am J Epidemiol
    178(9):1505, doi:10.1093/aje/kwt133; the method of EpiEstim). With incidence ``I`` and the
    generation interval ``w`` (``w_0 = 0``), the total infectiousness is
    ``Lambda_s = sum_{k>=1} w_k I_{s-k}``; with a Gamma(a, b) prior on R, constant over the
    window ``W = [t - 6, t]``, the posterior is

        R | I ~ Gamma(shape = a + sum_W I,  scale = 1 / (1/b + sum_W Lambda)).

    Prior a = 1, b = 5 (mean 5, SD 5: EpiEstim's vague default). Generation interval: Weibull,
    mean 5.0 d, SD 1.9 d (Ferretti et al. 2020, Science 368:eabb6936; via
    ``/work/shared/REFERENCE-EPI.md`` §2, which flags these values as not re-checked against
    the paper), discretised on whole days up to 20 d exactly as
    :meth:`scenarios.params.EpiParameters.generation_interval` does.
``growth_rate``
    Per day: ``ln(S_t / S_{t-7}) / 7`` with ``S_t`` the 7-day sum ending on ``t`` (the growth of
    this week's total over last week's; it describes the two weeks ending on ``t``).
``doubling_time``
    ``ln 2 / growth_rate`` days; negative = halving time. NaN when ``|growth_rate|`` is below
    ``ln 2 / 180`` per day (doubling or halving slower than six months: "flat").
``epidemic_basis``
    1 = estimated from positive cases ``inc_cases`` (France and régions, SI-DEP, from
    2020-05-13), 2 = from hospital admissions ``inc_hosp`` (départements, and any day the cases
    estimate is unavailable: before cases start, after they stop, or too few), 0 = no estimate.
    All five values of a (territory, day) come from the same basis.

What each basis measures. R of a reported series is the R of infections shifted by the delay
from infection to report: for admissions about one infection-to-admission delay, ≈ 10-11 days
(incubation median 5.1 d, Lauer et al. 2020, plus symptom onset to admission 3-9 d, Linton et
al. 2020; mean 10.6 d in :mod:`scenarios.params`), so ``rt`` from admissions dated ``t`` describes
infections around ``t - 10`` d and turns about ten days after the epidemic does; from cases,
incubation plus the delay to a test (the latter not in the reference sheet), about a week.
Measured on the shipped data (``bench/epidemic_risk.py``, 2020-07 to 2021-11): R from
admissions lags R from cases by 8 days for France, 3 to 13 days in the largest régions.

Data handling (Vigie's choices, recorded in the catalog by :meth:`EpidemicMethod.parameters`):

- Day-of-week effects: the window is whole weeks (7 days), so both ``sum_W I`` and
  ``sum_W Lambda`` (a weighted sum of whole-week totals) are free of the weekly reporting cycle
  of cases; public holidays are not corrected.
- Small counts: no estimate unless the window holds at least 12 events **and** at least 12
  expected at R = 1 (``sum_W Lambda``): 12 is the minimum Cori et al. 2013 recommend (posterior
  coefficient of variation <= 0.3); the second condition refuses R from a near-empty past
  (sporadic events after weeks of none). Growth needs 12 events in each of the two weeks.
- Gaps: a missing day (NaN) is unknown, never zero. A window with a missing day gives no
  estimate; ``Lambda_s`` is rescaled by the generation-interval mass of the observed days before
  ``s`` and refused below 90 % (so estimates start about two weeks after a series does, and
  resume the same way after a gap).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from features.indicators import IndicatorSpec

if TYPE_CHECKING:
    import xarray as xr


class Frame(Protocol):
    """What :func:`add_indicators` reads and fills: the daily :class:`features.cube.Frame`
    (named by its shape, so that this module, which the cube imports, does not import it)."""

    arrays: dict[str, np.ndarray]
    specs: dict[str, IndicatorSpec]


BASIS_NONE, BASIS_CASES, BASIS_ADMISSIONS = 0, 1, 2
#: Input indicator of each basis, in order of preference.
BASIS_INPUTS: dict[int, str] = {BASIS_CASES: "inc_cases", BASIS_ADMISSIONS: "inc_hosp"}
OUTPUTS = ("rt", "rt_lower", "rt_upper", "growth_rate", "doubling_time")


@dataclass(frozen=True)
class EpidemicMethod:
    """Parameters of the estimators (all durations in days).

    Attributes
    ----------
    gi_mean, gi_sd, gi_max_days:
        Generation interval, Weibull, mean 5.0 d and SD 1.9 d (Ferretti et al. 2020),
        truncated at 20 d.
    window_days:
        Length of the Cori window and of the growth-rate weeks; a multiple of 7 so that the
        weekly reporting cycle cancels.
    prior_shape, prior_scale:
        Gamma prior on R (Cori et al. 2013 / EpiEstim default: mean 5, SD 5).
    min_events:
        Minimum events in a window (observed, and expected at R = 1) for an estimate: 12
        (Cori et al. 2013, posterior coefficient of variation <= 0.3).
    min_gi_coverage:
        Minimum generation-interval mass on observed days for ``Lambda`` (0.9).
    credible_level:
        Mass of the credible interval (0.95: 2.5 % and 97.5 % quantiles).
    min_abs_growth:
        Below this absolute growth rate (per day) the doubling time is NaN: ``ln 2 / 180``.
    """

    gi_mean: float = 5.0
    gi_sd: float = 1.9
    gi_max_days: int = 20
    window_days: int = 7
    prior_shape: float = 1.0
    prior_scale: float = 5.0
    min_events: float = 12.0
    min_gi_coverage: float = 0.9
    credible_level: float = 0.95
    min_abs_growth: float = float(np.log(2) / 180)

    def __post_init__(self) -> None:
        if self.window_days <= 0 or self.window_days % 7:
            raise ValueError(f"window_days must be a positive multiple of 7 (whole weeks, so that "
                             f"the weekly reporting cycle cancels), found {self.window_days}")
        if not 0 < self.credible_level < 1:
            raise ValueError(f"credible_level must lie in (0, 1), found {self.credible_level}")

    def generation_interval(self) -> np.ndarray:
        """Discrete generation interval ``w[s]``, s = 0..gi_max_days, ``w[0] = 0``, sum 1."""
        return generation_interval(self.gi_mean, self.gi_sd, self.gi_max_days)

    def parameters(self) -> dict:
        """The method and its parameters, with sources, for the catalog's fitted parameters."""
        return {
            "method": "Cori et al. 2013 renewal equation, Gamma posterior (EpiEstim)",
            "reference": "Cori A, Ferguson NM, Fraser C, Cauchemez S. Am J Epidemiol "
                         "2013;178(9):1505-12, doi:10.1093/aje/kwt133",
            "generation_interval": {"distribution": "weibull", "mean_days": self.gi_mean,
                                    "sd_days": self.gi_sd, "max_days": self.gi_max_days,
                                    "source": "Ferretti et al. 2020, Science (REFERENCE-EPI §2)"},
            **{k: v for k, v in asdict(self).items() if not k.startswith("gi_")},
            "credible_interval": "equal-tailed; exact Gamma quantiles below shape "
                                 f"{WILSON_HILFERTY_MIN_SHAPE:g}, Wilson-Hilferty above "
                                 "(relative error < 3e-5)",
            "growth_rate": f"ln(S_t / S_(t-{self.window_days})) / {self.window_days}, S = "
                           f"{self.window_days}-day sum ending t",
            "basis": {str(k): v for k, v in BASIS_INPUTS.items()},
        }


def generation_interval(mean: float = 5.0, sd: float = 1.9, max_days: int = 20) -> np.ndarray:
    """Weibull generation interval discretised on whole days.

    Day ``s`` gets ``P(s - 0.5 < X <= s + 0.5)`` (day 1 also takes ``(0, 0.5]``), ``w[0] = 0``,
    renormalised to sum 1 over ``0..max_days``.

    Parameters
    ----------
    mean, sd:
        Days.
    max_days:
        Last day kept.

    Returns
    -------
    np.ndarray
        Shape ``(max_days + 1,)``.
    """
    cv = sd / mean

    def gap(k: float) -> float:
        g1, g2 = special.gamma(1 + 1 / k), special.gamma(1 + 2 / k)
        return float(np.sqrt(g2 / g1**2 - 1) - cv)

    shape = optimize.brentq(gap, 0.2, 50.0)
    scale = mean / special.gamma(1 + 1 / shape)
    edges = np.arange(max_days + 2) - 0.5
    edges[0] = 0.0
    mass = np.diff(stats.weibull_min(shape, scale=scale).cdf(edges))
    mass[0] = 0.0
    return mass / mass.sum()


def trailing_sum(x: np.ndarray, days: int) -> np.ndarray:
    """Sum over the ``days`` days ending on each day; NaN if any of them is NaN or missing.

    Parameters
    ----------
    x:
        Shape ``(..., D)``, one column per consecutive day.

    Returns
    -------
    np.ndarray
        Same shape; the first ``days - 1`` columns are NaN.
    """
    pad = np.zeros(x.shape[:-1] + (1,))
    total = np.concatenate([pad, np.cumsum(np.nan_to_num(x), axis=-1)], axis=-1)
    missing = np.concatenate([pad, np.cumsum(np.isnan(x), axis=-1)], axis=-1)
    out = np.full(x.shape, np.nan)
    out[..., days - 1:] = total[..., days:] - total[..., :-days]
    gaps = np.zeros(x.shape, dtype=bool)
    gaps[..., days - 1:] = (missing[..., days:] - missing[..., :-days]) > 0
    out[gaps] = np.nan
    return out


def infectiousness(incidence: np.ndarray, w: np.ndarray, min_coverage: float = 0.9
                   ) -> np.ndarray:
    """Total infectiousness ``Lambda_t = sum_{s>=1} w_s I_{t-s}``, NaN-aware.

    Missing days (NaN, and days before the series) contribute nothing; the sum is divided by
    the generation-interval mass of the observed days, and is NaN below ``min_coverage``.

    Parameters
    ----------
    incidence:
        Shape ``(..., D)``, events/day.
    w:
        Generation interval, shape ``(G + 1,)``, ``w[0] = 0``.

    Returns
    -------
    np.ndarray
        Same shape as ``incidence``.
    """
    observed = ~np.isnan(incidence)
    filled = np.where(observed, incidence, 0.0)
    lam = np.zeros(incidence.shape)
    coverage = np.zeros(incidence.shape)
    for s in range(1, min(len(w), incidence.shape[-1])):
        if w[s] > 0:
            lam[..., s:] += w[s] * filled[..., :-s]
            coverage[..., s:] += w[s] * observed[..., :-s]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(coverage >= min_coverage, lam / coverage, np.nan)


def reproduction_number(incidence: np.ndarray, method: EpidemicMethod | None = None,
                        interval: bool = True) -> dict[str, np.ndarray]:
    """Cori et al. 2013 estimate of R over the window ending on each day.

    Parameters
    ----------
    incidence:
        Shape ``(..., D)`` events/day on consecutive days, NaN = not observed.
    method:
        Parameters (default :class:`EpidemicMethod`).
    interval:
        Compute the credible interval (the costly part); False leaves it NaN.

    Returns
    -------
    dict
        ``rt`` (posterior mean), ``rt_lower``, ``rt_upper`` (credible interval), ``shape``,
        ``scale`` (the Gamma posterior) and ``events`` (events in the window), each of the shape
        of ``incidence``; NaN where no estimate is made (see the module docstring).
    """
    method = method or EpidemicMethod()
    incidence = np.asarray(incidence, dtype=float)
    tau = method.window_days
    lam = infectiousness(incidence, method.generation_interval(), method.min_gi_coverage)
    events = trailing_sum(incidence, tau)
    expected = trailing_sum(lam, tau)
    ok = (events >= method.min_events) & (expected >= method.min_events)
    shape = np.where(ok, method.prior_shape + np.where(ok, events, 0.0), np.nan)
    scale = np.where(ok, 1.0 / (1.0 / method.prior_scale + np.where(ok, expected, 0.0)), np.nan)
    rt = np.where(ok, shape * scale, np.nan)
    lower, upper = (credible_interval(shape, scale, method.credible_level) if interval
                    else (np.full(rt.shape, np.nan),) * 2)
    return {"rt": rt, "rt_lower": lower, "rt_upper": upper, "shape": shape, "scale": scale,
            "events": np.where(ok, events, np.nan)}


#: Above this Gamma shape the Wilson-Hilferty approximation replaces the exact quantile: its
#: relative error there is below 3e-5 at the 2.5 % and 97.5 % quantiles (checked against
#: ``scipy.special.gammaincinv``, which costs ~3 µs a call: most of the cube's build time here).
WILSON_HILFERTY_MIN_SHAPE = 100.0


def credible_interval(shape: np.ndarray, scale: np.ndarray, level: float = 0.95
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval of Gamma(shape, scale) posteriors (NaN where shape is NaN)."""
    tail = (1.0 - level) / 2
    bounds = []
    for q in (tail, 1.0 - tail):
        out = np.full(np.shape(shape), np.nan)
        exact = shape < WILSON_HILFERTY_MIN_SHAPE
        approx = shape >= WILSON_HILFERTY_MIN_SHAPE
        # Shapes are 1 + a count: few distinct values below the cut-off.
        distinct, where = np.unique(shape[exact], return_inverse=True)
        out[exact] = special.gammaincinv(distinct, q)[where.ravel()] * scale[exact]
        a = shape[approx]
        z = special.ndtri(q)
        out[approx] = a * (1 - 1 / (9 * a) + z * np.sqrt(1 / (9 * a))) ** 3 * scale[approx]
        bounds.append(out)
    return bounds[0], bounds[1]


def growth(incidence: np.ndarray, method: EpidemicMethod | None = None
           ) -> dict[str, np.ndarray]:
    """Daily growth rate from week-over-week sums, and doubling (negative: halving) time.

    Parameters
    ----------
    incidence:
        Shape ``(..., D)`` events/day, NaN = not observed.

    Returns
    -------
    dict
        ``growth_rate`` (per day) and ``doubling_time`` (days), shape of ``incidence``.
    """
    method = method or EpidemicMethod()
    tau = method.window_days
    this_week = trailing_sum(np.asarray(incidence, dtype=float), tau)
    last_week = np.full(this_week.shape, np.nan)
    last_week[..., tau:] = this_week[..., :-tau]
    ok = (this_week >= method.min_events) & (last_week >= method.min_events)
    rate = np.full(this_week.shape, np.nan)
    rate[ok] = np.log(this_week[ok] / last_week[ok]) / tau
    steep = ok & (np.abs(np.nan_to_num(rate)) >= method.min_abs_growth)
    doubling = np.full(rate.shape, np.nan)
    doubling[steep] = np.log(2.0) / rate[steep]
    return {"growth_rate": rate, "doubling_time": doubling}


def estimate(inputs: dict[int, np.ndarray | None], method: EpidemicMethod | None = None
             ) -> dict[str, np.ndarray]:
    """All epidemic indicators, each day from the first basis that gives an estimate.

    Parameters
    ----------
    inputs:
        Basis code (:data:`BASIS_CASES`, :data:`BASIS_ADMISSIONS`) → incidence array
        ``(territory, date)`` or None when absent; every array has the same shape. Bases are
        tried in increasing code order.
    method:
        Parameters (default :class:`EpidemicMethod`).

    Returns
    -------
    dict
        The arrays of :data:`OUTPUTS` (float) and ``epidemic_basis`` (int8, 0 = no estimate).
    """
    method = method or EpidemicMethod()
    arrays = [a for a in inputs.values() if a is not None]
    if not arrays:
        raise ValueError("no incidence series to estimate from")
    shape = np.shape(arrays[0])
    out = {name: np.full(shape, np.nan) for name in OUTPUTS}
    posterior = {"shape": np.full(shape, np.nan), "scale": np.full(shape, np.nan)}
    basis = np.zeros(shape, dtype=np.int8)
    for code in sorted(inputs):
        incidence = inputs[code]
        if incidence is None:
            continue
        values = {**reproduction_number(incidence, method, interval=False),
                  **growth(incidence, method)}
        take = (basis == BASIS_NONE) & ~np.isnan(values["rt"])
        for name in (*OUTPUTS, *posterior):
            (posterior if name in posterior else out)[name][take] = values[name][take]
        basis[take] = code
    # The interval once, on the cells kept (gammaincinv dominates the cost).
    out["rt_lower"], out["rt_upper"] = credible_interval(posterior["shape"], posterior["scale"],
                                                         method.credible_level)
    return {**out, "epidemic_basis": basis}


def indicator_specs() -> dict[str, IndicatorSpec]:
    """Metadata of the epidemic variables of the daily cube (never aggregated nor summed)."""
    source = ("Vigie, computed from inc_cases (SPF SI-DEP positive persons) where available, "
              "else inc_hosp (SPF SI-VIC hospital admissions); see epidemic_basis")
    licence = "Licence Ouverte 2.0 (inputs)"
    lag = ("From cases it describes infections about a week earlier (incubation + test delay); "
           "from admissions about one infection-to-admission delay (~10 days) earlier.")
    cori = ("Cori et al. 2013 renewal equation, 7-day window ending that day, generation "
            "interval Weibull mean 5.0 d SD 1.9 d (Ferretti et al. 2020); no estimate below 12 "
            "events in the window.")
    described = {
        "rt": ("1 (secondary infections per infection)",
               f"instantaneous reproduction number, posterior mean. {cori} {lag}"),
        "rt_lower": ("1 (secondary infections per infection)",
                     "lower bound (2.5 % quantile) of the 95 % credible interval of rt"),
        "rt_upper": ("1 (secondary infections per infection)",
                     "upper bound (97.5 % quantile) of the 95 % credible interval of rt"),
        "growth_rate": ("1/day", "daily growth rate ln(S_t / S_t-7) / 7, S = 7-day sum of the "
                        f"basis series ending that day; >= 12 events in each week. {lag}"),
        "doubling_time": ("days", "ln 2 / growth_rate; negative = halving time; NaN when "
                          "|growth_rate| < ln 2 / 180 per day (flat) or unknown"),
        "epidemic_basis": ("1 = cases (inc_cases), 2 = hospital admissions (inc_hosp)",
                           "the series rt, rt_lower, rt_upper, growth_rate and doubling_time "
                           "were estimated from on that day (0 = no estimate)"),
    }
    return {name: IndicatorSpec(name, "daily", units, description, source, licence, "none")
            for name, (units, description) in described.items()}


def add_indicators(frame: Frame, method: EpidemicMethod | None = None) -> dict:
    """Add the epidemic variables to the daily cube under construction.

    Call after the hierarchy is aggregated (régions and France need their admissions). Does
    nothing when neither ``inc_cases`` nor ``inc_hosp`` is in the frame.

    Parameters
    ----------
    frame:
        The daily :class:`features.cube.Frame` (consecutive days).

    Returns
    -------
    dict
        The method's parameters and, per basis, how many territories got at least one estimate
        from it (for the catalog).
    """
    method = method or EpidemicMethod()
    inputs = {code: frame.arrays.get(name) for code, name in BASIS_INPUTS.items()}
    if all(a is None for a in inputs.values()):
        return {}
    values = estimate(inputs, method)
    for name, spec in indicator_specs().items():
        frame.arrays[name] = values[name]
        frame.specs[name] = spec
    basis = values["epidemic_basis"]
    return {**method.parameters(),
            "territories_by_basis": {BASIS_INPUTS[code]: int((basis == code).any(axis=1).sum())
                                     for code in BASIS_INPUTS}}


def from_dataset(daily: xr.Dataset, method: EpidemicMethod | None = None) -> xr.Dataset:
    """The epidemic variables of a daily cube (e.g. with other parameters than the cube's).

    Parameters
    ----------
    daily:
        Dataset ``(territory, date)`` on consecutive days with ``inc_cases`` and/or
        ``inc_hosp``.

    Returns
    -------
    xarray.Dataset
        ``rt``, ``rt_lower``, ``rt_upper``, ``growth_rate``, ``doubling_time``,
        ``epidemic_basis`` on the same coordinates, with their attrs.
    """
    dates = pd.DatetimeIndex(daily["date"].values)
    if len(dates) > 1 and (np.diff(dates.values) != np.timedelta64(1, "D")).any():
        raise ValueError("the daily dataset's dates must be consecutive days")
    inputs = {code: (daily[name].transpose("territory", "date").values.astype(float)
                     if name in daily else None) for code, name in BASIS_INPUTS.items()}
    values = estimate(inputs, method)
    specs = indicator_specs()
    coords = daily.drop_vars(list(daily.data_vars))
    return coords.assign({name: (("territory", "date"), values[name], specs[name].attrs())
                          for name in specs})
