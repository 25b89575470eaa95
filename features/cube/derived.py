"""What the daily cube computes from published values: beds occupied rebuilt from flows where
SPF published none (step 2 of :mod:`features.cube`, :mod:`features.occupancy`) and the derived
indicators (step 5: 7-day incidence and positivity, vaccination coverage, variant shares, the
screening-based incidence estimate).

Arrays are (territory, date), daily.
"""

from __future__ import annotations

import numpy as np

from features import epidemic, incidence_estimate, occupancy
from features.cube.frame import BASE_LEVELS, Frame
from features.indicators import (
    DERIVED,
    INCIDENCE_RATE_7D,
    INCIDENCE_RATE_7D_ESTIMATED,
    MUTATIONS,
    POSITIVITY_RATE_7D,
    VACCINATION_COVERAGE_DOSE1,
    IndicatorSpec,
    screened_absent,
    screened_present,
    variant_share,
)


def rebuild_occupancy(frame: Frame) -> dict:
    """Fill ``hosp``/``icu`` for every département and add ``*_origin`` arrays."""
    needed = ("inc_hosp", "inc_discharge", "inc_death", "inc_icu")
    if not all(n in frame.arrays for n in needed):
        return {}
    base = frame.rows_at(BASE_LEVELS)
    flows = {n: frame.arrays[n][base] for n in needed}
    reporting = ~np.isnan(flows["inc_hosp"]).all(axis=1)
    rows = base[reporting]
    days = ~np.isnan(flows["inc_hosp"][reporting]).all(axis=0)
    span = slice(np.flatnonzero(days)[0], np.flatnonzero(days)[-1] + 1)
    get = {n: frame.arrays[n][rows][:, span] for n in needed}
    fitted = {}
    for name, rebuild in (
        ("hosp", lambda pub: occupancy.rebuild_by_accounting(
            get["inc_hosp"] - get["inc_discharge"] - get["inc_death"], pub, get["inc_hosp"])),
        ("icu", lambda pub: occupancy.rebuild_by_convolution(get["inc_icu"], pub)),
    ):
        full = frame.arrays.setdefault(name, np.full((len(frame.codes), len(frame.dates)),
                                                     np.nan))
        result = rebuild(full[rows][:, span])
        block = full[rows]
        block[:, span] = result.values
        full[rows] = block
        origin = np.zeros(full.shape, dtype=np.int8)
        origin[~np.isnan(full)] = occupancy.PUBLISHED  # published outside the flows' span
        sub = origin[rows]
        sub[:, span] = result.origin
        origin[rows] = sub
        frame.arrays[f"{name}_origin"] = origin
        spec = frame.specs.get(name)
        if spec is None:
            continue
        frame.specs[f"{name}_origin"] = IndicatorSpec(
            f"{name}_origin", "daily", "1 = published by SPF, 2 = rebuilt from flows",
            f"where the {name} value comes from (0 = not available)", spec.source, spec.licence,
            "none")
        fitted[name] = {**result.parameters,
                        "territories": [frame.codes[r] for r in rows]}
    return fitted


def rolling_7d(arr: np.ndarray) -> np.ndarray:
    """Sum over the 7 days ending each date, NaN unless all 7 days have a value."""
    # A sum of whole counts: remove the rounding the running sums leave behind.
    return np.round(epidemic.trailing_sum(arr, 7), 6)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, scale: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, scale * numerator / denominator, np.nan)


def derive_indicators(frame: Frame) -> None:
    """Add the derived indicators of :data:`features.indicators.DERIVED` wherever their inputs
    exist (after aggregation, so at every level), filling only cells without a published value.

    * ``incidence_rate_7d`` = 7-day ``inc_cases`` / ``population`` × 100,000;
    * ``positivity_rate_7d`` = 100 × 7-day ``inc_cases`` / 7-day ``inc_tests``;
    * ``vaccination_coverage_dose1`` = 100 × ``vaccinated_dose1`` / ``population``;
    * ``variant_share_<m>`` = 100 × present / (present + absent) screened positive tests;
    * ``incidence_rate_7d_estimated`` where ``incidence_rate_7d`` is still missing (after the
      above): ``screened_positive_tests`` × the région's persons per positive test over the same
      window / ``population`` × 100,000 (:mod:`features.incidence_estimate`).
    """
    population = frame.meta["population"].to_numpy(dtype=float)[:, None]
    arrays = frame.arrays
    derived: dict[str, np.ndarray] = {}
    if "inc_cases" in arrays:
        cases_7d = rolling_7d(arrays["inc_cases"])
        derived[INCIDENCE_RATE_7D.name] = _ratio(cases_7d, population, 1e5)
        if "inc_tests" in arrays:
            derived[POSITIVITY_RATE_7D.name] = _ratio(cases_7d, rolling_7d(arrays["inc_tests"]),
                                                      100.0)
    if "vaccinated_dose1" in arrays:
        derived[VACCINATION_COVERAGE_DOSE1.name] = _ratio(arrays["vaccinated_dose1"],
                                                          population, 100.0)
    for mutation in MUTATIONS:
        present, absent = screened_present(mutation), screened_absent(mutation)
        if present in arrays and absent in arrays:
            derived[variant_share(mutation)] = _ratio(arrays[present],
                                                      arrays[present] + arrays[absent], 100.0)
    for name, values in derived.items():
        if np.isnan(values).all():
            continue
        published = arrays.get(name)
        arrays[name] = values if published is None else np.where(np.isnan(published), values,
                                                                   published)
        frame.specs.setdefault(name, DERIVED[name])
    estimated = _incidence_from_screening(frame, cases_7d) if "inc_cases" in arrays else None
    if estimated is not None and not np.isnan(estimated).all():
        arrays[INCIDENCE_RATE_7D_ESTIMATED.name] = estimated
        frame.specs[INCIDENCE_RATE_7D_ESTIMATED.name] = INCIDENCE_RATE_7D_ESTIMATED


def _incidence_from_screening(frame: Frame, cases_7d: np.ndarray) -> np.ndarray | None:
    """``incidence_rate_7d_estimated`` of every territory under a région that has screened
    positive tests and no ``incidence_rate_7d`` that day; None without screening.

    ``cases_7d``: (territory, date) positive persons over the 7 days ending each date."""
    arrays = frame.arrays
    if "screened_positive_tests" not in arrays:
        return None
    tests = arrays["screened_positive_tests"]
    region = np.array([frame.index.get(frame.territories.ancestor_at(code, "region"), -1)
                       for code in frame.codes])  # a région is its own
    rows = np.flatnonzero((region >= 0) & ~np.isnan(tests).all(axis=1))
    out = np.full(tests.shape, np.nan)
    if not len(rows):
        return out
    ratio = incidence_estimate.persons_per_test(cases_7d[region[rows]], tests[region[rows]])
    population = frame.meta["population"].to_numpy(dtype=float)[rows]
    out[rows] = incidence_estimate.estimate(tests[rows], ratio, population)
    own = arrays.get(INCIDENCE_RATE_7D.name)
    if own is not None:
        out[~np.isnan(own)] = np.nan
    return out
