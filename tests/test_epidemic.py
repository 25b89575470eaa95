"""R(t), growth rate and doubling time (features/epidemic.py): known truths on synthetic series,
credible-interval coverage, causality, basis choice, sparse data, and the cube wiring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from features import epidemic
from features.cube import build_cube
from features.epidemic import (
    BASIS_ADMISSIONS,
    BASIS_CASES,
    EpidemicMethod,
    estimate,
    generation_interval,
    growth,
    reproduction_number,
)
from features.indicators import IndicatorSpec
from features.sources.base import SourceResult
from features.sources.insee_territories import load_territories

W = generation_interval()
LAGS = np.arange(len(W))


def r_of_growth(r: float) -> float:
    """R of an exponential epidemic growing at r/day under W (Wallinga & Lipsitch 2007)."""
    return 1.0 / float((W * np.exp(-r * LAGS)).sum())


def exponential(r: float, days: int = 100, start: float = 1e4) -> np.ndarray:
    return start * np.exp(r * np.arange(days))


def test_generation_interval_is_the_scenarios_one():
    """Same discretisation as scenarios.params (so that the two R estimates can be merged)."""
    from scenarios.params import EpiParameters

    np.testing.assert_allclose(W, EpiParameters().generation_interval(), atol=1e-12)
    assert W[0] == 0 and W.sum() == pytest.approx(1.0)
    assert (W * LAGS).sum() == pytest.approx(5.0, abs=0.05)


@pytest.mark.parametrize("r", [-0.06, -0.02, 0.0, 0.03, 0.1])
def test_exponential_series_recovers_r_and_growth(r):
    out = estimate({BASIS_CASES: exponential(r)[None, :]})
    end = slice(40, None)
    truth = r_of_growth(r)
    np.testing.assert_allclose(out["rt"][0, end], truth, rtol=0.01)
    assert (out["rt_lower"][0, end] <= truth).all() and (out["rt_upper"][0, end] >= truth).all()
    np.testing.assert_allclose(out["growth_rate"][0, end], r, atol=1e-9)
    if r == 0.0:
        assert np.isnan(out["doubling_time"][0, end]).all()
    else:
        np.testing.assert_allclose(out["doubling_time"][0, end], np.log(2) / r, rtol=1e-6)
    assert (out["epidemic_basis"][0, end] == BASIS_CASES).all()


def test_weekly_reporting_cycle_cancels_over_whole_weeks():
    """Cases reported at 30 % on Sundays and 140 % on Mondays still give R within 2.5 %
    (a day-by-day ratio I_t / Lambda_t is off by up to a factor of 3)."""
    r = 0.04
    cycle = np.array([1.0, 1.4, 1.2, 1.1, 1.05, 0.95, 0.3])
    cases = exponential(r, 140) * np.tile(cycle, 20)
    out = estimate({BASIS_CASES: cases[None, :]})
    np.testing.assert_allclose(out["rt"][0, 40:], r_of_growth(r), rtol=0.025)
    daily_ratio = cases[40:] / epidemic.infectiousness(cases, W)[40:]
    assert np.abs(daily_ratio / r_of_growth(r) - 1).max() > 0.5
    np.testing.assert_allclose(out["growth_rate"][0, 40:], r, atol=1e-9)
    with pytest.raises(ValueError, match="multiple of 7"):
        EpidemicMethod(window_days=5)


def simulate_renewal(r_path: np.ndarray, seed: int, replicates: int, seed_cases: float = 60.0
                     ) -> np.ndarray:
    """Poisson renewal process I_t ~ Poisson(R_t Lambda_t), ``replicates`` rows."""
    rng = np.random.default_rng(seed)
    days = len(r_path)
    inc = np.zeros((replicates, days))
    inc[:, :10] = rng.poisson(seed_cases, (replicates, 10))
    for t in range(10, days):
        lam = inc[:, max(0, t - len(W) + 1):t][:, ::-1] @ W[1:min(len(W), t + 1)][:t]
        inc[:, t] = rng.poisson(r_path[t] * lam)
    return inc


def test_credible_interval_covers_the_true_r():
    """Data simulated from the model itself: the 95 % CrI covers R in ~95 % of replicates."""
    r_path = np.r_[np.full(50, 1.15), np.full(40, 0.85)]
    inc = simulate_renewal(r_path, seed=3, replicates=400)
    out = reproduction_number(inc)
    for day, truth in ((45, 1.15), (85, 0.85)):  # windows inside a constant stretch
        ok = ~np.isnan(out["rt"][:, day])
        assert ok.mean() > 0.95
        covered = (out["rt_lower"][ok, day] <= truth) & (truth <= out["rt_upper"][ok, day])
        assert 0.90 <= covered.mean() <= 0.99, covered.mean()
        assert abs(np.median(out["rt"][ok, day]) - truth) < 0.05


def test_estimate_at_t_uses_only_data_up_to_t():
    rng = np.random.default_rng(0)
    base = rng.poisson(exponential(0.02, 150, 50.0)).astype(float)
    inputs = np.vstack([base, base * 0.1])
    reference = estimate({BASIS_CASES: inputs[:1], BASIS_ADMISSIONS: inputs[1:]})
    for cut in (60, 61, 100):
        changed = inputs.copy()
        changed[:, cut + 1:] *= 10
        changed[0, cut + 5:cut + 9] = np.nan
        other = estimate({BASIS_CASES: changed[:1], BASIS_ADMISSIONS: changed[1:]})
        for name, values in reference.items():
            np.testing.assert_array_equal(values[:, :cut + 1], other[name][:, :cut + 1],
                                          err_msg=name)
        assert not np.array_equal(reference["rt"][:, cut + 1:], other["rt"][:, cut + 1:],
                                  equal_nan=True)


def test_cases_preferred_where_they_give_an_estimate():
    days = 200
    admissions = exponential(-0.01, days, 300.0)
    cases = exponential(0.03, days, 3000.0)
    cases[:60] = np.nan      # cases start late
    cases[170:] = np.nan     # and stop early
    out = estimate({BASIS_CASES: cases[None, :], BASIS_ADMISSIONS: admissions[None, :]})
    basis = out["epidemic_basis"][0]
    alone = estimate({BASIS_ADMISSIONS: admissions[None, :]})
    cases_days = basis == BASIS_CASES
    assert cases_days[80:170].all() and not cases_days[:60].any() and not cases_days[170:].any()
    np.testing.assert_allclose(out["rt"][0, cases_days], r_of_growth(0.03), rtol=0.01)
    adm_days = basis == BASIS_ADMISSIONS
    assert adm_days[20:60].all() and adm_days[170:].all()
    np.testing.assert_array_equal(out["rt"][0, adm_days], alone["rt"][0, adm_days])
    np.testing.assert_array_equal(out["growth_rate"][0, adm_days],
                                  alone["growth_rate"][0, adm_days])
    assert out["epidemic_basis"].dtype == np.int8


def test_sparse_and_gappy_series_give_nan_not_garbage():
    rng = np.random.default_rng(1)
    sparse = rng.poisson(0.8, 200).astype(float)        # < 12 events a week
    out = estimate({BASIS_ADMISSIONS: sparse[None, :]})
    for name in epidemic.OUTPUTS:
        assert np.isnan(out[name]).all(), name
    assert (out["epidemic_basis"] == 0).all()

    # Sporadic: nothing for weeks, then a burst of 15 in a week: no R from a near-empty past.
    burst = np.zeros(60)
    burst[50:57] = [1, 2, 2, 3, 2, 3, 2]
    assert np.isnan(reproduction_number(burst)["rt"]).all()

    # A missing day is unknown, not zero: the windows containing it give nothing, then resume.
    steady = np.full(120, 40.0)
    steady[60] = np.nan
    rt = reproduction_number(steady)["rt"]
    assert np.isnan(rt[60:67]).all()
    assert np.isfinite(rt[50:60]).all() and np.isfinite(rt[75:]).all()
    np.testing.assert_allclose(rt[75:], 1.0, rtol=0.01)
    g = growth(steady)["growth_rate"]
    assert np.isnan(g[60:74]).all() and np.isfinite(g[74:]).all()
    # The start of a series: too little history for Lambda, so no estimate.
    assert np.isnan(rt[:13]).all() and np.isfinite(rt[14])


def _result(name: str, rows: pd.DataFrame, specs: list[IndicatorSpec]) -> SourceResult:
    return SourceResult(name, rows, specs)


def test_cube_gets_epidemic_variables_that_never_aggregate(data_dir):
    territories = load_territories(data_dir)[0]
    dates = pd.date_range("2020-09-01", periods=90)
    rng = np.random.default_rng(2)

    def tidy(territory: str, indicator: str, mean: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"territory": territory, "date": dates, "indicator": indicator,
                             "value": rng.poisson(mean).astype(float)})

    hosp = IndicatorSpec("inc_hosp", "daily", "admissions/day", "admissions", "test", "LO",
                         "sum", count=True)
    cases = IndicatorSpec("inc_cases", "daily", "persons/day", "positives", "test", "LO",
                          "sum", count=True)
    frames = [tidy(code, "inc_hosp", exponential(0.03, 90, 20.0)) for code in ("69", "01")]
    admissions = _result("hosp", pd.concat(frames, ignore_index=True), [hosp])
    positives = _result("cases", tidy("R84", "inc_cases", exponential(0.05, 90, 500.0)),
                        [cases])
    datasets, fitted = build_cube([positives, admissions], territories)
    daily = datasets["daily"]
    basis = daily["epidemic_basis"].to_pandas()
    late = dates[30:]
    assert (basis.loc["R84", late] == BASIS_CASES).all()     # cases where they exist
    assert (basis.loc["69", late] == BASIS_ADMISSIONS).all()  # admissions elsewhere
    np.testing.assert_allclose(daily["rt"].sel(territory="R84", date=late), r_of_growth(0.05),
                               rtol=0.05)
    for name in ("rt", "rt_lower", "rt_upper", "growth_rate", "doubling_time",
                 "epidemic_basis"):
        assert daily[name].attrs["aggregation"] == "none"
        assert daily[name].attrs["source"].startswith("Vigie, computed from")
        assert name not in datasets["weekly"]
    assert "admission" in daily["rt"].attrs["description"]
    assert fitted["epidemic"]["window_days"] == 7
    assert fitted["epidemic"]["generation_interval"]["mean_days"] == 5.0
    assert fitted["epidemic"]["territories_by_basis"]["inc_cases"] == 1

    # from_dataset on the cube gives the same values as the cube's own build.
    again = epidemic.from_dataset(daily)
    xr.testing.assert_equal(again["rt"], daily["rt"])
    with pytest.raises(ValueError, match="consecutive"):
        epidemic.from_dataset(daily.isel(date=[0, 2, 3]))


def test_real_cube_rt(real_cube):
    from features.store import open_cube

    daily = open_cube("daily", settings=real_cube)
    fr = daily.sel(territory="FR")
    # Second-wave peak and the November 2020 lockdown, seen from cases.
    assert fr["epidemic_basis"].sel(date="2020-10-20").item() == BASIS_CASES
    assert 1.2 < fr["rt"].sel(date="2020-10-20").item() < 1.6
    assert fr["rt"].sel(date="2020-11-15").item() < 0.85
    assert fr["epidemic_basis"].sel(date="2020-04-10").item() == BASIS_ADMISSIONS
    deps = daily["epidemic_basis"].sel(territory=daily["territory_level"] == "department")
    assert set(np.unique(deps.values)) <= {0, BASIS_ADMISSIONS}


def test_credible_interval_matches_the_exact_gamma_quantiles():
    from scipy import special

    shape = np.r_[np.arange(13, 300, 0.5), np.geomspace(300, 1e7, 200), np.nan]
    scale = np.full(shape.shape, 0.01)
    lower, upper = epidemic.credible_interval(shape, scale, 0.95)
    ok = ~np.isnan(shape)
    np.testing.assert_allclose(lower[ok], special.gammaincinv(shape[ok], 0.025) * 0.01, rtol=3e-5)
    np.testing.assert_allclose(upper[ok], special.gammaincinv(shape[ok], 0.975) * 0.01, rtol=3e-5)
    assert np.isnan(lower[-1]) and np.isnan(upper[-1])


def test_real_cube_as_of_equals_recomputation(real_cube):
    """What a backtest reads as of a date is what it would compute from the data it sees."""
    from features.store import open_cube

    cut = open_cube("daily", as_of="2020-10-25", settings=real_cube)
    again = epidemic.from_dataset(cut)
    for name in ("rt", "rt_lower", "rt_upper", "growth_rate", "doubling_time",
                 "epidemic_basis"):
        np.testing.assert_array_equal(again[name].values, cut[name].values, err_msg=name)
