"""Cost of the epidemic indicators (in every ingest) and of the risk level (per request).

Ingests the data directory into a temporary home, then prints medians of ``--repeat`` runs:

- ``features.epidemic.add_indicators`` inside ``build_cube`` on the real inputs, next to the
  whole ``build_cube`` (the share the step adds to an ingest's build phase);
- ``features.risk.assess`` for every territory on the latest date (what the service computes
  per request) and on every date of the daily cube;
- how many days R of admissions lags R of cases (France and the largest régions, 2020-07 to
  2021-11: the shift of R(cases) that best correlates, in logs, with R(admissions)).

Run: ``python bench/epidemic_risk.py [--data-dir DIR] [--repeat 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import features.ingest as ingest_module
from bench import median_seconds
from features import cube, epidemic, risk
from features.settings import Settings
from features.store import open_cube


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Settings.from_env().data_dir)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    inputs = {}
    build = ingest_module.build_cube

    def capture(results, territories):
        inputs["args"] = (results, territories)
        return build(results, territories)

    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env(home=home, data_dir=str(args.data_dir),
                                     database_url=f"sqlite:///{home}/vigie.sqlite")
        ingest_module.build_cube = capture
        try:
            report = ingest_module.run_ingest(settings)
        finally:
            ingest_module.build_cube = build
        assert report.outcome in ("ok", "partial"), report.message
        daily = open_cube("daily", settings=settings).load()
        yearly = open_cube("yearly", settings=settings).load()

    results, territories = inputs["args"]
    step_times = []
    add_indicators = epidemic.add_indicators

    def timed_step(frame, method=None):
        started = time.perf_counter()
        out = add_indicators(frame, method)
        step_times.append(time.perf_counter() - started)
        return out

    epidemic.add_indicators = timed_step
    try:
        whole = median_seconds(lambda: cube.build_cube(results, territories), args.repeat)
    finally:
        epidemic.add_indicators = add_indicators
    step = statistics.median(step_times)

    thresholds = risk.load_thresholds(settings)
    latest = daily.isel(date=[-1])
    per_request = median_seconds(lambda: risk.assess(latest, yearly, thresholds), args.repeat)
    every_date = median_seconds(lambda: risk.assess(daily, yearly, thresholds), args.repeat)

    sizes = dict(daily.sizes)
    print(f"daily cube: {sizes['territory']} territories x {sizes['date']} days")
    print(f"epidemic step in build_cube   {step:8.3f} s  ({step / whole:.1%} of build_cube "
          f"{whole:.2f} s)")
    print(f"risk.assess, latest date      {per_request * 1000:8.1f} ms")
    print(f"risk.assess, every date       {every_date * 1000:8.1f} ms")
    print(f"median of {args.repeat} runs each")
    for code in ("FR", "R11", "R84", "R93", "R32", "R75"):
        lag, corr = admissions_lag(daily.sel(territory=code))
        print(f"{code}: R(admissions) lags R(cases) by {lag} days (log correlation {corr:.2f})")


def admissions_lag(series, start: str = "2020-07-01", end: str = "2021-11-30"
                   ) -> tuple[int, float]:
    """Shift (days) of R from cases that best correlates with R from admissions."""
    dates = pd.DatetimeIndex(series["date"].values)
    log_r = {name: pd.Series(np.log(epidemic.reproduction_number(series[name].values,
                                                                 interval=False)["rt"]),
                             index=dates)[start:end]
             for name in ("inc_cases", "inc_hosp")}
    scores = {k: log_r["inc_cases"].shift(k).corr(log_r["inc_hosp"]) for k in range(22)}
    best = max(scores, key=scores.get)
    return best, scores[best]


if __name__ == "__main__":
    main()
