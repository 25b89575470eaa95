"""Scenario rules on hand-built inputs (scenarios/): the vaccination and variant levers' effect
on R, Cori's posterior of admissions and its start-of-series backfill, the overdispersion of a
window, lengths of stay, the measures table and its covariates, and the validation scores.
Every expected value is worked out in the test."""

from __future__ import annotations

import io
import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from scenarios import levers, rt
from scenarios.measures import (
    COVARIATES,
    department_covariates,
    load_measures,
    measure_covariate,
    territory_covariates,
)
from scenarios.params import los_survival
from scenarios.validation import Row, _basis_label, hit_fraction, markdown, markdown_icu

AS_OF = pd.Timestamp("2021-06-01")


# ---------------------------------------------------------------------------- levers
def test_vaccination_lowers_r_log_linearly_in_the_coverage_gained():
    lever = levers.parse_vaccination({"coverage": 60, "start_coverage": 20, "effect": 0.5,
                                      "effect_sd": 0.0}, AS_OF + pd.Timedelta(days=39))
    assert lever.protection_delay_days == 14
    # Coverage rises linearly over the 40 days from the day before as_of to `by`, protection
    # 14 days after the dose: infections on these dates see 20, 20 + 40 × 20/40, and 60 %.
    before, halfway = AS_OF + pd.Timedelta(days=13), AS_OF + pd.Timedelta(days=33)
    after = AS_OF + pd.Timedelta(days=80)
    u = pd.DatetimeIndex([before, halfway, after])
    log_r, info = levers.vaccination_log_r(lever, xr.Dataset(), ["69"], u, AS_OF,
                                           np.random.default_rng(0), n=3)
    assert log_r.shape == (1, 3, 3)
    assert log_r[0, 0].tolist() == pytest.approx([0.0, np.log(0.5) * 0.2, np.log(0.5) * 0.4])
    assert info["coverage_now"] == {"69": 20.0} and info["hindsight"] is True


def test_vaccination_starts_from_the_cube_coverage_or_zero_and_never_lowers_it(caplog):
    dates = pd.date_range("2021-05-20", periods=12, freq="D")  # up to the day before as_of
    daily = xr.Dataset({levers.COVERAGE: (("territory", "date"),
                                          np.array([[30.0] * 11 + [70.0]]))},
                       coords={"territory": ["69"], "date": dates})
    lever = levers.parse_vaccination({"coverage": 50, "effect": 0.5, "effect_sd": 0.0},
                                     AS_OF + pd.Timedelta(days=1))
    u = pd.DatetimeIndex([AS_OF + pd.Timedelta(days=60)])
    with caplog.at_level(logging.INFO, logger="scenarios.levers"):
        log_r, info = levers.vaccination_log_r(lever, daily, ["69", "13"], u, AS_OF,
                                               np.random.default_rng(0), n=1)
    assert info["coverage_now"] == {"69": 70.0, "13": 0.0}
    assert log_r[0, 0, 0] == 0.0  # 70 % already: a 50 % target changes nothing
    assert log_r[1, 0, 0] == pytest.approx(np.log(0.5) * 0.5)
    assert "no vaccination_coverage_dose1 for 13" in caplog.text


def test_variant_share_grows_by_its_advantage_per_generation():
    lever = levers.parse_variant({"advantage": 1.0, "share": 50})
    assert (lever.advantage_sd, lever.share_lag_days, lever.name) == (0.0, 7, "variant")
    t0 = AS_OF - pd.Timedelta(days=8)  # the share is dated lag + 1 days before as_of
    u = pd.DatetimeIndex([t0, t0 + pd.Timedelta(days=5)])
    log_r, info = levers.variant_log_r(lever, xr.Dataset(), ["69"], {}, u, AS_OF, 5.0,
                                       np.random.default_rng(0), n=2)
    # p = ½ on t0, then its odds double (×(1 + 1)) in one 5-day generation: p = ⅔.
    assert log_r[0, 0].tolist() == pytest.approx([np.log(1.5), np.log(1 + 2 / 3)])
    assert info["share_from"] == {"69": "scenario"}


