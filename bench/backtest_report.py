"""Full backtest of a target (default: weekly hospital admissions), national and every territory.

Forecast dates 2020-09-07 … 2021-11-29 (Mondays, every ``--every`` days), at the target's
horizons (1–4 weeks ahead for weekly targets, 7 and 14 days for daily ones); every model of the
ensemble,
the ensemble and the Hub baseline; each raw and conformally calibrated (baseline raw only).
Prints relative WIS against the baseline per horizon and 50/90 % coverage, nationally and for the
median territory of the finest level. Raw forecasts are cached in bench/_out/ so that
calibration and scoring can be re-run without refitting (``--reuse``).

Usage::

    VIGIE_HOME=/tmp/vigie-models python bench/backtest_report.py [--levels national department]
        [--start 2020-09-07] [--end 2021-11-29] [--reuse] [--sequential] [--split 2021-03-01]
    python bench/backtest_report.py --target hosp --frequency daily --levels national
    python bench/backtest_report.py --target er_visits          # national and régions
    python bench/backtest_report.py --target unemployment --every 28
    python bench/backtest_report.py --compare-versions 1.1 1.2    # ensemble with / without
        # the leading signals, France, median région and median département side by side

Model choices (ensemble members by level, gbm's leading indicators) were made on the
development period (forecast dates before ``--split``); the later dates are reported apart as
the held-out check.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.backtest import backtest_levels, backtest_raw, calibrate_backtest, monday_dates
from models.calibration import QCOLS, ConformalCalibrator
from models.parallel import dask_client
from models.preparation import default_opener, model_and_members, warmup_dates
from models.registry import get_registry
from models.scoring import median_territory_rel_wis, score_table, summarise
from models.targets import LEVELS, get_target

OUT = Path(__file__).resolve().parent / "_out"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="inc_hosp")
    parser.add_argument("--frequency", default=None, help="default: the target's usual one")
    parser.add_argument("--levels", nargs="+", default=None,
                        help="default: national and department (or the target's levels)")
    parser.add_argument("--start", default="2020-09-07")
    parser.add_argument("--end", default="2021-11-29")
    parser.add_argument("--model", default="ensemble")
    parser.add_argument("--every", type=int, default=7, help="days between forecast dates")
    parser.add_argument("--window", type=int, default=None,
                        help="calibration window (dates); default: the target frequency's")
    parser.add_argument("--reuse", action="store_true", help="reuse cached raw forecasts")
    parser.add_argument("--split", default="2021-03-01",
                        help="also report forecast dates before / from this date separately "
                             "(development vs held-out period; '' to skip)")
    parser.add_argument("--no-members", action="store_true",
                        help="score the ensemble and baseline only (members only where combined)")
    parser.add_argument("--compare-versions", nargs="+", metavar="VERSION",
                        help="score these versions of --model side by side (e.g. 1.1 1.2), "
                             "each member fitted once per date for every level")
    parser.add_argument("--sequential", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    target = get_target(args.target, args.frequency)
    levels = args.levels or list(dict.fromkeys(["national", target.levels[-1]]))
    opener = default_opener()
    calibration = ConformalCalibrator.for_frequency(target.frequency)
    if args.window:
        calibration.window = args.window
    dates = monday_dates(args.start, args.end, args.every)
    first = dates[0]
    warm = warmup_dates(target, first, calibration.window, args.every)
    OUT.mkdir(exist_ok=True)
    if args.compare_versions:
        return compare_versions(args, target, levels, warm, dates, opener, calibration)
    # Every member is scored on its own too (what each contributes), also at levels where
    # the ensemble does not combine it.
    names = [args.model] if args.no_members else model_and_members(args.model, get_registry())
    names = list(dict.fromkeys([*names, "baseline"]))
    for level in levels:
        cache = OUT / (f"raw_{target.name}_{target.frequency}_{level}_{args.start}_{args.end}"
                       f"_{args.every}.parquet")
        raw = raw_forecasts(args, cache, partial(backtest_raw, target, level, [*warm, *dates],
                                                 names, opener),
                            f"[{level}] raw forecasts: {len(dates) + len(warm)} dates")
        result = calibrate_backtest(raw, target, first, opener, calibration)
        scored = score_table(result, QCOLS)
        report(level, scored)
        if args.split:
            split = pd.Timestamp(args.split)
            before = scored[scored["forecast_date"] < split]
            after = scored[scored["forecast_date"] >= split]
            report(level, before, f", forecast dates before {split.date()} (development)")
            report(level, after, f", forecast dates from {split.date()} (held out)")
    return 0


def raw_forecasts(args, cache: Path, backtest, what: str) -> pd.DataFrame:
    """The raw forecasts: read from ``cache`` with ``--reuse``, else computed by
    ``backtest(client=…, progress=…)`` (on a Dask cluster unless ``--sequential``), cached and
    reported as ``what`` with the time taken."""
    if args.reuse and cache.exists():
        return pd.read_parquet(cache)
    started = time.perf_counter()
    ctx = nullcontext(None) if args.sequential else dask_client()
    with ctx as client:
        raw = backtest(client=client, progress=sys.stderr.isatty())
    raw.to_parquet(cache)
    print(f"{what} in {time.perf_counter() - started:.0f}s")
    return raw


LEVEL_LABELS = {"national": "France", "region": "median région",
                "department": "median département"}


def compare_versions(args, target, levels, warm, dates, opener, calibration) -> int:
    """Versions of one model side by side: relative WIS and 50/90 % coverage per horizon,
    all dates, development and held-out periods apart."""
    names = [f"{args.model}@{v}" for v in args.compare_versions]
    tag = "_".join(v.replace(".", "") for v in args.compare_versions)
    cache = OUT / (f"compare_{args.model}_{tag}_{target.name}_{target.frequency}_"
                   f"{'-'.join(levels)}_{args.start}_{args.end}_{args.every}.parquet")
    raw = raw_forecasts(args, cache, partial(backtest_levels, target, levels, [*warm, *dates],
                                             names, opener),
                        f"raw forecasts: {len(dates) + len(warm)} dates, levels "
                        f"{' '.join(levels)}")
    ds = opener(target.frequency, None)
    level_of = dict(zip(ds["territory"].values.astype(str),
                        ds["territory_level"].values.astype(str), strict=True))
    raw = raw[raw["model"].isin([*names, "baseline"])]
    scored = {}
    for level in levels:
        rows = raw[raw["territory"].map(level_of).isin(LEVELS[level])]
        result = calibrate_backtest(rows, target, dates[0], opener, calibration)
        scored[level] = score_table(result[result["model"].isin([*names, "baseline"])], QCOLS)
    periods = [("all dates", lambda d: d)]
    if args.split:
        split = pd.Timestamp(args.split)
        periods += [(f"development (forecast dates before {split.date()})",
                     lambda d: d[d["forecast_date"] < split]),
                    (f"held out (forecast dates from {split.date()})",
                     lambda d: d[d["forecast_date"] >= split])]
    horizons = " / ".join(str(h) for h in sorted(raw["horizon"].unique()))
    for period, select in periods:
        print(f"\n{target.name} {target.frequency}, {period}, horizons {horizons}, "
              "calibrated")
        print("| | model | relative WIS | 50 % coverage | 90 % coverage | territories "
              "beating the baseline |")
        print("|---|---|---|---|---|---|")
        for level in levels:
            part = select(scored[level])
            if part.empty:
                continue
            if level == "national":
                table = summarise(part, ["horizon"])
            else:
                table = median_territory_rel_wis(part, ["horizon"])
            for name in names:
                row = table[table["model"] == name].sort_values("horizon")
                cells = [" / ".join(f"{v:.2f}" for v in row[c]) for c in
                         ("rel_wis", "cov50", "cov90")]
                cells.append("–" if "beats_baseline" not in row else " / ".join(
                    str(b) for b in row["beats_baseline"]) + f" (of {row['territories'].max()})")
                print(f"| {LEVEL_LABELS.get(level, level)} | {name} | " + " | ".join(cells)
                      + " |")
            for name in names[1:] if level != "national" else []:
                better, worse = versus_first(part, [names[0], name])
                print(f"| {LEVEL_LABELS.get(level, level)} | {name} against {names[0]}, "
                      f"territories better / worse (relative WIS) | {better} | {worse} | | |")
    return 0


def versus_first(scored: pd.DataFrame, names: list[str]) -> tuple[str, str]:
    """Per horizon, how many territories have a lower (better) / higher (worse) relative
    WIS with the last version than with the first one."""
    keys = ["territory", "forecast_date", "horizon"]
    base = scored[scored["model"] == "baseline"][[*keys, "wis"]].rename(
        columns={"wis": "wis_base"})
    paired = scored[scored["model"].isin([names[0], names[-1]])].merge(base, on=keys)
    per = paired.groupby(["model", "territory", "horizon"])[["wis", "wis_base"]].sum()
    per = per[per["wis_base"] > 0]
    rel = (per["wis"] / per["wis_base"]).unstack("model").dropna()
    better, worse = [], []
    for _, part in rel.groupby(level="horizon"):
        better.append(str(int((part[names[-1]] < part[names[0]]).sum())))
        worse.append(str(int((part[names[-1]] > part[names[0]]).sum())))
    return " / ".join(better), " / ".join(worse)


def report(level: str, scored: pd.DataFrame, period: str = "") -> None:
    fmt = {"display.width": 200, "display.max_columns": 30,
           "display.float_format": "{:.3f}".format}
    with pd.option_context(*[x for kv in fmt.items() for x in kv]):
        summary = summarise(scored, ["horizon"])
        print(f"\n=== {level}{period}: pooled over territories and dates ===")
        print(summary.pivot(index="model", columns="horizon",
                            values=["rel_wis", "cov50", "cov90"]).to_string())
        if level != "national":
            med = median_territory_rel_wis(scored, ["horizon"])
            print(f"\n=== {level}{period}: median over territories ===")
            print(med.pivot(index="model", columns="horizon",
                            values=["rel_wis", "cov50", "cov90"]).to_string())


if __name__ == "__main__":
    sys.exit(main())
