"""``jobs list|run|history`` and ``db upgrade|current``: the job queue and the schema."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from service.cli import positive_int

    jobs = subparsers.add_parser("jobs", help="list jobs, run one now, show the history")
    sub = jobs.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND")
    sub.add_parser("list", help="jobs and their schedules").set_defaults(func=cmd_list)
    run = sub.add_parser("run", help="queue a job and run everything due, in this process")
    run.add_argument("name")
    run.add_argument("--param", action="append", default=[], metavar="KEY=JSON",
                     help="job parameter (value parsed as JSON when it can be)")
    run.set_defaults(func=cmd_run)
    hist = sub.add_parser("history", help="recent runs")
    hist.add_argument("--limit", type=positive_int, default=20)
    hist.set_defaults(func=cmd_history)
    jobs.set_defaults(func=lambda args: jobs.print_help() or 2)

    db = subparsers.add_parser("db", help="database schema (Alembic migrations)")
    dsub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    dsub.add_parser("upgrade", help="migrate to the newest schema").set_defaults(func=cmd_upgrade)
    dsub.add_parser("current", help="print the schema revision").set_defaults(func=cmd_current)
    db.set_defaults(func=lambda args: db.print_help() or 2)


def _context():
    from features.catalog import get_engine
    from features.settings import Settings

    settings = Settings.from_env()
    return settings, get_engine(settings.database_url)


def cmd_list(args: argparse.Namespace) -> int:
    from service.jobs import JOBS

    for spec in JOBS.values():
        print(f"{spec.name:<10} {json.dumps(spec.schedule) if spec.schedule else 'on demand':<40}"
              f" {spec.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from service.jobs import JOBS, enqueue, run_pending

    if args.name not in JOBS:
        print(f"error: no job {args.name!r}; jobs: {', '.join(JOBS)}", file=sys.stderr)
        return 2
    params = {}
    for item in args.param:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    settings, engine = _context()
    run_id = enqueue(engine, args.name, params, trigger="manual", requested_by="cli")
    done = run_pending(engine, settings, worker="cli")
    for rid, status in done:
        print(f"run {rid}: {status}")
    return 0 if dict(done).get(run_id) == "ok" else 1


def cmd_history(args: argparse.Namespace) -> int:
    from service.jobs import list_runs

    _, engine = _context()
    runs, _ = list_runs(engine, limit=args.limit)
    for r in runs:
        print(f"{r['id']:>5} {r['job']:<10} {r['status']:<11} attempt {r['attempt']}/"
              f"{r['max_attempts']} {r['queued_at']} {(r['error'] or '').splitlines()[-1:]}")
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from service.db import current_revision

    _, engine = _context()  # get_engine migrates
    print(current_revision(engine))
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    return cmd_upgrade(args)
