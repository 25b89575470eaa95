"""One contract over every registered forecaster (Vigie's ``check_estimator``)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from models.base import QUANTILES, Forecaster, clean_history
from models.parallel import one_thread
from models.registry import Registry
from tests.synthetic_cube import synthetic_cube

REGISTRY = Registry()  # built-in models only: no user registry file in tests


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Fit on one OpenMP/BLAS thread, as the service does (a Dask worker, or
    :func:`models.parallel.one_thread` in process): scikit-learn's gradient boosting spinning
    on two threads of a busy 2-core machine made the gbm and ensemble contracts 10x slower."""
    with one_thread():
        yield


def assert_forecaster(model: Forecaster, y: xr.DataArray, horizon: int = 3,
                      X: xr.Dataset | None = None) -> xr.DataArray:
    """Check the forecaster contract on history ``y`` (territory, date) and regressors ``X``;
    return the forecast."""
    params = model.get_params()
    assert not [k for k in vars(model) if k.endswith("_")], "__init__ must not set fitted state"
    assert model.fit(y, X) is model, "fit returns self"
    assert model.get_params() == params, "fit must not change settings"
    fitted = [k for k in vars(model) if k.endswith("_")]
    assert fitted, "fit sets attributes ending in _"
    fc = model.predict(horizon)
    assert fc.dims == ("territory", "horizon", "quantile")
    assert list(fc["territory"].values) == [str(t) for t in y["territory"].values]
    np.testing.assert_allclose(fc["quantile"].values, QUANTILES)
    assert len(QUANTILES) == 23
    assert list(fc["horizon"].values) == list(range(1, horizon + 1))
    step = pd.Timestamp(y["date"].values[-1]) - pd.Timestamp(y["date"].values[-2])
    expected = [pd.Timestamp(y["date"].values[-1]) + k * step for k in range(1, horizon + 1)]
    assert list(pd.DatetimeIndex(fc["target_date"].values)) == expected
    values = fc.values
    assert np.all(np.isfinite(values)), "no NaN/inf"
    assert np.all(values >= 0), "non-negative"
    assert np.all(np.diff(values, axis=-1) >= -1e-9), "monotone in quantile"
    # A second fit on other data works (Prophet itself refuses it) and clones are independent.
    shorter = y.isel(date=slice(0, -2))
    again = model.clone().fit(shorter, None if X is None else X.sel(date=shorter["date"]))
    again = again.predict(horizon)
    assert again.shape == fc.shape
    return fc


@pytest.fixture(scope="module")
def weekly() -> xr.DataArray:
    return synthetic_cube("weekly", periods=40)["inc_hosp"]


@pytest.mark.parametrize("name", REGISTRY.names())
def test_contract_weekly(name, weekly):
    fc = assert_forecaster(REGISTRY.create(name), weekly)
    # Sanity: the median of FR one week ahead is within a factor 3 of the last value.
    last = float(weekly.sel(territory="FR").values[-1])
    median = float(fc.sel(territory="FR", horizon=1, quantile=0.5))
    assert last / 3 <= median <= last * 3


OTHER_VERSIONS = [f"{n}@{v}" for n in REGISTRY.names() for v in REGISTRY.versions(n)
                  if v != REGISTRY.get(n).version]


@pytest.mark.parametrize("ref", OTHER_VERSIONS)
def test_contract_every_version(ref):
    """Versions other than the current one (older ones, and a newer one not yet the default)
    follow the contract too, on a cube with the leading signals they may read."""
    from tests.synthetic_cube import add_leading_signals

    ds = add_leading_signals(synthetic_cube("weekly", periods=40))
    assert_forecaster(REGISTRY.create(ref), ds["inc_hosp"], X=ds.drop_vars("inc_hosp"))


EVERY_VERSION = [f"{n}@{v}" for n in REGISTRY.names() for v in REGISTRY.versions(n)]


