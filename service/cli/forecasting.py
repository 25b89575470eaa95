"""``forecast``, ``forecast-all``, ``backtest``, ``score`` and ``trackrecord`` commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from service.csv_safety import write_csv

log = logging.getLogger(__name__)

LEVEL_CHOICES = ("national", "region", "department", "epci", "commune")
TARGET_HELP = ("inc_hosp, inc_icu, hosp, icu, er_visits, unemployment, or any count or rate "
               "indicator of the cube (e.g. a city's food_aid_requests)")


def register(subparsers: argparse._SubParsersAction) -> None:
    common = _common_options()
    _register_forecast(subparsers, common)
    _register_backtest(subparsers, common)
    _register_forecast_all(subparsers)
    _register_trackrecord(subparsers)
    _register_score(subparsers)


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="ensemble", help="registry name (default ensemble)")


def _add_sequential_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequential", action="store_true",
                        help="no Dask cluster: fit in this process")


def _common_options() -> argparse.ArgumentParser:
    """Options of ``forecast`` and ``backtest``."""
    from service.cli import add_territory_option

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", required=True, help=TARGET_HELP)
    common.add_argument("--frequency", choices=("weekly", "daily", "quarterly"),
                        help="cube frequency of the target (default: the target's usual one)")
    common.add_argument("--level", choices=LEVEL_CHOICES, default="national")
    add_territory_option(common, "restrict to these codes of --level (FR, région R84, "
                                 "département 69, EPCI 243500139, commune 35238): "
                                 "--territory 69 13 or --territory 69 --territory 13")
    _add_model_option(common)
    _add_sequential_option(common)
    common.add_argument("--out", required=True, type=Path, help="Hub CSV to write")
    return common


def _register_forecast(subparsers: argparse._SubParsersAction,
                       common: argparse.ArgumentParser) -> None:
    from service.cli import iso_date, positive_int

    fc = subparsers.add_parser(
        "forecast", parents=[common], help="quantile forecast in the Forecast Hub CSV format")
    fc.add_argument("--as-of", type=iso_date,
                    help="forecast date YYYY-MM-DD (uses data dated before it; "
                         "default: the day after the latest observation)")
    fc.add_argument("--horizon", type=positive_int,
                    help="number of periods ahead (default: the target's horizons)")
    fc.add_argument("--no-calibration", action="store_true")
    fc.add_argument("--save", action="store_true",
                    help="also store the run under $VIGIE_HOME/forecasts")
    fc.set_defaults(func=cmd_forecast)


def _register_backtest(subparsers: argparse._SubParsersAction,
                       common: argparse.ArgumentParser) -> None:
    from service.cli import iso_date, positive_int

    bt = subparsers.add_parser(
        "backtest", parents=[common], help="rolling-origin backtest, Hub CSV of every date")
    bt.add_argument("--start", required=True, type=iso_date,
                    help="first forecast date (a Monday or later)")
    bt.add_argument("--end", required=True, type=iso_date, help="last forecast date")
    bt.add_argument("--every", type=positive_int, default=7, help="days between forecast dates")
    bt.add_argument("--horizon", type=positive_int)
    bt.add_argument("--data-dir", type=Path,
                    help="source folder: ingested into the store first if it is not the "
                         "folder of the current vintage")
    bt.add_argument("--all-models", action="store_true",
                    help="write every model (members, raw and calibrated) with a model column")
    bt.set_defaults(func=cmd_backtest)


def _register_forecast_all(subparsers: argparse._SubParsersAction) -> None:
    from service.cli import iso_date

    fa = subparsers.add_parser(
        "forecast-all", help="publish the default targets at every level (make run)",
        description="Forecast and publish (forecast store + one audit row each) every target "
                    "the pages and the API show by default, at every level: weekly admissions "
                    "and ICU admissions, beds and ICU beds at 7/14 days, emergency visits. "
                    "A target × level whose latest run was made on the same date from the same "
                    "vintage by the same model version is left as it is (--force to redo). "
                    "Then queues the retrospective track record if it is missing or stale. "
                    "Exit status: 0 when every one is published or unchanged; 1 when some "
                    "failed (one line each; the others are published, and make run serves "
                    "them); 2 when nothing can be forecast (no vintage, unknown target or "
                    "model).")
    fa.add_argument("--target", nargs="+", action="extend", metavar="NAME",
                    help=f"only these targets (default: all published ones; {TARGET_HELP})")
    fa.add_argument("--level", nargs="+", action="extend", choices=LEVEL_CHOICES,
                    help="only these levels (default: every level of each target)")
    _add_model_option(fa)
    fa.add_argument("--as-of", type=iso_date,
                    help="forecast date YYYY-MM-DD (default: the day after each "
                         "level's latest observation, a Monday for weekly targets)")
    fa.add_argument("--force", action="store_true",
                    help="publish even where nothing changed since the latest run")
    fa.add_argument("--no-calibration", action="store_true")
    fa.add_argument("--no-trackrecord", action="store_true",
                    help="do not queue the retrospective track record job")
    _add_sequential_option(fa)
    fa.add_argument("--json", action="store_true", help="print the report as JSON")
    fa.set_defaults(func=cmd_forecast_all)


def _register_trackrecord(subparsers: argparse._SubParsersAction) -> None:
    tr = subparsers.add_parser(
        "trackrecord", help="compute the retrospective track record (accuracy page)",
        description="Rolling-origin backtest of every published target and level over "
                    "2020-09-07 … the last date with outcomes (forecasts stored by earlier "
                    "runs reused), calibrated as served, scored against the Hub baseline by "
                    "horizon, development (before 2021-03-01) and held-out periods; written to "
                    "$VIGIE_HOME/models/retrospective.json.")
    tr.add_argument("--target", nargs="+", action="extend", metavar="NAME",
                    help="only these targets (default: all published ones)")
    _add_model_option(tr)
    _add_sequential_option(tr)
    tr.add_argument("--json", action="store_true", help="print the rows as JSON")
    tr.set_defaults(func=cmd_trackrecord)


def _register_score(subparsers: argparse._SubParsersAction) -> None:
    sc = subparsers.add_parser("score", help="WIS, relative WIS, coverage of a Hub CSV")
    sc.add_argument("file", type=Path, help="Hub CSV (optionally with a 'model' column)")
    sc.add_argument("--baseline", type=Path, help="Hub CSV of the baseline to compare with")
    sc.add_argument("--out", type=Path, help="write the per-forecast scores as CSV")
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=cmd_score)


# -- helpers ----------------------------------------------------------------------------------
def _horizons(target, horizon: int | None) -> tuple[int, ...]:
    return tuple(range(1, horizon + 1)) if horizon else target.horizons


def _horizon_too_far(args: argparse.Namespace, target) -> bool:
    """Print why ``--horizon`` is beyond the target's own horizons (calibrated and scored
    there; ``--horizon 100000`` ran for minutes); True when it is."""
    if args.horizon is None or args.horizon <= max(target.horizons):
        return False
    print(f"--horizon: {target.name} is forecast at most {max(target.horizons)} "
          f"{target.unit} ahead; got {args.horizon}", file=sys.stderr)
    return True


#: Cube level → the ``--level`` that forecasts it (advice when a code is at another level).
LEVEL_HINTS = {"country": "use --level national", "region": "use --level region",
               "department": "use --level department",
               "collectivity": "Vigie does not forecast overseas collectivités",
               "epci": "use --level epci", "commune": "use --level commune"}


def _malformed_territories(args: argparse.Namespace) -> bool:
    """Print the ``--territory`` codes that are not territory codes, before any data is read
    (the check ``scenario run/compare`` make); True when there is one."""
    from features.territories import territory_code_errors

    errors = territory_code_errors(args.territory or [], where="--territory", groups=(),
                                   local=True)
    for e in errors:
        print(e, file=sys.stderr)
    return bool(errors)


def _misplaced_territories(args: argparse.Namespace, ds) -> bool:
    """Print the ``--territory`` codes absent from the cube or not at ``--level``, once the cube
    is open and before any fit; True when there is one."""
    from features.territories import territory_level_errors
    from models.targets import LEVELS

    levels = dict(zip(map(str, ds["territory"].values), map(str, ds["territory_level"].values),
                      strict=True))
    errors = territory_level_errors(args.territory or [], levels, LEVELS[args.level],
                                    where="--territory", hints=LEVEL_HINTS,
                                    context=f" (--level {args.level})")
    for e in errors:
        print(e, file=sys.stderr)
    return bool(errors)


# -- commands ---------------------------------------------------------------------------------
def cmd_forecast(args: argparse.Namespace) -> int:
    from models.preparation import NoHistoryError, default_opener
    from service.usecases.forecasts import forecast_target, publish_run

    if _malformed_territories(args):
        return 2
    opener = default_opener()
    target = _target_or_none(args, opener)
    if target is None or _horizon_too_far(args, target):
        return 2
    if args.territory and _misplaced_territories(args, opener(target.frequency, None)):
        return 2
    try:
        rows, meta, fd = forecast_target(
            None, target, args.level, as_of=args.as_of, model=args.model,
            territories=args.territory, horizons=_horizons(target, args.horizon),
            calibrate=not args.no_calibration, parallel=not args.sequential, opener=opener)
    except NoHistoryError as exc:  # e.g. --as-of before the series starts
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # --model naive: the registry's message, not a traceback
        message = str(exc.args[0]) if exc.args else ""
        if not message.startswith("unknown model"):
            raise
        print(f"--model: {message}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out, index=False)
    if args.save:
        from features.catalog import get_engine
        from features.settings import Settings

        settings = Settings.from_env()
        run = publish_run(get_engine(settings.database_url), rows, meta, actor="cli:forecast",
                          settings=settings)
        meta["run_id"] = run.run_id
    log.info("forecast %s %s %s as of %s: %d rows in %.1fs → %s", target.name, args.level,
             args.model, fd.date(), len(rows), meta["elapsed_s"], args.out)
    return 0


def _target_or_none(args: argparse.Namespace, opener):
    """The ``--target`` (built-in or derived from the cube's metadata) at ``--frequency``,
    forecast at ``--level``; None, after saying why, when there is none or it is not forecast
    at that level (e.g. cases, published by SI-DEP for France and the régions only)."""
    from service.usecases.forecasts import find_target

    try:
        target = find_target(None, args.target, args.frequency, opener=opener)
    except KeyError as exc:
        print(f"--target: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return None
    if args.level not in target.levels:
        print(f"--level: {target.name} ({target.frequency}) is forecast at "
              f"{', '.join(target.levels)} only (where the cube observes it), not at "
              f"{args.level}", file=sys.stderr)
        return None
    return target


def _published_targets(names: list[str] | None, settings=None) -> list[tuple[str, str]] | None:
    """The published (target, frequency) pairs named by ``--target`` (all without it); None,
    after saying so, when one is not published."""
    from models.targets import DEFAULT_FREQUENCY
    from service.usecases.forecasts import published_targets

    targets = published_targets(settings)
    if not names:
        return targets
    unknown = sorted(set(names) - {name for name, _ in targets})
    if unknown:
        print(f"--target: {', '.join(unknown)} not published by forecast-all (published: "
              f"{', '.join(dict.fromkeys(n for n, _ in targets))}); use forecast for "
              f"others, e.g. --target {unknown[0]} --frequency "
              f"{DEFAULT_FREQUENCY.get(unknown[0], 'weekly')}", file=sys.stderr)
        return None
    return [t for t in targets if t[0] in names]


def cmd_forecast_all(args: argparse.Namespace) -> int:
    from features.errors import NoVintageError
    from features.settings import Settings
    from service.cli.progress import TerminalProgress
    from service.usecases.forecasts import (
        publish_forecasts,
        queue_track_record,
        track_record_due,
    )

    settings = Settings.from_env()
    targets = _published_targets(args.target, settings)
    if targets is None:
        return 2
    progress = TerminalProgress()
    try:
        report = publish_forecasts(
            settings, model=args.model, targets=targets, levels=args.level, as_of=args.as_of,
            calibrate=not args.no_calibration, force=args.force, parallel=not args.sequential,
            actor="cli:forecast-all", progress=progress)
    except (NoVintageError, KeyError) as exc:  # nothing ingested; unknown model
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    published, failed = report.with_status("published"), report.with_status("failed")
    unchanged = report.with_status("unchanged")
    # Each failure was logged as it happened (one line each); the summary names them.
    names = ", ".join(f"{o.target} ({o.frequency}) {o.level}" for o in failed)
    names = f" ({names}: their previous forecasts stay published)" if failed else ""
    progress.step(f"forecast-all: {len(published)} published, {len(unchanged)} unchanged, "
                  f"{len(failed)} failed{names} in {report.elapsed_s:.0f} s "
                  f"({report.fitted_dates} past dates fitted, {report.reused_dates} reused)")
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    if (not args.no_trackrecord and args.model == "ensemble" and not args.target
            and not args.level and not args.as_of and track_record_due(settings, args.model)):
        run_id = queue_track_record(settings, args.model, requested_by="cli:forecast-all")
        if run_id is not None:
            progress.step(f"retrospective track record queued (job run {run_id}): 'serve' "
                          "computes it in the background, or run 'python -m service "
                          "trackrecord' now")
    return 1 if failed else 0


def cmd_trackrecord(args: argparse.Namespace) -> int:
    from features.settings import Settings
    from models.trackrecord import load_retrospective
    from service.cli.progress import TerminalProgress
    from service.usecases.forecasts import published_targets, refresh_track_record

    settings = Settings.from_env()
    targets = [t for t in published_targets(settings)
               if not args.target or t[0] in args.target]
    if not targets:
        print(f"--target: none of {', '.join(args.target)} is published", file=sys.stderr)
        return 2
    summary = refresh_track_record(settings, model=args.model, targets=targets,
                                   parallel=not args.sequential, progress=TerminalProgress())
    rows = load_retrospective(settings) or []
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
    else:
        frame = pd.DataFrame(rows)
        if not frame.empty:
            table = frame.pivot_table(index=["target", "level", "period"], columns="horizon",
                                      values="relative_wis")
            with pd.option_context("display.width", 160, "display.float_format",
                                   "{:.2f}".format):
                print("relative WIS against the Hub baseline by horizon (calibrated; France, "
                      "median région / département)")
                print(table.to_string())
    for f in summary["failed"]:
        print(f"error: {f['target']} ({f['frequency']}) {f['level']}: some forecasts failed",
              file=sys.stderr)
    return 1 if summary["failed"] else 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from features.settings import Settings
    from models.backtest import monday_dates
    from models.preparation import NoHistoryError, default_opener
    from service.usecases.backtests import backtest_hub
    from service.usecases.ingest import ensure_ingested

    if _malformed_territories(args):
        return 2
    settings = Settings.from_env(data_dir=str(args.data_dir)) if args.data_dir else None
    if args.data_dir:
        ensure_ingested(settings)
    opener = default_opener(settings)
    target = _target_or_none(args, opener)
    if target is None or _horizon_too_far(args, target):
        return 2
    dates = monday_dates(args.start, args.end, args.every)
    if not dates:
        print("no forecast date between --start and --end", file=sys.stderr)
        return 2
    if args.territory and _misplaced_territories(args, opener(target.frequency, None)):
        return 2
    started = time.perf_counter()
    try:
        out = backtest_hub(settings, target, args.level, dates, model=args.model,
                           all_models=args.all_models, territories=args.territory,
                           horizons=_horizons(target, args.horizon), every=args.every,
                           opener=opener, parallel=not args.sequential,
                           progress=sys.stderr.isatty())
    except NoHistoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out, args.out, index=False)
    log.info("backtest %s %s %s: %d dates, %d rows in %.0fs → %s", target.name, args.level,
             args.model, len(dates), len(out), time.perf_counter() - started, args.out)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from service.usecases.backtests import HubFileError, score_files

    try:
        scores = score_files(args.file, args.baseline)
    except HubFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if scores is None:
        print("no forecast has an observed outcome yet", file=sys.stderr)
        return 1
    by_h, board = scores["by_horizon"], scores["leaderboard"]
    if args.out:
        write_csv(scores["scored"], args.out, index=False)
    if args.json:
        print(json.dumps({"by_horizon": by_h.to_dict("records"),
                          "leaderboard": board.to_dict("records")}, default=str, indent=1))
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.3f}".format):
        print("Scores by horizon (WIS and AE in target units; coverage = share inside the "
              "central interval; bias > 0 = over-prediction)")
        print(by_h.to_string(index=False))
        print("\nLeaderboard (mean WIS; rel_wis = WIS / baseline WIS on the same forecasts)")
        print(board.to_string(index=False))
    return 0
