"""Leading signals in gbm: used while live, dropped (logged, recorded) when they are not.

Each leading source (cases, tests, vaccination, screening) is truncated before the forecast
origin: the forecast must still run, log the fallback, record it, and equal the model fitted
without that source's signals; a model that forward-filled the stale values (the plain
``exog`` path, i.e. no fallback) gives a different forecast, so these tests fail if the
fallback is removed.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from models.forecasting import forecast
from models.learning import GlobalGBM
from models.registry import Registry
from models.signals import resolve_signals
from models.targets import get_target
from tests.synthetic_cube import SOURCE_VARIABLES, add_leading_signals, synthetic_cube

SIGNALS = ("incidence_rate_7d", "positivity_rate_7d", "vaccination_coverage_dose1",
           "variant_share_l452r")
FAST = {"max_iter": 30, "min_rows": 50}


@pytest.fixture(scope="module")
def cube() -> xr.Dataset:
    return add_leading_signals(synthetic_cube("weekly", periods=60))


def _fit(ds: xr.Dataset, **params) -> tuple[GlobalGBM, xr.DataArray]:
    model = GlobalGBM(exog=(), **FAST, **params)
    fc = model.fit(ds["inc_hosp"], ds.drop_vars("inc_hosp")).predict(4)
    return model, fc


def _truncate(ds: xr.Dataset, names, before: int) -> xr.Dataset:
    """Remove the values of ``names`` in the last ``before`` periods (the source stopped)."""
    ds = ds.copy()
    for name in names:
        values = ds[name].values.copy()
        values[:, -before:] = np.nan
        ds[name] = ds[name].copy(data=values)
    return ds


def test_live_signals_are_read_like_exog(cube):
    """While a signal is live, the checked path builds exactly the plain exog features."""
    _, checked = _fit(cube, signals=("incidence_rate_7d", "positivity_rate_7d"))
    plain = GlobalGBM(exog=("incidence_rate_7d", "positivity_rate_7d"), **FAST)
    expected = plain.fit(cube["inc_hosp"], cube.drop_vars("inc_hosp")).predict(4)
    np.testing.assert_allclose(checked.values, expected.values)
    model, _ = _fit(cube, signals=SIGNALS)
    assert model.signal_fallbacks_ == {}
    assert model.features_.shape[-1] == _fit(cube)[0].features_.shape[-1] + 3 * len(SIGNALS)


@pytest.mark.parametrize("source", sorted(SOURCE_VARIABLES))
def test_truncated_source_falls_back_to_the_model_without_it(cube, source, caplog):
    caplog.set_level(logging.WARNING, logger="models.signals")
    truncated = _truncate(cube, SOURCE_VARIABLES[source], before=5)
    model, fc = _fit(truncated, signals=SIGNALS)
    assert np.isfinite(fc.values).all()
    lost = [s for s in SIGNALS if s in SOURCE_VARIABLES[source]]
    assert lost, "every source feeds some signal"
    assert set(model.signal_fallbacks_) == set(lost)
    for name in lost:
        assert "stopped" in model.signal_fallbacks_[name]
        assert f"leading signal {name} dropped" in caplog.text
    assert fc.attrs["signal_fallbacks"] == model.signal_fallbacks_
    kept = tuple(s for s in SIGNALS if s not in lost)
    _, without = _fit(cube, signals=kept)
    np.testing.assert_allclose(fc.values, without.values)
    # Without the fallback (the stale values forward-filled, as plain exog does) the forecast
    # is dragged elsewhere: this test would fail.
    stale = GlobalGBM(exog=SIGNALS, **FAST)
    dragged = stale.fit(truncated["inc_hosp"], truncated.drop_vars("inc_hosp")).predict(4)
    assert not np.allclose(dragged.values, without.values)


def test_signal_not_started(cube, caplog):
    caplog.set_level(logging.WARNING, logger="models.signals")
    absent = cube.drop_vars(["vaccination_coverage_dose1"])
    model, fc = _fit(absent, signals=SIGNALS)
    assert model.signal_fallbacks_ == {
        "vaccination_coverage_dose1": "not started: absent from the cube"}
    # Started three weeks before the origin: too little history to learn from.
    young = cube.copy()
    values = young["vaccination_coverage_dose1"].values.copy()
    values[:, :-3] = np.nan
    young["vaccination_coverage_dose1"] = young["vaccination_coverage_dose1"].copy(data=values)
    model, fc_young = _fit(young, signals=SIGNALS)
    assert model.signal_fallbacks_["vaccination_coverage_dose1"].startswith(
        "not started: 3 periods of history")
    np.testing.assert_allclose(fc_young.values, fc.values)
    assert "vaccination_coverage_dose1 dropped" in caplog.text


def test_signal_only_below_some_territories(cube):
    """A département-only signal (no value for France or the régions, no ancestor to take):
    dropped, saying it is not published there rather than stopped."""
    values = cube["vaccination_coverage_dose1"].values.copy()
    values[cube["territory_level"].values != "department"] = np.nan
    X = cube.drop_vars("inc_hosp").assign(
        vaccination_coverage_dose1=(("territory", "date"), values))
    out = resolve_signals(("vaccination_coverage_dose1",), X, cube["inc_hosp"])
    assert out.fallbacks["vaccination_coverage_dose1"].startswith(
        "not published for 3 territories without a live ancestor (R84, R94, FR)")


def test_the_target_itself_is_not_a_fallback(cube):
    """Forecasting a signal (e.g. emergency visits) with a model that lists it: no warning."""
    y = cube["incidence_rate_7d"].rename("incidence_rate_7d")
    out = resolve_signals(("incidence_rate_7d", "positivity_rate_7d"),
                          cube.drop_vars("incidence_rate_7d"), y)
    assert out.fallbacks == {} and set(out.values) == {"positivity_rate_7d"}


def test_regions_stop_france_goes_on(cube, caplog):
    """SI-DEP by région stops while the national file goes on: régions and départements read
    France's series (for the whole history, as if régions had never been published)."""
    caplog.set_level(logging.WARNING, logger="models.signals")
    regions = cube["territory_level"].values == "region"
    stopped = cube.copy()
    never = cube.copy()
    for name in ("incidence_rate_7d",):
        a, b = stopped[name].values.copy(), never[name].values.copy()
        a[regions, -4:] = np.nan
        b[regions, :] = np.nan
        stopped[name] = stopped[name].copy(data=a)
        never[name] = never[name].copy(data=b)
    model, fc = _fit(stopped, signals=("incidence_rate_7d",))
    _, expected = _fit(never, signals=("incidence_rate_7d",))
    np.testing.assert_allclose(fc.values, expected.values)
    note = model.signal_fallbacks_["incidence_rate_7d"]
    assert note.startswith("2 territories stopped or late, their ancestor's series used")
    assert "R84→FR" in note and "incidence_rate_7d" in caplog.text


