"""Cube construction (features/cube.py) on hand-built tidy frames and the registry of
tests/unit/tiny.py: first source wins, totals only when every child reports (and what the
coverage attribute says otherwise), published values win, population-weighted means,
national indices, weekly sums/means/stocks, derived rates and the départements' incidence
estimated from screening. Every expected value is worked out in the test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.cube import build_cube, merge_results, registry_children, totals_coverage
from features.indicators import screened_absent, screened_present
from features.sources.spf_screening import SPECS as SCREENING
from tests.unit.tiny import result, spec, territories, tidy

nan = np.nan
START = "2020-11-01"  # a Sunday: 2020-11-01..07 is one Sunday–Saturday week
D1, D2, D3 = "2020-11-01", "2020-11-02", "2020-11-03"


@pytest.fixture(scope="module")
def reg():
    return territories()


def _daily(reg, frames, specs):
    datasets, _ = build_cube([result("test", frames, specs)], reg)
    return datasets


def _series(var, code) -> list[float]:
    return var.sel(territory=code).values.tolist()


def test_first_source_wins_and_only_present_indicators_keep_their_spec():
    first = result("a", [tidy({"35": [1.0, 2.0]}, D1, "calls")], [spec("calls"), spec("unused")])
    second = result("b", [tidy({"35": [9.0, 9.0, 3.0]}, D1, "calls")], [spec("calls")])
    frame, specs = merge_results([first, second])
    by_date = frame.set_index("date")["value"]
    assert by_date.tolist() == [1.0, 2.0, 3.0]  # the third day only b has
    assert set(specs) == {"calls"}
    empty, none = merge_results([])
    assert empty.empty and none == {}


def test_registry_children_of_each_level(reg):
    assert registry_children(reg, "region") == {"R53": ["35", "22"], "R84": ["69", "01"]}
    assert registry_children(reg, "country") == {"FR": ["35", "22", "69", "01", "978"]}


def test_a_total_only_on_dates_when_every_child_reports(reg):
    calls = tidy({"35": [1, 2, 3], "22": [10, nan, 30], "69": [100, 200, 300], "01": [5, 5, 5]},
                 START, "calls")
    var = _daily(reg, [calls], [spec("calls")])["daily"]["calls"]
    assert _series(var, "R53") == pytest.approx([11.0, nan, 33.0], nan_ok=True)
    assert _series(var, "R84") == [105.0, 205.0, 305.0]
    assert _series(var, "FR") == pytest.approx([116.0, nan, 338.0], nan_ok=True)
    coverage = totals_coverage(var)
    # 978 never reports this indicator: France needs its four départements only.
    assert coverage["children"] == {"FR": 4, "R53": 2, "R84": 2}
    assert coverage["incomplete"] == {"FR": {D2: 3}, "R53": {D2: 1}}


def test_a_department_absent_from_the_source_counts_as_not_reporting(reg):
    calls = tidy({"35": [4.0, 4.0]}, START, "calls")
    var = _daily(reg, [calls], [spec("calls")])["daily"]["calls"]
    assert np.isnan(var.sel(territory=["R53", "FR"]).values).all()
    coverage = totals_coverage(var)
    assert coverage["children"]["R53"] == 2 and coverage["children"]["FR"] == 4
    assert coverage["incomplete"]["R53"] == {D1: 1, D2: 1}
    assert "R84" not in coverage["incomplete"]  # 0 of 2 is no gap to tell, just no total


def test_a_collectivity_counts_for_france_once_it_reports_at_all(reg):
    calls = tidy({"35": [1, 1], "22": [2, 2], "69": [3, 3], "01": [4, 4], "978": [50, nan]},
                 START, "calls")
    var = _daily(reg, [calls], [spec("calls")])["daily"]["calls"]
    assert _series(var, "FR") == pytest.approx([60.0, nan], nan_ok=True)
    assert _series(var, "R53") == [3.0, 3.0]  # collectivités are under France only
    assert totals_coverage(var)["incomplete"] == {"FR": {D2: 4}}


def test_a_published_total_wins_and_is_never_recomputed(reg):
    calls = tidy({"35": [1, 1, 1], "22": [2, 2, 2], "R53": [999, nan, nan]}, START, "calls")
    var = _daily(reg, [calls], [spec("calls")])["daily"]["calls"]
    # R53 publishes one day: its row is the publisher's, the other days stay unknown.
    assert _series(var, "R53") == pytest.approx([999.0, nan, nan], nan_ok=True)
    assert "R53" not in totals_coverage(var)["children"]


def test_rates_are_population_weighted_over_complete_children(reg):
    rate = tidy({"35": [10.0, 10.0], "22": [30.0, nan]}, START, "rate")
    var = _daily(reg, [rate], [spec("rate", aggregation="population_mean", count=False,
                                    units="%")])["daily"]["rate"]
    # (10 × 1,000,000 + 30 × 600,000) / 1,600,000 = 17.5; day 2 lacks 22: no mean.
    assert _series(var, "R53") == pytest.approx([17.5, nan], nan_ok=True)


def test_national_values_repeat_everywhere_and_unaggregated_ones_never_sum(reg):
    index = tidy({"FR": [60.0, 70.0]}, START, "stringency")
    own = tidy({"35": [5.0, 6.0], "22": [1.0, 1.0]}, START, "median_age")
    daily = _daily(reg, [index, own],
                   [spec("stringency", aggregation="national", count=False, units="index"),
                    spec("median_age", aggregation="none", count=False, units="years")])["daily"]
    for code in ("35", "R53", "FR"):
        assert _series(daily["stringency"], code) == [60.0, 70.0]
    assert np.isnan(daily["median_age"].sel(territory="R53").values).all()
    assert totals_coverage(daily["median_age"]) is None


def test_weekly_sums_of_complete_weeks_means_of_four_days_and_saturday_stocks(reg):
    days = 14  # two Sunday–Saturday weeks, 2020-11-01..07 and 08..14
    counts = [1.0] * 7 + [2.0] * 6 + [nan]  # week 2 misses its Saturday
    level = [10.0, nan, nan, nan, 10.0, 20.0, 30.0] + [5.0, nan, nan, nan, nan, nan, 7.0]
    stock = list(np.arange(1.0, days + 1))
    frames = [tidy({"35": counts}, START, "adm"), tidy({"35": level}, START, "mobility"),
              tidy({"35": stock}, START, "beds")]
    weekly = _daily(reg, frames, [
        spec("adm"), spec("mobility", aggregation="population_mean", count=False, units="%"),
        spec("beds", stock=True, units="beds")])["weekly"]
    saturdays = pd.DatetimeIndex(weekly["date"].values)
    assert list(saturdays.strftime("%Y-%m-%d")) == ["2020-11-07", "2020-11-14"]
    assert (saturdays.dayofweek == 5).all()
    assert _series(weekly["adm"], "35") == pytest.approx([7.0, nan], nan_ok=True)
    assert weekly["adm"].attrs["units"] == "persons/week"
    # Four days published in week 1: their mean; two in week 2: none.
    assert _series(weekly["mobility"], "35") == pytest.approx([17.5, nan], nan_ok=True)
    assert _series(weekly["beds"], "35") == [7.0, 14.0]  # the Saturday's value, never a sum


def test_weekly_totals_carry_the_coverage_of_their_children(reg):
    counts = {"35": [1.0] * 7, "22": [1.0] * 6 + [nan]}
    weekly = _daily(reg, [tidy(counts, START, "adm")], [spec("adm")])["weekly"]
    assert _series(weekly["adm"], "35") == [7.0]
    assert np.isnan(weekly["adm"].sel(territory="R53").item())
    assert totals_coverage(weekly["adm"])["incomplete"]["R53"] == {"2020-11-07": 1}


def test_rates_derived_from_counts_at_every_level(reg):
    frames = [tidy({"35": [10.0] * 7, "22": [20.0] * 7}, START, "inc_cases"),
              tidy({"35": [100.0] * 7, "22": [100.0] * 7}, START, "inc_tests"),
              tidy({"35": [250_000.0], "22": [nan]}, "2020-11-07", "vaccinated_dose1"),
              tidy({"35": [30.0]}, "2020-11-07", screened_present("l452r")),
              tidy({"35": [10.0]}, "2020-11-07", screened_absent("l452r"))]
    specs = [spec("inc_cases"), spec("inc_tests"),
             spec("vaccinated_dose1", stock=True, units="persons"),
             SCREENING[screened_present("l452r")], SCREENING[screened_absent("l452r")]]
    daily = _daily(reg, frames, specs)["daily"]
    last = {"date": "2020-11-07"}
    # 7 × 10 positives / 1,000,000 inhabitants × 100,000 = 7; R53: 210 / 1,600,000 → 13.125.
    assert daily["incidence_rate_7d"].sel(territory="35", **last).item() == pytest.approx(7.0)
    assert daily["incidence_rate_7d"].sel(territory="R53", **last).item() == \
        pytest.approx(13.125)
    assert np.isnan(daily["incidence_rate_7d"].sel(territory="35", date="2020-11-06").item())
    # 100 × 70 / 700 = 10 %; 25 % of Ille-et-Vilaine vaccinated; L452R 30 of 40 screened.
    assert daily["positivity_rate_7d"].sel(territory="35", **last).item() == pytest.approx(10.0)
    assert daily["vaccination_coverage_dose1"].sel(territory="35", **last).item() == \
        pytest.approx(25.0)
    assert daily["variant_share_l452r"].sel(territory="35", **last).item() == pytest.approx(75.0)


def test_a_published_rate_wins_over_the_derived_one(reg):
    from features.indicators import INCIDENCE_RATE_7D

    frames = [tidy({"35": [10.0] * 7}, START, "inc_cases"),
              tidy({"35": [123.0]}, "2020-11-07", "incidence_rate_7d")]
    daily = _daily(reg, frames, [spec("inc_cases"), INCIDENCE_RATE_7D])["daily"]
    assert daily["incidence_rate_7d"].sel(territory="35", date="2020-11-07").item() == 123.0


def test_departments_incidence_estimated_from_screening_and_their_regions_ratio(reg):
    # Bretagne: 10 positive persons a day (70 over the window ending 11-07); positive tests
    # over that window 60 in 35 and 40 in 22, so 100 for the région: 0.7 person per test.
    frames = [tidy({"R53": [10.0] * 7}, START, "inc_cases"),
              tidy({"35": [60.0], "22": [40.0], "69": [10.0], "01": [5.0]}, "2020-11-07",
                   "screened_positive_tests")]
    daily = _daily(reg, frames, [spec("inc_cases"),
                                 SCREENING["screened_positive_tests"]])["daily"]
    estimated = daily["incidence_rate_7d_estimated"].sel(date="2020-11-07")
    # 60 × 0.7 / 1,000,000 × 100,000 = 4.2; 40 × 0.7 / 600,000 × 100,000 = 4.666…
    assert estimated.sel(territory="35").item() == pytest.approx(4.2)
    assert estimated.sel(territory="22").item() == pytest.approx(40 * 0.7 / 6)
    # Together they give back the région's own rate: 70 / 1,600,000 × 100,000 = 4.375.
    own = daily["incidence_rate_7d"].sel(territory="R53", date="2020-11-07").item()
    weighted = (4.2 * 1_000_000 + 40 * 0.7 / 6 * 600_000) / 1_600_000
    assert own == pytest.approx(4.375) == pytest.approx(weighted)
    assert np.isnan(estimated.sel(territory="R53").item())  # it has its own rate
    # R84 has no positive persons, and only 15 tests (under 20): no estimate.
    assert np.isnan(estimated.sel(territory=["69", "01"]).values).all()
