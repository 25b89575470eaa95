"""The damped-growth member: it extrapolates a known exponential with its damping, follows
the case growth that leads admissions, and falls back to the admissions' own growth (logged,
recorded) when the case signal stops."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from models.growth import DampedGrowth, damped_sum
from models.registry import Registry
from tests.synthetic_cube import add_leading_signals, synthetic_cube


def _exponential(rate_hosp: float, rate_cases: float, periods: int = 30) -> xr.Dataset:
    """France, one région, one département: admissions growing by ``rate_hosp`` a week on the
    log scale (no noise), case incidence by ``rate_cases`` (France and the région only)."""
    dates = pd.date_range("2020-06-06", periods=periods, freq="W-SAT")
    t = np.arange(periods)
    hosp = np.stack([np.exp(np.log(s) + rate_hosp * t) for s in (2000.0, 400.0, 150.0)])
    cases = np.stack([np.exp(np.log(s) + rate_cases * (t - t[-1])) for s in (5e5, 6e5, 1.0)])
    cases[2] = np.nan  # no département cases: the département reads its région's
    coords = {"territory": ["FR", "R84", "69"], "date": dates,
              "territory_level": ("territory", ["country", "region", "department"]),
              "territory_parent": ("territory", ["", "FR", "R84"]),
              "population": ("territory", [67e6, 8e6, 1.8e6])}
    return xr.Dataset({"inc_hosp": (("territory", "date"), hosp),
                       "incidence_rate_7d": (("territory", "date"), cases)}, coords=coords)


def _fit(ds: xr.Dataset, **params) -> tuple[DampedGrowth, xr.DataArray]:
    model = DampedGrowth(**params)
    return model, model.fit(ds["inc_hosp"], ds.drop_vars("inc_hosp")).predict(4)


@pytest.mark.parametrize("phi", [0.5, 0.8, 1.0])
def test_extrapolates_a_known_exponential_with_damping(phi):
    ds = _exponential(0.2, 0.2)
    model, fc = _fit(ds, phi=phi)
    assert model.signal_fallbacks_ == {}
    last = ds["inc_hosp"].values[:, -1]
    expected = np.expm1(np.log1p(last)[:, None] + 0.2 * damped_sum(phi, 4)[None, :])
    np.testing.assert_allclose(fc.sel(quantile=0.5).values, expected, rtol=1e-3)
    # The weekly log growth shrinks by phi each week: 0.2, 0.2 phi, 0.2 phi², ...
    steps = np.diff(np.log1p(fc.sel(territory="FR", quantile=0.5).values))
    np.testing.assert_allclose(steps, 0.2 * phi ** np.arange(1, 4), rtol=1e-3)
    # Spread from the rule's own past errors: damping under-forecasts a constant growth by
    # 0.2 (h - (1 + phi + ... + phi^(h-1))) at every origin (exact, hence no spread, at 1).
    sd = 0.2 * (np.arange(1, 5) - damped_sum(phi, 4))
    upper = np.log1p(fc.sel(quantile=0.975).values) - np.log1p(fc.sel(quantile=0.5).values)
    expected = np.broadcast_to(np.maximum(1.959964 * sd, 1.959964e-3), upper.shape)
    np.testing.assert_allclose(upper, expected, atol=0.01)


def test_case_growth_leads_the_turn():
    """Cases already falling while admissions still rise: the blend turns the forecast down,
    the département following its région's cases."""
    ds = _exponential(0.2, -0.3)
    _, fc = _fit(ds, phi=0.5, case_weight=0.8)
    blend = 0.8 * -0.3 + 0.2 * 0.2
    steps = np.diff(np.log1p(np.concatenate(
        [ds["inc_hosp"].values[:, -1:], fc.sel(quantile=0.5).values], axis=1)), axis=1)
    np.testing.assert_allclose(steps[:, 0], blend, rtol=1e-3)
    _, own = _fit(ds, phi=0.5, case_weight=0.0)
    assert np.all(own.sel(quantile=0.5).values > fc.sel(quantile=0.5).values)


def test_stopped_cases_fall_back_to_admissions_growth(caplog):
    caplog.set_level(logging.WARNING)
    ds = _exponential(0.2, -0.3)
    stopped = ds.copy()
    values = stopped["incidence_rate_7d"].values.copy()
    values[:, -4:] = np.nan  # every case series stopped a month before the origin
    stopped["incidence_rate_7d"] = stopped["incidence_rate_7d"].copy(data=values)
    model, fc = _fit(stopped, phi=0.5, case_weight=0.8)
    assert model.signal_fallbacks_["incidence_rate_7d"].startswith("stopped")
    assert fc.attrs["signal_fallbacks"] == model.signal_fallbacks_
    assert "admissions' own growth only" in caplog.text
    _, own = _fit(ds.drop_vars("incidence_rate_7d"), phi=0.5, case_weight=0.8)
    np.testing.assert_allclose(fc.values, own.values)
    # Forward-filling the stale cases instead would read their last change as the growth.
    _, alone = _fit(ds, phi=0.5, case_weight=0.0)
    np.testing.assert_allclose(fc.values, alone.values)


