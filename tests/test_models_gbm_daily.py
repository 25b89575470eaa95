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
