"""Epidemic indicators (features/epidemic.py) and bed occupancy rebuilt from flows
(features/occupancy.py) on series of a few days whose expected values are worked out by hand:
7-day sums, infectiousness with missing days, Cori's posterior on a flat series, the 12-event
minimum, growth and doubling time, the basis preference; the flow accounting anchored on a
published stock (forwards, backwards, with its residual), and the convolution's fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from features import epidemic, occupancy
from features.epidemic import BASIS_ADMISSIONS, BASIS_CASES, EpidemicMethod

nan = np.nan


# ---------------------------------------------------------------------------- epidemic
def test_trailing_sum_needs_every_day_of_the_window():
    x = np.array([[1.0, 2.0, 3.0, 4.0, nan, 6.0, 7.0]])
    assert epidemic.trailing_sum(x, 2)[0].tolist() == pytest.approx(
        [nan, 3.0, 5.0, 7.0, nan, nan, 13.0], nan_ok=True)


def test_infectiousness_rescales_by_the_generation_interval_mass_observed():
    w = np.array([0.0, 0.5, 0.5])
    lam = epidemic.infectiousness(np.array([2.0, 4.0, 6.0, 8.0]), w, min_coverage=0.9)
    # Λ_2 = ½·4 + ½·2 = 3, Λ_3 = ½·6 + ½·4 = 5; days 0-1 see under 90 % of w.
    assert lam.tolist() == pytest.approx([nan, nan, 3.0, 5.0], nan_ok=True)
    gappy = epidemic.infectiousness(np.array([2.0, nan, 6.0, 8.0]), w, min_coverage=0.5)
    # Days 1 and 2 see only I_0 (mass ½): ½·2 / ½ = 2; day 3 sees I_2 only: ½·6 / ½ = 6.
    assert gappy.tolist() == pytest.approx([nan, 2.0, 2.0, 6.0], nan_ok=True)


def test_cori_posterior_of_a_flat_series_by_hand():
    # 10 events a day for 60 days: Λ = 10 once the generation interval is covered, so on the
    # last day the posterior is Gamma(1 + 70, 1 / (1/5 + 70)): mean 71 / 70.2.
    out = epidemic.reproduction_number(np.full(60, 10.0))
    assert out["rt"][-1] == pytest.approx(71 / 70.2)
    assert out["shape"][-1] == pytest.approx(71.0)
    assert out["scale"][-1] == pytest.approx(1 / 70.2)
    assert out["events"][-1] == 70.0
    # Λ exists once 90 % of the generation interval is observed, R after 7 days of Λ.
    w = EpidemicMethod().generation_interval()
    first_lambda = int(np.argmax(np.cumsum(w) >= 0.9))
    first = first_lambda + 6
    assert np.isnan(out["rt"][:first]).all() and not np.isnan(out["rt"][first])
    assert out["rt_lower"][-1] < out["rt"][-1] < out["rt_upper"][-1]


def test_no_estimate_under_twelve_events_in_the_window():
    one_a_day = epidemic.reproduction_number(np.full(60, 1.0))  # 7 events a week
    two_a_day = epidemic.reproduction_number(np.full(60, 2.0))  # 14
    assert np.isnan(one_a_day["rt"]).all()
    assert two_a_day["rt"][-1] == pytest.approx(15 / 14.2)


def test_growth_and_doubling_time_from_week_over_week_sums():
    doubling = np.array([10.0] * 7 + [20.0] * 7)
    out = epidemic.growth(doubling)
    assert out["growth_rate"][-1] == pytest.approx(np.log(2) / 7)
    assert out["doubling_time"][-1] == pytest.approx(7.0)
    assert np.isnan(out["growth_rate"][:13]).all()
    halving = epidemic.growth(doubling[::-1])
    assert halving["doubling_time"][-1] == pytest.approx(-7.0)
    flat = epidemic.growth(np.full(14, 10.0))
    assert flat["growth_rate"][-1] == 0.0 and np.isnan(flat["doubling_time"][-1])
    few = epidemic.growth(np.array([1.0] * 7 + [3.0] * 7))  # 7 events the first week
    assert np.isnan(few["growth_rate"][-1])


def test_each_day_takes_the_first_basis_that_estimates():
    cases = np.array([[nan] * 40 + [50.0] * 30, [nan] * 70])
    admissions = np.full((2, 70), 10.0)
    out = epidemic.estimate({BASIS_CASES: cases, BASIS_ADMISSIONS: admissions})
    basis = out["epidemic_basis"]
    assert basis[0, -1] == BASIS_CASES and basis[0, 45] == BASIS_ADMISSIONS
    assert (basis[1, 30:] == BASIS_ADMISSIONS).all() and (basis[:, :10] == 0).all()
    assert out["rt"][0, -1] == pytest.approx(351 / 350.2)  # 50 a day, from cases
    assert out["rt"][1, -1] == pytest.approx(71 / 70.2)
    with pytest.raises(ValueError, match="no incidence series"):
        epidemic.estimate({BASIS_CASES: None})


def test_method_parameters_are_checked():
    with pytest.raises(ValueError, match="multiple of 7"):
        EpidemicMethod(window_days=10)
    with pytest.raises(ValueError, match=r"credible_level must lie in \(0, 1\)"):
        EpidemicMethod(credible_level=1.0)
    w = EpidemicMethod().generation_interval()
    assert w[0] == 0.0 and w.sum() == pytest.approx(1.0) and len(w) == 21


def test_from_dataset_refuses_gaps_in_the_date_axis():
    dates = pd.to_datetime(["2021-01-01", "2021-01-03"])
    ds = xr.Dataset({"inc_hosp": (("territory", "date"), [[1.0, 2.0]])},
                    coords={"territory": ["FR"], "date": dates})
    with pytest.raises(ValueError, match="consecutive days"):
        epidemic.from_dataset(ds)


# ---------------------------------------------------------------------------- occupancy
def _blend(accounting: float, days_away: float) -> float:
    """The accounting's share where the convolution is zero (no admissions)."""
    return accounting / (1 + (days_away / occupancy.EQUAL_ERROR_DAYS) ** 2)


