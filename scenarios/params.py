"""Epidemiological parameters of the scenario engine, with their sources.

Every default below comes from ``/work/shared/REFERENCE-EPI.md`` (section 2) and can be
overridden in a scenario file under ``parameters:``. Distributions are discretised on whole
days, because admissions are daily counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class EpiParameters:
    """Natural-history and hospital-pathway parameters (all durations in days).

    Attributes
    ----------
    gi_mean, gi_sd:
        Generation interval, Weibull; mean 5.0 d, SD 1.9 d (Ferretti et al. 2020, Science).
    incubation_median, incubation_q975:
        Incubation period, log-normal; median 5.1 d, 97.5 % within 11.5 d (Lauer et al. 2020).
    onset_to_admission_mean, onset_to_admission_sd:
        Symptom onset to hospital admission, gamma; mean 5.0 d, SD 4.0 d — between the naive
        3-4 d and the truncation-adjusted 5-9 d of Linton et al. 2020 (no France-specific value
        was found). Infection-to-admission = incubation + this; its mean is about 10.6 d, which
        matches the 7-10 d fall of admissions after curfews/lockdowns (Spaccaferri et al. 2020).
    los_ward_median, los_ward_icu_path_median:
        Median total hospital stay without / with critical care: 8 d / 20 d (DREES Dossier 67,
        wave 1; Dossier 79 gives 9 d / 20 d for Sep 2020-Jan 2021).
    p_icu_path:
        Share of hospitalised patients who go through critical care: 0.19 (Salje et al. 2020;
        DREES: 81 % never in critical care). Only weights the two stay lengths of ``hosp``;
        the ICU admission share itself is estimated from ``inc_icu / inc_hosp`` in the cube.
    los_icu_median:
        Median critical-care stay 11 d (DREES Dossier 67).
    los_shape:
        Gamma shape of every length-of-stay distribution (2: SD = mean / sqrt 2). Assumption.
    los_fit:
        Fit a multiplicative factor on the stay lengths to the cube's occupancy stocks and
        admission flows of the 60 days before ``as_of`` (True), or keep the literature values.
    los_sd_log:
        Sampling SD (log scale) of the stay-length factor between samples.
    ihr:
        Infection-hospitalisation ratio, 2.9 % (Salje et al. 2020). Converts admissions into
        infections for the depletion of susceptibles: R is multiplied by S(t)/S(as_of), with
        S(as_of) = population - cumulative admissions / ihr (vaccination is not modelled).
    r_max:
        Upper bound of R on any day: 2.9, the R0 of the historical strain without measures
        (Salje et al. 2020). Keeps the random walk of R from wandering to values never seen.
        Raise it for later variants (Alpha +52-69 %, Delta +79 % more; REFERENCE-EPI §2).
    max_gi, max_delay, max_los:
        Truncation of the discretised distributions.
    """

    gi_mean: float = 5.0
    gi_sd: float = 1.9
    incubation_median: float = 5.1
    incubation_q975: float = 11.5
    onset_to_admission_mean: float = 5.0
    onset_to_admission_sd: float = 4.0
    los_ward_median: float = 8.0
    los_ward_icu_path_median: float = 20.0
    p_icu_path: float = 0.19
    los_icu_median: float = 11.0
    los_shape: float = 2.0
    los_fit: bool = True
    los_sd_log: float = 0.10
    ihr: float = 0.029
    r_max: float = 2.9
    max_gi: int = 20
    max_delay: int = 40
    max_los: int = 120
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, overrides: dict[str, Any] | None) -> EpiParameters:
        """Return a copy with the given fields replaced (unknown keys raise ``KeyError``)."""
        if not overrides:
            return self
        known = set(self.__dataclass_fields__) - {"extra"}
        unknown = set(overrides) - known
        if unknown:
            raise KeyError(f"unknown parameter(s): {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **overrides)

    # -- discretised distributions -------------------------------------------------------
    def generation_interval(self) -> np.ndarray:
        """Discrete generation interval ``w[s]``, s = 0..max_gi days, ``w[0] = 0``, sum 1."""
        shape = _weibull_shape(self.gi_mean, self.gi_sd)
        scale = self.gi_mean / _gamma_fn(1 + 1 / shape)
        dist = stats.weibull_min(shape, scale=scale)
        return _discretise(dist, self.max_gi, zero_at_zero=True)

    def infection_to_admission(self) -> np.ndarray:
        """Discrete infection-to-admission delay ``f[k]``, k = 0..max_delay days, sum 1."""
        sigma = np.log(self.incubation_q975 / self.incubation_median) / 1.959964
        inc = _discretise(stats.lognorm(sigma, scale=self.incubation_median), self.max_delay)
        k = (self.onset_to_admission_mean / self.onset_to_admission_sd) ** 2
        theta = self.onset_to_admission_sd**2 / self.onset_to_admission_mean
        o2a = _discretise(stats.gamma(k, scale=theta), self.max_delay)
        f = np.convolve(inc, o2a)[: self.max_delay + 1]
        return f / f.sum()


def los_survival(median: float | np.ndarray, shape: float, max_days: int) -> np.ndarray:
    """Probability of still being in bed ``k`` days after admission (k = 0..max_days).

    Parameters
    ----------
    median:
        Median stay in days; an array of shape (S,) gives one curve per sample.
    shape:
        Gamma shape.
    max_days:
        Last day of the curve.

    Returns
    -------
    np.ndarray
        Shape (max_days + 1,) or (S, max_days + 1); day 0 counts the admission day as occupied.
    """
    median = np.asarray(median, dtype=float)
    # Scale so that the gamma has the requested median.
    scale = median / stats.gamma(shape).median()
    k = np.arange(max_days + 1, dtype=float) + 0.5
    return stats.gamma.sf(k / scale[..., None], shape)


def _weibull_shape(mean: float, sd: float) -> float:
    """Weibull shape with the given coefficient of variation (solved numerically)."""
    from scipy.optimize import brentq

    cv = sd / mean

    def gap(k: float) -> float:
        g1 = _gamma_fn(1 + 1 / k)
        g2 = _gamma_fn(1 + 2 / k)
        return np.sqrt(g2 / g1**2 - 1) - cv

    return float(brentq(gap, 0.2, 50.0))


def _gamma_fn(x: float) -> float:
    from scipy.special import gamma

    return float(gamma(x))


def _discretise(dist: Any, max_days: int, zero_at_zero: bool = False) -> np.ndarray:
    """Mass of each whole day: day ``s`` gets ``P(s - 0.5 < X <= s + 0.5)``, renormalised."""
    edges = np.arange(max_days + 2) - 0.5
    edges[0] = 0.0
    mass = np.diff(dist.cdf(edges))
    if zero_at_zero:
        mass[0] = 0.0
    return mass / mass.sum()