def test_variant_presets_and_the_share_of_the_nearest_territory_that_has_one():
    delta = levers.parse_variant({"advantage": "delta", "share": "cube"})
    assert (delta.advantage, delta.share_indicator) == (0.79, "variant_share_l452r")
    assert "Alizon" in delta.advantage_source
    dates = pd.date_range("2021-05-25", periods=7, freq="D")
    share = np.full((3, 7), np.nan)
    share[1, -1] = 20.0  # only the région has a share
    daily = xr.Dataset({"variant_share_l452r": (("territory", "date"), share)},
                       coords={"territory": ["69", "R84", "FR"], "date": dates})
    parents = {"69": "R84", "R84": "FR"}
    _, info = levers.variant_log_r(delta, daily, ["69"], parents,
                                   pd.DatetimeIndex([AS_OF]), AS_OF, 5.0,
                                   np.random.default_rng(0), n=1)
    assert info["share_now"] == {"69": 20.0} and info["share_from"] == {"69": "R84"}
    with pytest.raises(ValueError, match="no variant_share_l452r for 13"):
        levers.variant_log_r(delta, daily, ["13"], {"13": "R93"}, pd.DatetimeIndex([AS_OF]),
                             AS_OF + pd.Timedelta(days=30), 5.0, np.random.default_rng(0), 1)


# ---------------------------------------------------------------------------- R of admissions
W1 = np.array([0.0, 1.0])  # every infection one day after its infector


def test_cori_posterior_by_hand():
    assert rt.infectiousness(np.array([[3.0, 5.0, 7.0]]), W1).tolist() == [[0.0, 3.0, 5.0]]
    shape, scale = rt.cori_posterior(np.full((1, 10), 10.0), W1, tau=7)
    assert np.isnan(shape[0, :6]).all()
    # Day 6: 70 events, Λ = 0 + 6 × 10; day 7 on: 70 and 70.
    assert shape[0, 6] == 71.0 and scale[0, 6] == pytest.approx(1 / 60.2)
    assert shape[0, 9] * scale[0, 9] == pytest.approx(71 / 70.2)
    mean, eff_shape = rt.window_posterior(np.full(60, 10.0), W1)
    assert mean == pytest.approx(71 / 70.2)
    assert eff_shape == pytest.approx(1 + 70 / 1.01)  # k = 1000 for a flat series


def test_backfill_extrapolates_the_first_week_backwards_at_its_growth():
    flat, n_back = rt.backfill_start(np.full((2, 10), 10.0))
    assert n_back == 21 and flat.shape == (2, 31)
    assert flat[:, :21] == pytest.approx(np.full((2, 21), 10.0))  # no growth: the level
    doubling = 2.0 ** np.arange(10)[None, :]
    ext, _ = rt.backfill_start(doubling)
    # ln 2 a day is capped at 0.35; the level is the mean of days 0..6 (18.14…), placed at
    # day 3 and taken back 4 days to the day before the series starts.
    level = (2.0 ** np.arange(7)).mean()
    assert ext[0, 20] == pytest.approx(level * np.exp(-0.35 * 4))
    falling, _ = rt.backfill_start(np.array([[64.0, 32, 16, 8, 4, 2, 1, 1]]))
    assert (falling[0, :21] == falling[0, 20]).all()  # no decline extrapolated backwards


def test_overdispersion_size_bounds():
    assert rt.nb_size(np.full(20, 50.0)) == 1000.0  # too short to tell
    assert rt.nb_size(np.full(60, 0.5)) == 1000.0  # too few events
    assert rt.nb_size(np.full(60, 50.0)) == 1000.0  # no noise at all
    assert rt.nb_size(np.tile([0.0, 0, 0, 0, 0, 0, 700], 8)) == 2.0  # clipped at the floor
    # A weekly cycle 150, 100 × 5, 50 around a centred mean of 100: (y − μ)² − μ is 2,400
    # twice a week and −100 five times, so 1/k = (2 × 0.24 − 5 × 0.01) / 7 …
    cycle = np.resize([150.0, 100, 100, 100, 100, 100, 50], 62)  # 8 whole weeks of y
    assert rt.nb_size(cycle) == pytest.approx(7 / 0.43)
    # … all of it the weekday pattern, which a 7-day window cancels.
    assert rt.nb_size(cycle, weekday=True) == 1000.0


def test_length_of_stay_curve_has_the_median_asked_for():
    curve = los_survival(10.0, 2.0, 30)
    assert curve.shape == (31,) and curve[0] > 0.95 and (np.diff(curve) < 0).all()
    assert los_survival(10.5, 2.0, 30)[10] == pytest.approx(0.5)  # day k counts at k + ½
    assert los_survival(np.array([10.0, 4.0]), 2.0, 30).shape == (2, 31)


# ---------------------------------------------------------------------------- measures
HEADER = "measure_id,type,start,end,territories,hour,modelled\n"


def test_measures_table_is_checked():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['hour', 'modelled'\]"):
        load_measures(io.StringIO("measure_id,type,start,end,territories\n"))
    with pytest.raises(ValueError, match=r"end before start for \['m1'\]"):
        load_measures(io.StringIO(HEADER + "m1,lockdown,2020-11-10,2020-11-01,all,,yes\n"))


