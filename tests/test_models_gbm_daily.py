"""gbm on daily series with a weekday reporting effect: the Hub's 7- and 14-day targets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.learning import GlobalGBM
from tests.synthetic_cube import synthetic_cube


def test_daily_targets_keep_their_weekday():
    # Flat admissions with a deep Sunday dip (weekend reporting), ending on a Sunday: the
    # forecasts 8 and 15 steps ahead are Mondays and must not inherit the Sunday dip.
    ds = synthetic_cube("daily", periods=302, start="2020-03-01")
    dates = pd.DatetimeIndex(ds["date"].values)
    assert dates[-1].dayofweek == 6
    rng = np.random.default_rng(1)
    weekday = np.where(dates.dayofweek == 6, 0.3, 1.0)
    level = np.array([100.0, 300.0, 50.0, 400.0, 50.0, 450.0])[:, None]
    y = ds["inc_hosp"].copy(data=rng.poisson(level * weekday).astype(float))
    fc = GlobalGBM(exog=()).fit(y).predict(15)
    median = fc.sel(quantile=0.5)
    target_days = pd.DatetimeIndex(fc["target_date"].values)
    for step in (8, 15):
        assert target_days[step - 1].dayofweek == 0
        ratio = median.isel(horizon=step - 1).values / level[:, 0]
        np.testing.assert_allclose(ratio, 1.0, atol=0.2)
    # Step 1 (fitted on its own, a Monday too) agrees; steps between fits are interpolated.
    np.testing.assert_allclose(median.isel(horizon=0).values / level[:, 0], 1.0, atol=0.2)


def test_indicator_not_yet_published_does_not_crash():
    # Early in an epidemic a leading indicator may have no value at all yet: the model must
    # still forecast (HGB rejects an all-NaN feature column).
    ds = synthetic_cube("weekly", periods=40)
    X = ds.drop_vars("inc_hosp")
    X["sos_medecins_covid_rate"] = X["stringency_index"] * np.nan
    model = GlobalGBM(exog=("sos_medecins_covid_rate",)).fit(ds["inc_hosp"], X)
    fc = model.predict(4)
    assert np.isfinite(fc.values).all()
    assert not model.fallbacks_
    assert model.unseen_[1].sum() >= 3  # the indicator's level and its two changes


def test_pooled_horizons_fit_one_pair_for_every_step(monkeypatch):
    # gbm 1.4: one centre and one spread model for the four weekly steps (the step a feature)
    # instead of a pair per step; the same kind of forecast, and the steps stay apart: a
    # growing series is forecast higher at 4 weeks than at 1.
    ds = synthetic_cube("weekly", periods=60)
    growth = np.exp(0.04 * np.arange(60))
    rng = np.random.default_rng(3)
    level = np.array([100.0, 300.0, 50.0, 400.0, 50.0, 450.0])[:, None]
    y = ds["inc_hosp"].copy(data=rng.poisson(level * growth).astype(float))
    fits = []
    real_fit = GlobalGBM._fit_pair

    def counted(self, x, target):
        fits.append(x.shape)
        return real_fit(self, x, target)

    monkeypatch.setattr(GlobalGBM, "_fit_pair", counted)
    per_step = GlobalGBM(exog=()).fit(y).predict(4)
    assert len(fits) == 4
    fits.clear()
    pooled_model = GlobalGBM(exog=(), pool_horizons=True).fit(y)
    pooled = pooled_model.predict(4)
    assert len(fits) == 1 and list(pooled_model.models_) == [(1, 2, 3, 4)]
    # every step's rows, plus the step column
    assert fits[0][1] == pooled_model.features_.shape[-1] + 2
    assert pooled.dims == per_step.dims and pooled.shape == per_step.shape
    assert np.isfinite(pooled.values).all() and not pooled_model.fallbacks_
    median = pooled.sel(quantile=0.5).values
    assert (median[:, 3] > median[:, 0]).all()
    assert not np.allclose(median, per_step.sel(quantile=0.5).values)
    # a second predict reuses the pooled pair
    pooled_model.predict(4)
    assert len(fits) == 1
