"""Model rules on hand-built forecasts (models/): the conformal calibration's scores, factors,
window, shrinkage and bounds; the Hub baseline's quantiles; scores per territory; target
dates, Hub labels and the Hub CSV round trip. Expected values are worked out in each test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from models.base import QUANTILES, quantile_array
from models.baseline import hub_baseline_quantiles
from models.calibration import (
    QCOLS,
    ConformalCalibrator,
    apply_factors,
    calibrate_rows,
    interval_scores,
)
from models.scoring import median_territory_rel_wis, score_table
from models.targets import (
    from_hub,
    get_target,
    parse_hub_target,
    select_territories,
    to_hub,
)

MONDAY = pd.Timestamp("2021-01-04")
#: log1p of a forecast's 23 quantiles: widest interval [1, 4] around the median 2, the
#: narrowest (10 %) [1.9, 2.2].
LOG_Q = np.r_[np.linspace(1.0, 1.9, 11), 2.0, np.linspace(2.2, 4.0, 11)]


# ---------------------------------------------------------------------------- calibration
def test_conformity_scores_by_hand():
    q = np.expm1(LOG_Q)[None, :].repeat(2, axis=0)
    y = np.expm1(np.array([3.0, 0.5]))
    scores = interval_scores(q, y)
    assert scores.shape == (2, 11)
    # y above the median by 1 on the log scale: widest interval (b = 2) 0.5, narrowest
    # (b = 0.2) 5; y below it by 1.5: widest (a = 1) 1.5, narrowest (a = 0.1) 15.
    assert scores[0, [0, 10]] == pytest.approx([0.5, 5.0])
    assert scores[1, [0, 10]] == pytest.approx([1.5, 15.0])
    # A zero-width forecast of zero: the log half-widths are floored at 0.01.
    flat = interval_scores(np.zeros((1, 23)), np.array([1.0]))
    assert flat[0, 0] == pytest.approx(np.log(2) / 0.01)
    assert interval_scores(np.zeros((1, 23)), np.array([0.0]))[0, 0] == 0.0


def _history(dates: list[str], score: list[float], horizon: int = 1) -> pd.DataFrame:
    """Rows of the LOG_Q forecast whose outcome has the conformity ``score`` on every
    interval's upper side (log1p y = 2 + score × the interval's upper half-width)."""
    upper = LOG_Q[::-1][:11] - 2.0  # b of each interval, widest first
    rows = []
    for day, s in zip(dates, score, strict=True):
        # The widest interval's score is exactly s; every other one is s × b_0 / b_j ≥ s.
        y = np.expm1(2.0 + s * upper[0])
        rows.append({"forecast_date": pd.Timestamp(day), "territory": "01", "horizon": horizon,
                     "target_end_date": pd.Timestamp(day) + pd.Timedelta(days=5),
                     "observed": y, **dict(zip(QCOLS, np.expm1(LOG_Q), strict=True))})
    return pd.DataFrame(rows)


def test_factor_is_the_level_quantile_of_recent_scores_shrunk_toward_one():
    hist = _history(["2020-12-07", "2020-12-14", "2020-12-21"], [2.0, 2.0, 2.0])
    alone = ConformalCalibrator(prior_scores=0).fit(hist, MONDAY)
    assert alone.factors(1)[0] == pytest.approx(2.0)  # every widest-interval score is 2
    assert alone.n_scores_ == {1: 3}
    shrunk = ConformalCalibrator(prior_scores=3).fit(hist, MONDAY)
    assert shrunk.factors(1)[0] == pytest.approx(2.0 ** (3 / (3 + 3)))  # √2
    assert (alone.factors(4) == 1.0).all()  # no history at that horizon: unchanged


def test_only_the_window_of_recent_dates_known_on_the_forecast_date_counts():
    hist = _history(["2020-11-30", "2020-12-14", "2020-12-21", "2020-12-28"],
                    [0.5, 2.0, 2.0, 9.0])
    hist.loc[3, "target_end_date"] = MONDAY  # its outcome is not known on MONDAY yet
    cal = ConformalCalibrator(window=2, prior_scores=0).fit(hist, MONDAY)
    assert cal.factors(1)[0] == pytest.approx(2.0) and cal.n_scores_ == {1: 2}


def test_factors_are_bounded():
    hist = _history(["2020-12-14", "2020-12-21"], [10.0, 10.0])
    assert ConformalCalibrator(prior_scores=0).fit(hist, MONDAY).factors(1)[0] == \
        pytest.approx(3.0)
    tiny = _history(["2020-12-14", "2020-12-21"], [0.01, 0.01])
    assert ConformalCalibrator(prior_scores=0).fit(tiny, MONDAY).factors(1)[0] == \
        pytest.approx(1 / 3)


def test_factors_scale_each_interval_about_the_median_on_the_log_scale():
    q = np.expm1(LOG_Q)[None, :]
    np.testing.assert_allclose(apply_factors(q, np.ones((1, 11))), q)
    wide = np.log1p(apply_factors(q, np.full((1, 11), 2.0)))[0]
    assert wide[11] == pytest.approx(2.0)  # the median never moves
    assert wide[0] == pytest.approx(0.0) and wide[22] == pytest.approx(6.0)  # 2 ∓ 2·(1, 2)
    floor = apply_factors(q, np.full((1, 11), 3.0))[0]
    assert floor[0] == 0.0 and (np.diff(floor) >= 0).all()  # floored at 0, still sorted


def test_calibrate_rows_uses_only_what_was_known_and_the_daily_settings():
    hist = _history(["2020-12-14", "2020-12-21"], [2.0, 2.0])
    rows = hist.iloc[[0]].assign(forecast_date=MONDAY)
    out = calibrate_rows(rows, hist, MONDAY, ConformalCalibrator(prior_scores=0))
    assert np.log1p(out[QCOLS].to_numpy())[0, 0] == pytest.approx(0.0)  # 2 − 2 × 1
    daily = ConformalCalibrator.for_frequency("daily")
    assert (daily.window, daily.prior_scores) == (26, 0.0)
    assert ConformalCalibrator.for_frequency("weekly") == ConformalCalibrator()


# ---------------------------------------------------------------------------- baseline
def test_hub_baseline_flat_median_symmetric_changes_floored_at_zero():
    assert (hub_baseline_quantiles(np.array([]), 2) == 0).all()
    assert (hub_baseline_quantiles(np.array([7.0]), 3) == 7.0).all()
    q = hub_baseline_quantiles(np.array([8.0, 10.0]), 1)[0]  # one change: +2, and −2
    levels = np.array(QUANTILES)
    assert q[levels == 0.5] == 10.0
    assert (q[levels <= 0.45] == 8.0).all() and (q[levels >= 0.55] == 12.0).all()
    low = hub_baseline_quantiles(np.array([3.0, 1.0]), 1)[0]  # 1 ± 2, floored
    assert low[0] == 0.0 and low[-1] == 3.0
    windowed = hub_baseline_quantiles(np.array([0.0, 100.0, 101.0]), 1, window=1)[0]
    assert windowed.min() == 100.0 and windowed.max() == 102.0  # only the last change
    two = hub_baseline_quantiles(np.array([8.0, 10.0]), 2)
    assert two[1, 0] == 6.0 and two[1, -1] == 14.0  # ±2 twice at the extremes


# ---------------------------------------------------------------------------- scoring
def test_relative_wis_per_territory_then_its_median():
    def rows(model: str, errors: dict[str, float]) -> pd.DataFrame:
        return pd.DataFrame([{"model": model, "territory": t, "forecast_date": MONDAY,
                              "horizon": 1, "q0.5": 10.0 + e, "observed": 10.0}
                             for t, e in errors.items()])

    scored = score_table(pd.concat([rows("baseline", {"A": 4.0, "B": 3.0, "C": 0.0}),
                                    rows("m", {"A": 2.0, "B": 6.0, "C": 1.0})]),
                         ["q0.5"]).assign(cov50=1.0, cov90=1.0)
    out = median_territory_rel_wis(scored, ["horizon"]).set_index("model")
    # A: 2/4 = 0.5, B: 6/3 = 2; C has a perfect baseline (no ratio): median 1.25.
    assert out.loc["m", "rel_wis"] == pytest.approx(1.25)
    assert out.loc["m", "beats_baseline"] == 1 and out.loc["m", "territories"] == 2


# ---------------------------------------------------------------------------- targets
def test_target_end_dates_and_labels():
    weekly, daily = get_target("inc_hosp"), get_target("hosp")
    assert weekly.frequency == "weekly" and daily.frequency == "daily"
    assert weekly.end_date(MONDAY, 1) == pd.Timestamp("2021-01-09")  # its week's Saturday
    assert weekly.end_date(MONDAY, 2) == pd.Timestamp("2021-01-16")
    assert daily.end_date(MONDAY, 7) == pd.Timestamp("2021-01-11")
    quarterly = get_target("unemployment")
    assert quarterly.end_date(MONDAY, 1) == pd.Timestamp("2021-03-31")
    assert quarterly.end_date(MONDAY, 2) == pd.Timestamp("2021-06-30")
    assert weekly.hub_target(2) == "2 wk ahead inc hosp"
    assert parse_hub_target("14 day ahead icu") == (get_target("icu", "daily"), 14)
    with pytest.raises(KeyError, match="unknown Hub target"):
        parse_hub_target("1 wk ahead cases")
    with pytest.raises(KeyError, match="known: inc_hosp/weekly"):
        get_target("inc_hosp", "monthly")


def test_territories_of_a_level_in_cube_order():
    ds = xr.Dataset(coords={"territory": ["FR", "R84", "69", "01"],
                            "territory_level": ("territory",
                                                ["country", "region", "department", "department"])})
    assert select_territories(ds, "department") == ["69", "01"]
    assert select_territories(ds, "all") == ["FR", "R84", "69", "01"]
    assert select_territories(ds, "department", ["01"]) == ["01"]
    with pytest.raises(KeyError, match=r"not at level department: \['R84'\]"):
        select_territories(ds, "department", ["R84"])


def test_hub_rows_round_trip():
    target = get_target("inc_hosp")
    values = np.tile(np.arange(23.0), (2, 2, 1)) + np.array([0.0, 100.0])[:, None, None]
    fc = quantile_array(values, ["69", "FR"], pd.DatetimeIndex(["2021-01-09", "2021-01-16"]),
                        model="m")
    hub = to_hub(fc, target, MONDAY)
    assert len(hub) == 2 * 2 * 23
    first = hub.iloc[0].to_dict()
    assert first == {"forecast_date": "2021-01-04", "target": "1 wk ahead inc hosp",
                     "target_end_date": "2021-01-09", "location": "69", "type": "quantile",
                     "quantile": 0.01, "value": 0.0}
    wide = from_hub(hub).set_index(["territory", "horizon"])
    assert wide.loc[("FR", 2), "q0.5"] == 111.0 and wide.loc[("69", 1), "q0.99"] == 22.0
    assert (wide["target_name"] == "inc_hosp").all() and (wide["frequency"] == "weekly").all()


def test_a_derived_target_is_prepared_only_where_it_was_reported():
    """A city indicator at EPCI level: an EPCI of the cube that never sent it gets no series
    (it would be forecast as 0 requests); a built-in target keeps every territory."""
    from models.preparation import prepare
    from models.targets import TARGETS, derive_target

    dates = pd.date_range("2021-01-02", periods=30, freq="7D")
    codes = ["243500139", "200046977", "35", "69"]
    sent = np.full((4, 30), np.nan)
    sent[0] = np.arange(30) + 400.0
    sent[2] = sent[0]
    ds = xr.Dataset(
        {"food_aid_requests": (("territory", "date"), sent),
         "inc_hosp": (("territory", "date"), np.ones((4, 30)))},
        coords={"territory": codes, "date": dates,
                "territory_level": ("territory", ["epci", "epci", "department",
                                                  "department"])})
    target = derive_target("food_aid_requests", "weekly",
                           {"units": "requests", "aggregation": "sum", "count": 1},
                           ["epci", "department"])
    y, _ = prepare(ds, target, "epci")
    assert list(y["territory"].values) == ["243500139"]
    y, _ = prepare(ds, TARGETS[("inc_hosp", "weekly")], "department")
    assert list(y["territory"].values) == ["35", "69"]


@pytest.mark.parametrize(("code", "level"), [
    ("FR", "national"), ("R84", "region"), ("69", "department"), ("974", "department"),
    ("2A", "department"), ("243500139", "epci"), ("35238", "commune"), ("2A004", "commune")])
def test_the_score_command_names_the_level_of_every_kind_of_location(code, level):
    from service.usecases.backtests import _level_of

    assert _level_of(code) == level
