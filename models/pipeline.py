"""From the cube to calibrated forecasts and backtests: the public names of the four steps.

The code lives in one module per step; this module re-exports their public names so that
``from models.pipeline import forecast, backtest`` keeps working:

- :mod:`models.parallel`: where fits run (this process on one thread, or a Dask cluster);
- :mod:`models.preparation`: one forecast's inputs (the cube cut as of the forecast date, the
  target history and regressors of a level, the models to fit) and raw forecasts;
- :mod:`models.backtest`: rolling-origin backtests, raw and calibrated;
- :mod:`models.forecasting`: live forecasts, one level or every level of a target at once.

Data flows one way: the cube (``features.store.open_cube``, or any callable with the same
signature in tests) is read ``as_of`` each forecast date, so a forecast never sees data dated
on or after its forecast date; calibration uses only past forecasts whose targets were observed
before that date.
"""

from __future__ import annotations

from models.backtest import (
    backtest,
    backtest_levels,
    backtest_raw,
    calibrate_backtest,
    monday_dates,
)
from models.forecasting import (
    DateTask,
    LevelPlan,
    calibrate_level,
    forecast,
    history_dates,
    level_plan,
    levels_date_rows,
    run_date_tasks,
)
from models.parallel import dask_client, one_thread, run_models
from models.preparation import (
    CubeOpener,
    NoHistoryError,
    combine_members,
    default_opener,
    expand_members,
    model_and_members,
    observed_rows,
    prepare,
    raw_forecasts,
    relabel,
    rows_to_forecast,
    steps_for,
    warmup_dates,
)

#: The name service code imported before :func:`models.preparation.rows_to_forecast` was
#: public.
_rows_to_forecast = rows_to_forecast

__all__ = [
    "CubeOpener",
    "DateTask",
    "LevelPlan",
    "NoHistoryError",
    "backtest",
    "backtest_levels",
    "backtest_raw",
    "calibrate_backtest",
    "calibrate_level",
    "combine_members",
    "dask_client",
    "default_opener",
    "expand_members",
    "forecast",
    "history_dates",
    "level_plan",
    "levels_date_rows",
    "model_and_members",
    "monday_dates",
    "observed_rows",
    "one_thread",
    "prepare",
    "raw_forecasts",
    "relabel",
    "rows_to_forecast",
    "run_date_tasks",
    "run_models",
    "steps_for",
    "warmup_dates",
]