def test_regions_stop_france_goes_on():
    """Régional cases stop, France's go on: the région and its département read France's."""
    ds = _exponential(0.2, 0.1)
    values = ds["incidence_rate_7d"].values.copy()
    values[0] = np.exp(np.log(5e3) - 0.3 * np.arange(-values.shape[1] + 1, 1))  # France falls
    values[1, -4:] = np.nan
    ds["incidence_rate_7d"] = ds["incidence_rate_7d"].copy(data=values)
    model, fc = _fit(ds, phi=0.5, case_weight=1.0)
    assert "R84→FR" in model.signal_fallbacks_["incidence_rate_7d"]
    first = np.log1p(fc.sel(horizon=1, quantile=0.5).values) - np.log1p(
        ds["inc_hosp"].values[:, -1])
    np.testing.assert_allclose(first, -0.3, rtol=1e-3)


def test_short_history_falls_back_to_baseline():
    ds = _exponential(0.1, 0.1, periods=30)
    values = ds["inc_hosp"].values.copy()
    values[2, :-5] = np.nan  # the département reports for 5 weeks only
    ds["inc_hosp"] = ds["inc_hosp"].copy(data=values)
    model, fc = _fit(ds)
    assert set(model.fallbacks_) == {"69"}
    np.testing.assert_allclose(fc.sel(territory="69", quantile=0.5).values, values[2, -1])


def test_ensemble_1_3_combines_growth_at_every_level():
    registry = Registry()
    ens = registry.create("ensemble@1.3")
    assert ens.members_for("country") == ("ets", "sarimax", "gbm", "baseline", "growth")
    assert ens.members_for("department") == ("gbm", "baseline", "growth")
    assert registry.get("ensemble@1.2").params == {"member_versions": {"gbm": "1.2"}}
    ds = add_leading_signals(synthetic_cube("weekly", periods=40))
    y = ds["inc_hosp"]
    deps = y.sel(territory=y["territory_level"] == "department")
    fitted = ens.clone().fit(deps, ds.drop_vars("inc_hosp").sel(territory=deps["territory"]))
    assert set(fitted.members_) == {"gbm", "baseline", "growth"}
    fc = fitted.predict(3)
    members = [fitted.members_[k].predict(3).values for k in ("gbm", "baseline", "growth")]
    np.testing.assert_allclose(fc.values, np.sort(np.median(members, axis=0), axis=-1))


def test_daily_series_damp_per_week_and_unled_targets_use_their_own_growth():
    """A daily exponential: growth measured on the 7-day mean, damped by phi per week; a
    target cases do not lead (unemployment) ignores the case signal."""
    ds = add_leading_signals(synthetic_cube("daily", periods=120))
    y = ds["inc_hosp"]
    model = DampedGrowth(phi=0.5).fit(y, ds.drop_vars("inc_hosp"))
    assert model.phi_ == pytest.approx(0.5 ** (1 / 7))
    fc = model.predict(14)
    assert np.isfinite(fc.values).all()
    other = DampedGrowth(phi=0.5).fit(y.rename("unemployment"), ds.drop_vars("inc_hosp"))
    assert other.signal_fallbacks_ == {}
    own = DampedGrowth(phi=0.5, case_weight=0.0).fit(y, ds.drop_vars("inc_hosp"))
    np.testing.assert_allclose(other.predict(14).values, own.predict(14).values)


def test_ensemble_1_3_keeps_growth_to_hospital_admissions():
    """Emergency visits (not led by cases by a week): 1.3 combines gbm and baseline only."""
    ds = add_leading_signals(synthetic_cube("weekly", periods=40))
    y = ds["inc_hosp"]
    deps = y.sel(territory=y["territory_level"] == "department").rename("er_visits")
    X = ds.drop_vars("inc_hosp").sel(territory=deps["territory"])
    fitted = Registry().create("ensemble@1.3").fit(deps, X)
    assert fitted.members_for("department", "er_visits") == ("gbm", "baseline")
    members = [fitted.members_[k].predict(3).values for k in ("gbm", "baseline")]
    np.testing.assert_allclose(fitted.predict(3).values,
                               np.sort(np.median(members, axis=0), axis=-1))