def test_scheme_change_drops_the_family(cube, caplog):
    caplog.set_level(logging.WARNING, logger="models.signals")
    changed = cube.copy()
    new = np.full(changed["variant_share_l452r"].shape, np.nan)
    new[:, -4:] = 30.0  # the Omicron proxy of the new scheme appears 4 weeks before the origin
    changed["variant_share_a0c0"] = (("territory", "date"), new)
    model, fc = _fit(changed, signals=SIGNALS)
    reason = model.signal_fallbacks_["variant_share_l452r"]
    assert reason.startswith("scheme changed (variant_share_a0c0 started")
    _, without = _fit(cube, signals=SIGNALS[:-1])
    np.testing.assert_allclose(fc.values, without.values)
    assert "variant_share_l452r dropped" in caplog.text


def test_published_late_is_used_lagged(cube):
    """A signal one period behind the origin (publication delay) is used lagged by one period
    in training and prediction alike, not forward-filled."""
    late = _truncate(cube, ["incidence_rate_7d"], before=1)
    model, fc = _fit(late, signals=("incidence_rate_7d",))
    assert model.signal_fallbacks_ == {}
    shifted = cube.copy()
    values = np.full(cube["incidence_rate_7d"].shape, np.nan)
    values[:, 1:] = late["incidence_rate_7d"].values[:, :-1]
    shifted["incidence_rate_7d"] = shifted["incidence_rate_7d"].copy(data=values)
    _, expected = _fit(shifted, signals=("incidence_rate_7d",))
    np.testing.assert_allclose(fc.values, expected.values)
    # Two periods late (more than the 7 days allowed): stopped.
    model, _ = _fit(_truncate(cube, ["incidence_rate_7d"], before=2),
                    signals=("incidence_rate_7d",))
    assert model.signal_fallbacks_["incidence_rate_7d"].startswith("stopped")


def test_one_late_region_does_not_lag_everyone(cube):
    """One région a week late: it (and its départements) read France's current series; the
    others keep their own, unlagged."""
    late = cube.copy()
    values = late["incidence_rate_7d"].values.copy()
    codes = [str(t) for t in cube["territory"].values]
    values[codes.index("R94"), -1] = np.nan
    late["incidence_rate_7d"] = late["incidence_rate_7d"].copy(data=values)
    out = resolve_signals(("incidence_rate_7d",), late.drop_vars("inc_hosp"), cube["inc_hosp"])
    got = out.values["incidence_rate_7d"]
    own = cube["incidence_rate_7d"].values
    np.testing.assert_allclose(got[codes.index("R84")], own[codes.index("R84")], equal_nan=True)
    for code in ("R94", "2A"):
        np.testing.assert_allclose(got[codes.index(code)], own[codes.index("FR")],
                                   equal_nan=True)
    assert "R94→FR" in out.fallbacks["incidence_rate_7d"]


def test_resolve_signals_daily_age():
    ds = add_leading_signals(synthetic_cube("daily", periods=120))
    y = ds["inc_hosp"]
    ok = resolve_signals(("incidence_rate_7d",), ds.drop_vars("inc_hosp"), y, max_age=7)
    assert set(ok.values) == {"incidence_rate_7d"}
    stale = _truncate(ds, ["incidence_rate_7d"], before=9)
    out = resolve_signals(("incidence_rate_7d",), stale.drop_vars("inc_hosp"), y, max_age=7)
    assert out.dropped == ["incidence_rate_7d"]
    assert "9 periods before the origin" in out.fallbacks["incidence_rate_7d"]


def test_forecast_metadata_records_the_fallback(cube):
    """Through the pipeline and registry: the served ensemble version that reads the signals
    still forecasts when a source stopped, and its metadata says which signal it went without."""
    truncated = _truncate(cube, SOURCE_VARIABLES["cases"], before=5)

    def opener(frequency, as_of):
        if as_of is None:
            return truncated
        return truncated.sel(date=truncated["date"] < pd.Timestamp(as_of))

    fd = pd.Timestamp(truncated["date"].values[-1]) + pd.Timedelta(days=2)
    fc, meta = forecast(get_target("inc_hosp", "weekly"), "department", fd, "ensemble@1.2",
                        opener, calibrate=False, registry=Registry())
    assert np.isfinite(fc.values).all()
    (member, fallbacks), = meta["signal_fallbacks"].items()
    assert member.startswith("gbm")
    assert fallbacks["incidence_rate_7d"].startswith("stopped")
    assert fallbacks["positivity_rate_7d"].startswith("stopped")