@pytest.mark.parametrize("ref", EVERY_VERSION)
def test_settings_contract(ref):
    """scikit-learn's rules: explicit keyword settings, each stored under its own name by
    ``__init__`` (nothing else), read by get_params, changed by set_params; an unknown one is
    refused with the valid ones listed, by the class, set_params and the registry."""
    spec = REGISTRY.get(ref)
    model = REGISTRY.create(ref)
    cls = type(model)
    params = model.get_params()
    assert list(params) == cls.param_names()
    assert set(vars(model)) == set(params), "__init__ stores its settings and nothing else"
    assert {k: params[k] for k in spec.params} == spec.params, "registry settings applied"
    assert cls().get_params().keys() == params.keys(), "every setting has a default"
    # Round trips: the settings rebuild the model, set_params applies them, clones copy them.
    assert cls(**params).get_params() == params
    assert cls().set_params(**params).get_params() == params
    clone = model.clone()
    assert clone is not model and clone.get_params() == params
    name = next(n for n in params if n != "registry")
    assert clone.set_params(**{name: "changed"}) is clone
    assert clone.get_params()[name] == "changed" and model.get_params() == params
    # Unknown settings: refused everywhere, with the valid ones listed.
    valid = ", ".join(sorted(n for n in params if n != "registry"))
    with pytest.raises(TypeError):
        cls(alpah=1)
    with pytest.raises(TypeError, match=f"unknown parameter 'alpah' for {cls.__name__}"):
        model.set_params(alpah=1)
    assert model.get_params() == params, "a refused set_params changes nothing"
    with pytest.raises(ValueError, match=rf"unknown parameter 'alpah' .*; valid: {valid}$"):
        Registry().register(spec.name, kind=spec.kind, params={**spec.params, "alpah": 1},
                            version="typo", persist=False)
    with pytest.raises(ValueError, match="unknown parameter 'registry'"):
        Registry().register(spec.name, kind=spec.kind, params={"registry": None},
                            version="typo", persist=False)


@pytest.mark.parametrize("name", ["baseline", "ets", "sarimax", "gbm", "growth"])
def test_contract_daily(name):
    y = synthetic_cube("daily", periods=84)["inc_hosp"].sel(territory=["01", "FR"])
    assert_forecaster(REGISTRY.create(name), y, horizon=7)


def _awkward(weekly: xr.DataArray) -> xr.DataArray:
    """Zeros, a short series, gaps, a missing last week and an empty series."""
    values = weekly.values.copy()
    values[0, :] = 0.0  # all zeros
    values[1, :-4] = np.nan  # only 4 weeks of history
    values[2, 10:14] = np.nan  # interior gap
    values[3, -1] = np.nan  # last week not yet reported
    values[4, :] = np.nan  # never observed
    return weekly.copy(data=values)


@pytest.mark.parametrize("name", REGISTRY.names())
def test_fallback_never_crashes(name, weekly):
    y = _awkward(weekly)
    model = REGISTRY.create(name)
    fc = assert_forecaster(model, y)
    assert np.allclose(fc.sel(territory=str(y["territory"].values[0])).values, 0.0)
    if model.get_params().get("min_history", 0) > 4:
        assert str(y["territory"].values[1]) in model.fallbacks_  # short: logged fallback


def test_fit_failure_falls_back_to_baseline(weekly, caplog):
    caplog.set_level(logging.INFO, logger="models.base")
    model = REGISTRY.create("ets")

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("singular")

    model._fit_one = broken
    fc = model.fit(weekly).predict(2)
    assert set(model.fallbacks_) == {str(t) for t in weekly["territory"].values}
    baseline = REGISTRY.create("baseline").fit(weekly).predict(2)
    xr.testing.assert_allclose(fc.drop_attrs(), baseline.drop_attrs())
    assert "falls back to baseline" in caplog.text


def test_baseline_is_the_hub_baseline(weekly):
    fc = REGISTRY.create("baseline").fit(weekly).predict(4)
    last = weekly.isel(date=-1)
    np.testing.assert_allclose(fc.sel(quantile=0.5).values, np.tile(last.values[:, None], 4))
    width = (fc.sel(quantile=0.95) - fc.sel(quantile=0.05)).sel(territory="FR").values
    assert np.all(np.diff(width) >= 0), "spread grows with the horizon"


def test_clean_history_aligns_trailing_gaps():
    clean, trailing = clean_history(np.array([np.nan, 1.0, np.nan, 3.0, -2.0, np.nan]))
    np.testing.assert_allclose(clean, [1.0, 2.0, 3.0, 0.0])
    assert trailing == 1
