"""R now from daily cases where they exist, from admissions otherwise.

R of admissions (R^A, :mod:`scenarios.rt`) describes infections about 10-14 days before
``as_of`` (infection-to-admission delay plus half the 7-day window); R of cases (R^C, the same
Cori estimator on SI-DEP positives) describes infections about 5 days later, so it sees an
acceleration that admissions do not show yet. Daily cases exist for France and the régions
only (``inc_cases``, from 2020-05-13); a département borrows its région's.

For a territory with its own cases (France, a région)::

    log R_now = log R^C

For a département d of région g::

    log R_now = log R^C_g + k_d (log R^A_d - log R^A_g)

The département keeps (a shrunk version of) its own deviation from its région, measured on
admissions, and takes its région's timely level. ``k_d = tau^2 / (tau^2 + v_d)`` is the
empirical-Bayes weight of that deviation: ``v_d`` the posterior variance of log R^A_d (Poisson,
widened for overdispersion), ``tau^2`` the variance of true deviations between départements
and their région, estimated on every département of the cube on the same window (method of
moments: mean squared deviation minus mean noise variance, at least :data:`TAU2_FLOOR`). A
large département keeps its own deviation (k near 1); a small one, whose 7-day R^A is mostly
noise, is pulled toward its région. With ``pool=False``, k = 1: R_now = R^A_d x R^C_g / R^A_g.

Limits: a région's cases mix départements in different phases (PACA in October 2020:
Bouches-du-Rhône slowing, Alpes-Maritimes accelerating), so a département out of step with
its région gets its région's trend; case counts move with testing policy and demand (holidays,
pre-Christmas testing, free tests) as well as with the epidemic; and the shift between the
two delays is assumed, not estimated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scenarios.rt import window_posterior

CASES = "inc_cases"
MIN_CASES_WINDOW = 200  # positives per 7-day window for a usable case R
MIN_ADMISSIONS_WINDOW = 20  # admissions per 7-day window of a région to compare with
LOG_GAP_BOUND = float(np.log(2.0))  # |log R_now - log R^A| above it is a data problem: clipped
TAU2_FLOOR = 0.005  # (log R)^2: between-département SD of at least 0.07


@dataclass(frozen=True)
class RNow:
    """log R now per projected territory (NaN where the engine keeps its own R^A draws).

    Attributes
    ----------
    log_r, log_sd:
        (T,) mean and SD of log R now.
    source:
        (T,) territory whose R gives the level: itself (France, a région) or the région of a
        département ('' when none).
    basis:
        (T,) ``"cases"`` when the source's daily cases were used, else ``"admissions"``.
    r_source:
        (T,) posterior mean of the source's R (of cases or admissions, per ``basis``).
    shrink:
        (T,) weight ``k`` of a département's own deviation (1 for France and régions).
    note:
        (T,) why cases were not used ('' when they were).
    """

    log_r: np.ndarray
    log_sd: np.ndarray
    source: list[str]
    basis: list[str]
    r_source: np.ndarray
    shrink: np.ndarray
    note: list[str]

    def info(self, i: int) -> dict[str, Any]:
        """JSON-able description of territory ``i``'s R now."""
        return {"basis": self.basis[i], "source": self.source[i] or None,
                "r_source": _round(self.r_source[i]), "shrink": _round(self.shrink[i]),
                "note": self.note[i] or None}


def _round(v: float) -> float | None:
    return round(float(v), 3) if np.isfinite(v) else None


def estimate_r_now(daily: Any, territories: list[str], levels: list[str], parents: list[str],
                   w: np.ndarray, basis: str = "cases", pool: bool = True,
                   tau: int = 7) -> RNow:
    """log R now of each territory (see the module docstring).

    With ``basis="cases"`` the level comes from daily cases of the territory (France, a
    région) or of its région (a département). Cases are not used, and the source's admissions
    give the level instead (``note`` says why; the caller logs it), when the cube has no
    ``inc_cases``, the source's cases do not cover the window plus one generation interval
    (before 2020-05-13, or the series stopped) or hold fewer than :data:`MIN_CASES_WINDOW`
    positives. A territory whose own admissions (or whose région's) are incomplete or too few
    gets NaN: the engine keeps its own R^A draws.

    Parameters
    ----------
    daily:
        Daily cube cut at ``as_of`` with every territory (départements find their région and
        the between-département variance is estimated on all of them).
    territories, levels, parents:
        Projected territories with their level and parent codes.
    w:
        Generation interval.
    basis:
        ``"cases"`` or ``"admissions"``.
    pool:
        Shrink a département's deviation from its région (empirical Bayes); False keeps it
        whole (``R^A_d x R_g / R^A_g``).
    tau:
        Window in days.
    """
    T = len(territories)
    out = RNow(np.full(T, np.nan), np.full(T, np.nan), [""] * T, [""] * T, np.full(T, np.nan),
               np.full(T, np.nan), [""] * T)
    need = len(w) - 1 + tau
    adm = _admission_posteriors(daily, w, tau, need)
    tau2 = _between_variance(daily, adm) if pool else np.nan
    signals: dict[str, tuple[float, float, str, str]] = {}
    for i, (code, level, parent) in enumerate(zip(territories, levels, parents, strict=True)):
        src = code if level in ("country", "region") else parent
        out.source[i] = src
        if code not in adm or src not in adm:
            out.note[i] = f"admissions of {code if code not in adm else src} too few or " \
                          f"incomplete over the last {need} days: R^A of {code} kept"
            continue
        if src not in signals:
            signals[src] = _signal(daily, src, adm[src], w, tau, need, basis)
        log_s, var_s, used, why = signals[src]
        log_ra, var_a = adm[code]
        if src == code:
            k, log_r, var = 1.0, log_s, var_s
        else:
            k = tau2 / (tau2 + var_a) if pool else 1.0
            log_r = log_s + k * (log_ra - adm[src][0])
            var = k * var_a + var_s + k**2 * adm[src][1]
        out.log_r[i] = log_ra + np.clip(log_r - log_ra, -LOG_GAP_BOUND, LOG_GAP_BOUND)
        out.log_sd[i] = np.sqrt(var)
        out.basis[i], out.note[i] = used, why
        out.r_source[i], out.shrink[i] = np.exp(log_s), k
    return out


