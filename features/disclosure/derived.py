"""Masks of what is computed from counts (steps 2 and 6 of :mod:`features.disclosure`): beds
occupied rebuilt from hidden flows (:func:`rebuilt_dependency`), and the derived values that let
a hidden count be backed out (:func:`derived_masks`: 7-day incidence and positivity, vaccination
coverage, variant shares, the screening-based incidence estimate, R(t), growth rate and doubling
time), with their weekly copies.

Arrays are (territory, date) of the daily cube; windows are in days.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from features.disclosure.audit import EPS
from features.disclosure.equations import week_days
from features.disclosure.record import PublicMasks
from features.epidemic import trailing_sum
from features.risk import region_rows

#: Stocks rebuilt from flows (features.occupancy): stock → (origin variable, input flows,
#: whether the flow accounting anchored on published days is used).
REBUILT: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "hosp": ("hosp_origin", ("inc_hosp", "inc_discharge", "inc_death"), True),
    "icu": ("icu_origin", ("inc_icu",), False),
}
#: Days of past admissions a rebuilt stock depends on (length of the survival kernel).
REBUILT_KERNEL_DAYS = 120
#: Days of the basis series behind R(t) and the growth rate on a day: the 7-day window and the
#: 20-day generation interval before it (features.epidemic).
EPIDEMIC_WINDOW_DAYS = 7 + 20
EPIDEMIC_OUTPUTS = ("rt", "rt_lower", "rt_upper", "growth_rate", "doubling_time")
EPIDEMIC_BASIS = {1: "inc_cases", 2: "inc_hosp"}
#: Rates whose value × population / scale is a count of persons.
IMPLIED_COUNTS = {"incidence_rate_7d": 1e5, "vaccination_coverage_dose1": 100.0}


def cell_values(ds: xr.Dataset, name: str) -> np.ndarray:
    """Variable ``name`` of ``ds`` as a float (territory, date) array."""
    return ds[name].transpose("territory", "date").values.astype(float)


def _any_in_window(mask: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``mask[r, lo[r, t]..hi[r, t]].any()`` for every cell (bounds clipped, inclusive)."""
    n = mask.shape[1]
    csum = np.concatenate([np.zeros((mask.shape[0], 1)), np.cumsum(mask, axis=1)], axis=1)
    lo = np.clip(lo, 0, n)
    hi = np.clip(hi + 1, 0, n)
    rows = np.arange(mask.shape[0])[:, None]
    return (csum[rows, np.maximum(hi, lo)] - csum[rows, lo]) > 0


def _trailing_any(mask: np.ndarray, days: int) -> np.ndarray:
    t = np.arange(mask.shape[1])[None, :].repeat(mask.shape[0], axis=0)
    return _any_in_window(mask, t - days + 1, t)


def rebuilt_dependency(daily: xr.Dataset, name: str, masks: PublicMasks) -> np.ndarray | None:
    """Rebuilt cells (``<name>_origin`` = 2) one of whose input flows is hidden: over the
    survival kernel (the :data:`REBUILT_KERNEL_DAYS` days up to the day) and, for the flow
    accounting, every day from the previous published stock to the next one."""
    origin_name, flows, accounting = REBUILT[name]
    if origin_name not in daily:
        return None
    origin = daily[origin_name].transpose("territory", "date").values
    hidden = np.zeros(origin.shape, dtype=bool)
    for flow in flows:
        mask = masks.hidden["daily"].get(flow)
        if mask is not None:
            hidden |= mask
    n = origin.shape[1]
    t = np.arange(n)[None, :].repeat(origin.shape[0], axis=0)
    lo = t - REBUILT_KERNEL_DAYS + 1
    hi = t.copy()
    if accounting:
        published = origin == 1
        prev = np.maximum.accumulate(np.where(published, t, -1), axis=1)
        nxt = np.minimum.accumulate(np.where(published, t, n)[:, ::-1], axis=1)[:, ::-1]
        lo = np.minimum(lo, prev + 1)
        hi = np.maximum(hi, np.minimum(nxt, n - 1))
    return (origin == 2) & _any_in_window(hidden, lo, hi)


