"""Benchmark: forecast every département × weekly target with every model, against AutoETS.

For a few forecast dates, each Vigie model (raw, uncalibrated: the fitting cost) forecasts all
départements 1–4 weeks ahead for each weekly target (``inc_hosp``, ``inc_icu``), fits spread over
Dask workers; statsforecast's ``AutoETS`` forecasts the same series in the same run. Prints wall
time, peak memory (this process + Dask workers, sampled RSS) and accuracy (mean WIS, relative
WIS against the Hub baseline, 50/90 % coverage) of each, and the time ratio to AutoETS. The
``ensemble`` row (the served default) is timed as the fits of the members it combines for
départements plus the combination.

Usage::

    VIGIE_HOME=/tmp/vigie-models python bench/forecast.py [--dates 2020-11-02 2021-04-05 …]
        [--sequential]
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from contextlib import nullcontext, suppress
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.base import QUANTILES, infer_step
from models.calibration import QCOLS, forecast_rows
from models.parallel import dask_client
from models.preparation import (
    combine_members,
    default_opener,
    observed_rows,
    prepare,
    raw_forecasts,
    steps_for,
)
from models.registry import get_registry
from models.scoring import score_table, summarise
from models.targets import get_target

DEFAULT_DATES = ["2020-10-05", "2021-01-04", "2021-04-05", "2021-07-05", "2021-10-04"]
TARGETS = [("inc_hosp", "weekly"), ("inc_icu", "weekly")]


class PeakRSS:
    """Peak resident memory of this process and its children (Dask workers), sampled."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _total(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            with suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def __enter__(self) -> PeakRSS:
        self.peak = self._total()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._total())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total())


def autoets_rows(y, fd: pd.Timestamp, steps: dict[int, int], n_jobs: int) -> pd.DataFrame:
    """statsforecast AutoETS on the same series; 23 quantiles from its 11 central intervals."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    frame = y.to_series().rename("y").reset_index()
    frame = frame.rename(columns={"territory": "unique_id", "date": "ds"})
    frame = frame.dropna()
    frame["y"] = frame["y"].clip(lower=0)
    levels = sorted({round(100 * (1 - 2 * q)) for q in QUANTILES if q < 0.5})
    sf = StatsForecast(models=[AutoETS(season_length=1)], freq="W-SAT", n_jobs=n_jobs)
    out = sf.forecast(df=frame, h=max(steps.values()), level=levels).reset_index(drop=True)
    rows = []
    for uid, g in out.groupby("unique_id", sort=False):
        g = g.sort_values("ds").reset_index(drop=True)
        for n, k in steps.items():
            r = g.iloc[k - 1]
            values = []
            for q in QUANTILES:
                if q < 0.5:
                    values.append(r[f"AutoETS-lo-{round(100 * (1 - 2 * q))}"])
                elif q > 0.5:
                    values.append(r[f"AutoETS-hi-{round(100 * (2 * q - 1))}"])
                else:
                    values.append(r["AutoETS"])
            rows.append([str(uid), n, r["ds"], *np.sort(np.clip(values, 0, None))])
    table = pd.DataFrame(rows, columns=["territory", "horizon", "target_end_date", *QCOLS])
    table.insert(0, "forecast_date", fd)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dates", nargs="+", default=DEFAULT_DATES)
    parser.add_argument("--models", nargs="+",
                        help="models to time (default: every registered model but the ensemble, "
                             "so that the ensemble row can be built from its members)")
    parser.add_argument("--sequential", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in ("distributed", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.WARNING)
    registry = get_registry()
    ensemble = registry.create("ensemble")
    args.models = args.models or [name for name in registry.names() if name != "ensemble"]
    missing = set(ensemble.members_for("department")) - set(args.models)
    if missing:
        print(f"note: no ensemble row: its members {sorted(missing)} are not timed")
    opener = default_opener()
    timings: dict[str, float] = {}
    peaks: dict[str, int] = {}
    parts = []
    ctx = nullcontext(None) if args.sequential else dask_client()
    with ctx as client:
        n_jobs = 1 if client is None else len(client.scheduler_info()["workers"])
        for fd_s in args.dates:
            fd = pd.Timestamp(fd_s)
            for name, frequency in TARGETS:
                target = get_target(name, frequency)
                ds = opener(frequency, fd)
                member_fcs = {}
                for model in args.models:
                    with PeakRSS() as mem:
                        t0 = time.perf_counter()
                        fcs = raw_forecasts(ds, target, "department", fd,
                                            {model: registry.create(model)}, target.horizons,
                                            client=client)
                        elapsed = time.perf_counter() - t0
                        timings[model] = timings.get(model, 0) + elapsed
                    peaks[model] = max(peaks.get(model, 0), mem.peak)
                    member_fcs[model] = (fcs[model], elapsed)
                    parts.append(forecast_rows(fcs[model], fd).assign(model=model, target=name))
                used = ensemble.members_for("department")
                if set(used) <= set(member_fcs):
                    # The served default: its cost is the fits of the members it combines for
                    # départements, plus the combination.
                    members = {m: member_fcs[m][0] for m in used}
                    t0 = time.perf_counter()
                    fc = combine_members(ensemble, members, ds)
                    timings["ensemble"] = (timings.get("ensemble", 0) + time.perf_counter() - t0
                                           + sum(member_fcs[m][1] for m in members))
                    peaks["ensemble"] = max(peaks.get("ensemble", 0),
                                            *(peaks[m] for m in members))
                    parts.append(forecast_rows(fc, fd).assign(model="ensemble", target=name))
                y, _ = prepare(ds, target, "department")
                dates = pd.DatetimeIndex(y["date"].values)
                steps = steps_for(target, dates[-1], fd, target.horizons, infer_step(dates))
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    table = autoets_rows(y, fd, steps, n_jobs)
                    timings["autoets"] = timings.get("autoets", 0) + time.perf_counter() - t0
                peaks["autoets"] = max(peaks.get("autoets", 0), mem.peak)
                parts.append(table.assign(model="autoets", target=name))
    rows = pd.concat(parts, ignore_index=True)
    scored = []
    for name, frequency in TARGETS:
        target = get_target(name, frequency)
        sub = observed_rows(rows[rows["target"] == name], opener(frequency, None), target)
        scored.append(score_table(sub, QCOLS))
    scored = pd.concat(scored, ignore_index=True)
    # Relative WIS per target (the scales differ), then averaged over targets.
    rel = [summarise(s, [], baseline="baseline").assign(target=t)
           for t, s in scored.groupby("target")]
    acc = pd.concat(rel).groupby("model")[["wis", "rel_wis", "cov50", "cov90"]].mean()
    n_series = rows.groupby(["model"])["territory"].nunique().max()
    table = pd.DataFrame({
        "wall_s": pd.Series(timings),
        "peak_rss_mb": pd.Series(peaks) / 2**20,
    }).join(acc)
    table["time_vs_autoets"] = table["wall_s"] / table.loc["autoets", "wall_s"]
    print(f"{len(args.dates)} forecast dates × {len(TARGETS)} weekly targets × {n_series} "
          f"départements, horizons 1–4 weeks; {n_jobs} worker(s); raw (uncalibrated) "
          "forecasts; accuracy against the latest cube")
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 160):
        print(table.sort_values("rel_wis").to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