def _signal(daily: Any, src: str, adm_src: tuple[float, float], w: np.ndarray, tau: int,
            need: int, basis: str) -> tuple[float, float, str, str]:
    """``(log R, variance, "cases" | "admissions", why not cases)`` of a source territory."""
    if basis != "cases":
        return (*adm_src, "admissions", "")
    if CASES not in daily:
        return (*adm_src, "admissions", "no daily cases in the cube")
    log_rc, var_c, why = _case_posterior(daily, src, w, tau, need)
    if why:
        return (*adm_src, "admissions", why)
    return log_rc, var_c, "cases", ""


def _admission_posteriors(daily: Any, w: np.ndarray, tau: int,
                          need: int) -> dict[str, tuple[float, float]]:
    """``code -> (log R^A mean, its variance)`` for every territory with complete admissions
    over the last ``need`` days (régions: at least :data:`MIN_ADMISSIONS_WINDOW` in the
    window)."""
    adm = daily["inc_hosp"].values.astype(float)
    levels = [str(v) for v in daily["territory_level"].values]
    out = {}
    for code, row, level in zip(daily["territory"].values, adm, levels, strict=True):
        if len(row) < need or not np.isfinite(row[-need:]).all():
            continue
        if level != "department" and row[-tau:].sum() < MIN_ADMISSIONS_WINDOW:
            continue
        first = int(np.isfinite(row).argmax())
        mean, a_eff = window_posterior(np.nan_to_num(row[first:]), w, tau)
        out[str(code)] = (float(np.log(mean)), 1.0 / a_eff)
    return out


def _between_variance(daily: Any, adm: dict[str, tuple[float, float]]) -> float:
    """Variance of true deviations of log R^A between départements and their région, net of
    the départements' posterior noise (method of moments, floored at :data:`TAU2_FLOOR`).
    Overseas départements that are their own région (deviation 0 by construction) are left
    out."""
    dev2, noise = [], []
    parents = [str(p) for p in daily["territory_parent"].values]
    levels = [str(v) for v in daily["territory_level"].values]
    n_deps = pd.Series([p for p, lv in zip(parents, levels, strict=True)
                        if lv == "department"]).value_counts()
    for code, level, parent in zip(daily["territory"].values, levels, parents, strict=True):
        code = str(code)
        if level == "department" and code in adm and parent in adm and n_deps[parent] > 1:
            dev2.append((adm[code][0] - adm[parent][0]) ** 2)
            noise.append(adm[code][1])
    if len(dev2) < 5:
        return TAU2_FLOOR
    return max(float(np.mean(dev2) - np.mean(noise)), TAU2_FLOOR)


def _case_posterior(daily: Any, code: str, w: np.ndarray, tau: int,
                    need: int) -> tuple[float, float, str]:
    """``(log R^C mean, its variance, reason for not using it or '')`` of one territory."""
    cases = daily[CASES].sel(territory=code).values.astype(float)
    if len(cases) < need or not np.isfinite(cases[-need:]).all():
        seen = np.where(np.isfinite(cases))[0]
        span = (f"values {pd.Timestamp(daily['date'].values[seen[0]]).date()} to "
                f"{pd.Timestamp(daily['date'].values[seen[-1]]).date()}" if len(seen)
                else "no value")
        return np.nan, np.nan, f"daily cases of {code} do not cover the last {need} days ({span})"
    if cases[-tau:].sum() < MIN_CASES_WINDOW:
        return np.nan, np.nan, f"too few cases in {code} ({cases[-tau:].sum():.0f} in {tau} days)"
    first = int(np.isfinite(cases).argmax())
    mean, a_eff = window_posterior(np.nan_to_num(cases[first:]), w, tau)
    return float(np.log(mean)), 1.0 / a_eff, ""
