"""Scenario levers beyond measures: vaccination coverage and a more transmissible variant.

Both act on R on infection dates, like the measures (:mod:`scenarios.engine` transfers them to
admission dates through the infection-to-admission delay and normalises them on the window
behind R now, so what R now already contains is not counted twice).

**Vaccination** (``vaccination:`` in a scenario file). First-dose coverage c(u) (% of the
population) rises linearly from its value the day before ``as_of`` (the cube's
``vaccination_coverage_dose1``, or ``start_coverage``) to ``coverage`` on ``by`` and stays
there; a dose protects from ``protection_delay_days`` after it (default 14, an assumption:
first-dose protection builds over about two weeks). R is multiplied by
``(1 - effect) ** ((c(u - delay) - c0) / 100)``: log-linear in coverage, ``effect`` the
reduction of R if the whole population were vaccinated. Default prior: -71.7 % (Paireau et al.
2023, BMC Infect Dis 23:190, fitted on French admissions 2020-2021, "whole-population
vaccination"), SD 0.10 (our assumption: the reference sheet gives no interval). That paper
appeared after every 2021 ``as_of``: the result flags this hindsight.

**Variant** (``variant:``). A variant with transmissibility advantage ``a`` over the strains
now circulating (R_variant = (1 + a) R_others, same generation interval) and share p of
infections. The mixture's R is ``R_others (1 + a p(u))``; p follows the logistic whose log-odds
grow by ``log(1 + a)`` per mean generation interval, from the share measured on screened
positive tests (``share`` in %, or ``cube``: the département's ``variant_share_*`` the day
before ``as_of``, else its région's, else France's), dated ``share_lag_days`` (default 7:
median incubation 5.1 d, Lauer et al. 2020, plus about 2 days to a test) before the test date.
The R cap (``r_max``, R0 of the historical strain) rises with the share the same way. Priors
(REFERENCE-EPI §2), a relative advantage with its SD from the published 95 % interval:

- ``alpha``: +60 % (52-69 %) over the historical strains, Gaymard et al. 2021,
  Eurosurveillance 26(9);
- ``delta``: +79 % (52-110 %) over Alpha, Alizon et al. 2021, Eurosurveillance 26(28);
  ``share: cube`` reads ``variant_share_l452r`` (the L452R marker, from June 2021);
- ``omicron``: +105 % (96-114 %) growth advantage over Delta, Sofonea et al. 2022, Emerg Infect
  Dis 28(7); ``share: cube`` reads ``variant_share_a0c0`` (neither E484K nor L452R, from
  November 2021).

Limits: the advantage is a ratio of R, but the growth of the log-odds per generation uses the
mean generation interval only (exact for a fixed interval); immune escape and vaccination are
not separated from transmissibility; the screened share lags and is noisy for small
départements (the parent's share is used when the département has none).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.territories import FRANCE, chain_to_root

log = logging.getLogger(__name__)

COVERAGE = "vaccination_coverage_dose1"
VACCINATION_PRIOR = (0.717, 0.10, "Paireau et al. 2023 (BMC Infect Dis 23:190): whole-"
                     "population vaccination -71.7 % of R; SD 0.10 assumed", "2023-12-31")
#: name -> (relative advantage, SD, source, cube indicator of its share or None)
VARIANT_PRIORS: dict[str, tuple[float, float, str, str | None]] = {
    "alpha": (0.60, 0.043, "Gaymard et al. 2021 (Eurosurveillance 26(9)): 52-69 % more "
              "transmissible than the historical strains", None),
    "delta": (0.79, 0.148, "Alizon et al. 2021 (Eurosurveillance 26(28)): +79 % (52-110 %) "
              "over Alpha", "variant_share_l452r"),
    "omicron": (1.05, 0.046, "Sofonea et al. 2022 (Emerg Infect Dis 28(7)): growth advantage "
                "+105 % (96-114 %) over Delta", "variant_share_a0c0"),
}
SHARE_LOOKBACK_DAYS = 14  # a screened share older than this before as_of is not "now"


@dataclass(frozen=True)
class Vaccination:
    """Resolved vaccination lever (coverage in %, ``by`` an absolute date)."""

    coverage: float
    by: pd.Timestamp
    start_coverage: float | str = "cube"
    effect: float = VACCINATION_PRIOR[0]
    effect_sd: float = VACCINATION_PRIOR[1]
    protection_delay_days: int = 14

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "by": str(self.by.date())}


@dataclass(frozen=True)
class Variant:
    """Resolved variant lever (advantage relative, share in %)."""

    name: str
    advantage: float
    advantage_sd: float
    advantage_source: str
    share: float | str
    share_indicator: str | None
    share_lag_days: int = 7

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_vaccination(d: dict[str, Any] | None, by: pd.Timestamp | None) -> Vaccination | None:
    """The ``vaccination:`` mapping of a validated definition, ``by`` already resolved."""
    if not d:
        return None
    return Vaccination(coverage=float(d["coverage"]), by=by,
                       start_coverage=d.get("start_coverage", "cube"),
                       effect=float(d.get("effect", VACCINATION_PRIOR[0])),
                       effect_sd=float(d.get("effect_sd", VACCINATION_PRIOR[1])),
                       protection_delay_days=int(d.get("protection_delay_days", 14)))


def parse_variant(d: dict[str, Any] | None) -> Variant | None:
    """The ``variant:`` mapping of a validated definition (presets expanded)."""
    if not d:
        return None
    adv = d["advantage"]
    if isinstance(adv, str):
        mean, sd, source, indicator = VARIANT_PRIORS[adv]
    else:
        mean, sd, source, indicator = float(adv), 0.0, "given in the scenario", None
    return Variant(name=d.get("name", adv if isinstance(adv, str) else "variant"),
                   advantage=mean, advantage_sd=float(d.get("advantage_sd", sd)),
                   advantage_source=source, share=d["share"],
                   share_indicator=d.get("share_indicator", indicator),
                   share_lag_days=int(d.get("share_lag_days", 7)))


def _last_value(daily: Any, var: str, code: str, as_of: pd.Timestamp,
                lookback: int) -> float | None:
    if var not in daily or code not in daily["territory"].values:
        return None
    s = daily[var].sel(territory=code).to_series().dropna()
    s = s[(s.index < as_of) & (s.index >= as_of - pd.Timedelta(days=lookback))]
    return float(s.iloc[-1]) if len(s) else None


def vaccination_log_r(lever: Vaccination, daily: Any, terrs: list[str],
                      u_dates: pd.DatetimeIndex, as_of: pd.Timestamp,
                      rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """log-R change (T, n, U) of the vaccination lever on infection dates ``u_dates``.

    Returns the array and a JSON-able description (coverage now per territory, prior).
    """
    c0 = np.zeros(len(terrs))
    for i, code in enumerate(terrs):
        if lever.start_coverage != "cube":
            c0[i] = float(lever.start_coverage)
            continue
        v = _last_value(daily, COVERAGE, code, as_of, SHARE_LOOKBACK_DAYS)
        if v is None:
            log.info("vaccination: no %s for %s before %s: coverage now taken as 0",
                     COVERAGE, code, as_of.date())
        c0[i] = v or 0.0
    # Linear from as_of - 1 to `by`, on dose dates; protection `delay` days later.
    dose_dates = u_dates - pd.Timedelta(days=lever.protection_delay_days)
    span = max((lever.by - (as_of - pd.Timedelta(days=1))).days, 1)
    frac = np.clip((dose_dates - (as_of - pd.Timedelta(days=1))).days.to_numpy() / span, 0, 1)
    cov = c0[:, None] + np.maximum(lever.coverage - c0[:, None], 0.0) * frac[None, :]  # (T, U)
    effect = np.clip(rng.normal(lever.effect, lever.effect_sd, size=n), 0.0, 0.95)
    beta = np.log1p(-effect)  # (n,) log R at 100 % coverage
    log_r = beta[None, :, None] * ((cov - c0[:, None]) / 100.0)[:, None, :]
    info = {**lever.to_dict(), "coverage_now": dict(zip(terrs, np.round(c0, 1).tolist(),
                                                        strict=True)),
            "prior": VACCINATION_PRIOR[2],
            "hindsight": bool(pd.Timestamp(VACCINATION_PRIOR[3]) >= as_of)}
    return log_r, info


def variant_log_r(lever: Variant, daily: Any, terrs: list[str], parents: dict[str, str],
                  u_dates: pd.DatetimeIndex, as_of: pd.Timestamp, gi_mean: float,
                  rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """log(1 + a p(u)) (T, n, U) of the variant lever on infection dates ``u_dates``.

    Raises
    ------
    ValueError
        ``share: cube`` and no share within :data:`SHARE_LOOKBACK_DAYS` days before ``as_of``
        for the territory, its région or France.
    """
    shares, from_ = np.zeros(len(terrs)), []
    for i, code in enumerate(terrs):
        if lever.share != "cube":
            shares[i] = float(lever.share)
            from_.append("scenario")
            continue
        chain = chain_to_root(code, parents)
        for src in chain if FRANCE in chain else [*chain, FRANCE]:
            v = _last_value(daily, lever.share_indicator, src, as_of, SHARE_LOOKBACK_DAYS)
            if v is not None:
                break
        else:
            raise ValueError(
                f"variant.share: the cube has no {lever.share_indicator} for {code} (nor its "
                f"région or France) in the {SHARE_LOOKBACK_DAYS} days before {as_of.date()}; "
                "give the share as a number")
        if src != code:
            log.info("variant: %s share of %s taken from %s", lever.share_indicator, code, src)
        shares[i] = v
        from_.append(src)
    p0 = np.clip(shares / 100.0, 1e-4, 1 - 1e-4)
    adv = np.maximum(rng.normal(lever.advantage, lever.advantage_sd, size=n), 0.0)  # (n,)
    # Infection date the measured share refers to: the day before as_of minus the lag.
    t0 = as_of - pd.Timedelta(days=1 + lever.share_lag_days)
    days = (u_dates - t0).days.to_numpy().astype(float)  # (U,)
    logit = (np.log(p0 / (1 - p0))[:, None, None]
             + (np.log1p(adv) / gi_mean)[None, :, None] * days[None, None, :])
    p = 1.0 / (1.0 + np.exp(-logit))  # (T, n, U)
    info = {**lever.to_dict(), "share_now": dict(zip(terrs, np.round(shares, 1).tolist(),
                                                     strict=True)),
            "share_from": dict(zip(terrs, from_, strict=True))}
    return np.log1p(adv[None, :, None] * p), info