def test_measure_types_and_curfew_hours():
    assert measure_covariate("curfew", 18) == "curfew_early"
    assert measure_covariate("curfew", None) == "curfew_early"
    assert measure_covariate("curfew", 21) == "curfew_late"
    assert measure_covariate("curfew", 23) is None
    assert measure_covariate("lockdown") == "lockdown"
    assert measure_covariate("gatherings") is None


def test_covariates_of_each_department_and_only_what_was_known():
    measures = load_measures(io.StringIO(
        HEADER + "m1,lockdown,2020-11-03,2020-11-04,69,,yes\n"
        "m2,curfew,2020-11-01,,metro,20,yes\n"
        "m3,school_closure,2020-11-02,2020-11-02,all,,yes\n"
        "m4,lockdown,2020-11-01,,all,,no\n"))
    dates = pd.date_range("2020-11-01", periods=5, freq="D")
    cov = department_covariates(measures, ["69", "971"], dates)
    col = {name: i for i, name in enumerate(COVARIATES)}
    # 69: late curfew every day, lockdown on the 3rd and 4th (the ladder includes the curfews).
    assert cov[0, :, col["curfew_late"]].tolist() == [1, 1, 1, 1, 1]
    assert cov[0, :, col["lockdown"]].tolist() == [0, 0, 1, 1, 0]
    assert cov[0, :, col["lockdown_light"]].tolist() == [0, 0, 1, 1, 0]
    assert cov[1, :, col["curfew_late"]].sum() == 0  # 971 is not metropolitan
    assert cov[:, :, col["school_closure"]].tolist() == [[0, 1, 0, 0, 0]] * 2
    # Known on 2020-11-04: the lockdown in force the day before is carried forward.
    known = department_covariates(measures, ["69"], dates, as_of=pd.Timestamp("2020-11-04"))
    assert known[0, :, col["lockdown"]].tolist() == [0, 0, 1, 1, 1]
    early = department_covariates(measures, ["69"], dates, as_of=pd.Timestamp("2020-11-03"))
    assert early[0, :, col["lockdown"]].sum() == 0  # not started yet


def test_region_covariates_are_population_shares():
    dep = np.zeros((3, 1, len(COVARIATES)))
    dep[0, 0, 3] = 1.0  # 69 locked down
    out = territory_covariates(dep, ["69", "01", "13"], ["69", "R84", "FR", "R11"],
                               ["department", "region", "country", "region"],
                               {"69": "R84", "01": "R84", "13": "R93"},
                               {"69": 3.0, "01": 1.0, "13": 4.0})
    assert out[:, 0, 3].tolist() == [1.0, 0.75, 0.375, 0.0]


# ---------------------------------------------------------------------------- validation
def _row(lockdown_median: float, status_quo_median: float = 200.0) -> Row:
    return Row("2020-11", "69", 100.0, (80.0, lockdown_median, 150.0),
               (150.0, status_quo_median, 300.0), 0.5, 0.1, 0.9)


def test_a_hit_is_a_close_lockdown_and_a_status_quo_above_what_happened():
    good = _row(110.0)
    assert good.lockdown_error == pytest.approx(0.1) and good.hit()
    assert good.lockdown_total_inside and good.status_quo_above
    assert not _row(130.0).hit() and _row(130.0).hit(tolerance=0.35)
    assert not _row(110.0, status_quo_median=90.0).hit()
    assert hit_fraction([good, _row(130.0)]) == 0.5 and np.isnan(hit_fraction([]))
    assert good.to_dict()["hit"] is True


def test_validation_tables_and_labels():
    assert markdown([_row(110.0)]).splitlines()[-1] == (
        "| 2020-11 | 69 | 100 | 110 [80–150] | 50% | 200 [150–300] | 90% |")
    icu = Row("2020-11", "69", 100.0, (80.0, 110.0, 150.0), (150.0, 200.0, 300.0), 0.5, 0.1,
              0.9, icu_peak=(10.0, 20.0, 30.0), icu_observed_peak=25.0)
    assert markdown_icu([icu]).splitlines()[-1] == "| 2020-11 | 69 | 20 [10–30] | 25 | - | - |"
    assert icu.icu_peak_inside
    assert _basis_label({"basis": "cases", "source": "R84", "shrink": 0.12}) == \
        "cases R84, k 0.12"
    assert _basis_label({"basis": "admissions", "shrink": 1.0, "note": "cases stopped"}) == \
        "admissions (cases stopped)"
