"""``prune``: apply the retention policy to cube vintages and forecast runs
(:mod:`service.retention`)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    prune = subparsers.add_parser(
        "prune", help="delete old cube vintages, forecast runs and backtests nothing refers to",
        description="Keep the newest VIGIE_RETAIN_VINTAGES vintages (default 30) and "
                    "VIGIE_RETAIN_FORECAST_RUNS runs per target/frequency/level/model (default "
                    "8), plus the served vintage, every run a 'latest' pointer names and every "
                    "vintage or run a kept run, a scenario result, the leaderboard or any audit "
                    "row refers to; per target, the newest VIGIE_RETAIN_FORECAST_RUNS backtest "
                    "plans (models/backtests), without the files of vintages no longer kept; "
                    "delete the rest and stale temporary entries. 0 keeps all.")
    prune.add_argument("--dry-run", action="store_true",
                       help="say what would be deleted; delete nothing")
    prune.add_argument("--keep-vintages", type=int, metavar="N",
                       help="override VIGIE_RETAIN_VINTAGES")
    prune.add_argument("--keep-runs", type=int, metavar="N",
                       help="override VIGIE_RETAIN_FORECAST_RUNS")
    prune.add_argument("--json", action="store_true", help="print the summary as JSON")
    prune.set_defaults(func=cmd_prune)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def cmd_prune(args: argparse.Namespace) -> int:
    from features.settings import Settings
    from service.usecases.maintenance import prune

    for name in ("keep_vintages", "keep_runs"):
        value = getattr(args, name)
        if value is not None and value < 0:
            print(f"--{name.replace('_', '-')}: expected 0 (keep all) or more, got {value}")
            return 2
    result = prune(Settings.from_env(), dry_run=args.dry_run,
                   retain_vintages=args.keep_vintages, retain_forecast_runs=args.keep_runs)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(f"policy: newest {result.retain_vintages or 'all'} vintages, newest "
          f"{result.retain_forecast_runs or 'all'} runs per kind, plus everything referenced")
    for title, key, items in (("vintages", "vintages", result.vintages),
                              ("forecast runs", "forecast_runs", result.runs),
                              ("backtest plans", "backtest_plans", result.backtests)):
        side = summary[key]
        print(f"{title}: {side['total']} found, {side['kept']} kept, {side['deleted']} {verb} "
              f"({_mb(side['bytes_freed'])})")
        for item in items:
            what = ", ".join(item.reasons) if item.kept else verb
            print(f"  {item.id:<40} {what}")
    stale = summary["backtest_files_of_gone_vintages"]
    if stale["deleted"]:
        print(f"backtest files of vintages no longer kept: {stale['deleted']} {verb} "
              f"({_mb(stale['bytes_freed'])})")
    uploads = result.uploads
    if uploads.get("quarantine_dropped") or uploads.get("replaced_dropped") \
            or uploads.get("undone_dropped"):
        print(f"city uploads: {len(uploads['quarantine_dropped'])} quarantined, "
              f"{len(uploads['replaced_dropped'])} replaced ({uploads['raw_copies_dropped']} "
              f"copies), {len(uploads['undone_dropped'])} undone record(s) {verb}")
    for entry in result.temporary:
        print(f"temporary {entry.path}: {verb} ({entry.reason})")
    for path in result.orphans:
        print(f"vintage folder without a catalog row, left alone: {path}")
    return 0