def test_accounting_forwards_from_the_last_published_stock():
    net = np.array([[0.0, 5.0, 5.0, -2.0]])
    published = np.array([[100.0, nan, nan, nan]])
    out = occupancy.rebuild_by_accounting(net, published, np.zeros((1, 4)))
    # 100 + 5 = 105, + 5 = 110, − 2 = 108; one published day: no residual (b = 0).
    assert out.values[0, 0] == 100.0
    assert out.values[0, 1:].tolist() == pytest.approx(
        [_blend(105, 1), _blend(110, 2), _blend(108, 3)])
    assert out.origin.tolist() == [[occupancy.PUBLISHED] + [occupancy.REBUILT] * 3]
    assert out.parameters["bias_per_day"].tolist() == [0.0]


def test_accounting_backwards_from_the_next_published_stock_and_floored_at_zero():
    net = np.array([[0.0, 5.0, 5.0], [0.0, 30.0, 30.0]])
    published = np.array([[nan, nan, 100.0], [nan, nan, 50.0]])
    out = occupancy.rebuild_by_accounting(net, published, np.zeros((2, 3)))
    # 100 − 5 = 95 the day before, 95 − 5 = 90 two days before; 50 − 30 − 30 < 0 → 0.
    assert out.values[0].tolist() == pytest.approx([_blend(90, 2), _blend(95, 1), 100.0])
    assert out.values[1].tolist() == pytest.approx([0.0, _blend(20, 1), 50.0])


def test_accounting_adds_back_the_median_unexplained_change():
    # Published 100 then 110 while the net flow said +4: 6 beds a day of transfers.
    net = np.array([[0.0, 4.0, 4.0]])
    published = np.array([[100.0, 110.0, nan]])
    out = occupancy.rebuild_by_accounting(net, published, np.zeros((1, 3)))
    assert out.parameters["bias_per_day"].tolist() == [6.0]
    assert out.values[0, 2] == pytest.approx(_blend(110 + 4 + 6, 1))


def test_convolution_recovers_the_length_of_stay_and_the_scale():
    kernel = occupancy.survival_kernel(8.0)
    assert kernel[0] == 1.0 and (np.diff(kernel) <= 0).all() and len(kernel) == 120
    admissions = np.array([[5.0, 0.0, 10.0, 3.0] * 10, [1.0, 2.0, 0.0, 4.0] * 10])
    truth = occupancy.convolve_admissions(admissions, kernel)
    assert truth[0, 0] == 5.0 and truth[0, 1] == pytest.approx(5.0 * kernel[1])
    published = np.full(truth.shape, nan)
    published[0, 10:30] = 2.0 * truth[0, 10:30]  # published stocks: twice the model
    out = occupancy.rebuild_by_convolution(admissions, published)
    assert out.parameters["mean_length_of_stay_days"] == 8.0
    assert out.parameters["scale"].tolist() == pytest.approx([2.0, 2.0])  # median fallback
    assert out.values[0, :10] == pytest.approx(2.0 * truth[0, :10])
    assert out.values[1] == pytest.approx(2.0 * truth[1])
    assert (out.origin[0, 10:30] == occupancy.PUBLISHED).all()
    assert (out.origin[1] == occupancy.REBUILT).all()


def test_a_department_that_never_published_gets_the_convolution():
    net = np.zeros((2, 3))
    published = np.array([[100.0, nan, nan], [nan, nan, nan]])
    out = occupancy.rebuild_by_accounting(net, published, np.ones((2, 3)))
    assert out.parameters["convolution_for"] == [1]
    assert (out.origin[1] == occupancy.REBUILT).all() and (out.values[1] > 0).all()