def derived_masks(out: PublicMasks, datasets: Mapping[str, xr.Dataset], threshold: float
                  ) -> None:
    """Masks of the values computed from counts (see the module docstring, step 6), daily,
    and their weekly copies (a weekly stock is its Saturday's value)."""
    if "daily" not in datasets:
        return
    ds = datasets["daily"]
    counts = out.hidden["daily"]
    shape = (len(out.codes["daily"]), len(out.dates["daily"]))
    derived: dict[str, np.ndarray] = {}

    def hidden_of(name: str) -> np.ndarray:
        return counts.get(name, np.zeros(shape, dtype=bool))

    def small_sum7(name: str) -> np.ndarray:
        if name not in ds:
            return np.zeros(shape, dtype=bool)
        s = trailing_sum(cell_values(ds, name), 7)
        return (s > EPS) & (s < threshold - EPS)

    cases_window = _trailing_any(hidden_of("inc_cases"), 7) | small_sum7("inc_cases")
    tests_window = _trailing_any(hidden_of("inc_tests"), 7) | small_sum7("inc_tests")
    if "incidence_rate_7d" in ds:
        derived["incidence_rate_7d"] = cases_window
    if "positivity_rate_7d" in ds:
        derived["positivity_rate_7d"] = cases_window | tests_window
    if "vaccination_coverage_dose1" in ds:
        derived["vaccination_coverage_dose1"] = hidden_of("vaccinated_dose1")
    for name in ds.data_vars:
        name = str(name)
        if name.startswith("variant_share_"):
            m = name[len("variant_share_"):]
            derived[name] = hidden_of(f"screened_{m}_present") | hidden_of(f"screened_{m}_absent")
    if "incidence_rate_7d_estimated" in ds:
        # Each territory's région row (France has none: its estimate is not built from one).
        region = region_rows(ds, [str(c) for c in ds["territory"].values])
        region[ds["territory_level"].values == "country"] = -1
        own = hidden_of("screened_positive_tests")
        reg = cases_window | hidden_of("screened_positive_tests")
        via_region = np.where((region >= 0)[:, None], reg[np.maximum(region, 0)], False)
        derived["incidence_rate_7d_estimated"] = own | via_region
    if "epidemic_basis" in ds:
        basis = ds["epidemic_basis"].transpose("territory", "date").values
        epi = np.zeros(shape, dtype=bool)
        for code, series in EPIDEMIC_BASIS.items():
            epi |= (basis == code) & _trailing_any(hidden_of(series), EPIDEMIC_WINDOW_DAYS)
        for name in EPIDEMIC_OUTPUTS:
            if name in ds:
                derived[name] = epi
    population = ds["population"].values.astype(float) if "population" in ds.coords else None
    if population is not None:
        for name, scale in IMPLIED_COUNTS.items():
            if name in ds:
                implied = cell_values(ds, name) * population[:, None] / scale
                small = (implied > EPS) & (implied < threshold - 0.5)
                derived[name] = derived.get(name, np.zeros(shape, dtype=bool)) | small
    for name, mask in derived.items():
        mask = mask & ~np.isnan(cell_values(ds, name))
        out.hidden["daily"][name] = mask
        out.figures.setdefault("daily", {})[name] = {
            "cells": int((~np.isnan(cell_values(ds, name))).sum()), "hidden": int(mask.sum())}
    _weekly_copies(out, datasets, list(derived))


def _weekly_copies(out: PublicMasks, datasets: Mapping[str, xr.Dataset], names: list[str]
                   ) -> None:
    """A weekly stock (Saturday's value) is hidden where its Saturday is."""
    if "weekly" not in datasets:
        return
    weekly = datasets["weekly"]
    days = week_days(out.dates["daily"], out.dates["weekly"])[:, 6]
    d_rows = pd.Index(out.codes["daily"]).get_indexer(out.codes["weekly"])
    for name in names:
        if name not in weekly:
            continue
        values = cell_values(weekly, name)
        mask = np.zeros(values.shape, dtype=bool)
        ok_r, ok_c = d_rows >= 0, days >= 0
        mask[np.ix_(ok_r, ok_c)] = out.hidden["daily"][name][np.ix_(d_rows[ok_r], days[ok_c])]
        mask &= ~np.isnan(values)
        out.hidden["weekly"][name] = mask
        out.figures.setdefault("weekly", {})[name] = {
            "cells": int((~np.isnan(values)).sum()), "hidden": int(mask.sum())}
