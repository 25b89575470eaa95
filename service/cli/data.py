"""``ingest`` and ``cube`` commands: fill the store, describe it, export from it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from features.errors import NoVintageError
from features.settings import Settings
from service.csv_safety import write_csv


def register(subparsers: argparse._SubParsersAction) -> None:
    from service.cli import add_territory_option, iso_date

    ingest = subparsers.add_parser(
        "ingest", help="ingest every source found into a new cube vintage",
        description="Read, validate and merge every source found in the data directory into a "
                    "new cube vintage. Exit code 0: all sources ok (or nothing changed); 1: some "
                    "source failed (quarantined, its last good data kept); 2: nothing ingested.")
    ingest.add_argument("--data-dir", type=Path, help="folder of source files "
                        "(default $VIGIE_DATA_DIR, else ../shared/data)")
    ingest.add_argument("--download", action="store_true",
                        help="download the official publications first (needs network)")
    ingest.add_argument("--source", nargs="+", action="extend", dest="sources", metavar="NAME",
                        help="ingest only these sources (others keep their current data): "
                             "--source A B or --source A --source B")
    ingest.add_argument("--force", action="store_true",
                        help="write a vintage even if no input changed")
    ingest.add_argument("--json", action="store_true", help="print the report as JSON")
    ingest.set_defaults(func=cmd_ingest)

    cube = subparsers.add_parser("cube", help="describe or export the cube")
    cube_sub = cube.add_subparsers(dest="cube_command", metavar="SUBCOMMAND")
    info = cube_sub.add_parser("info", help="describe the cube served on a date")
    info.add_argument("--as-of", type=iso_date,
                      help="YYYY-MM-DD (default: latest vintage, all dates)")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_cube_info)
    export = cube_sub.add_parser("export", help="write one indicator as a tidy CSV")
    export.add_argument("--indicator", required=True, help="cube variable, e.g. inc_hosp")
    add_territory_option(export, "only these codes (FR, R84, 69, 2A, 971, EPCI SIREN): "
                                 "--territory 69 13 or --territory 69 --territory 13")
    export.add_argument("--as-of", type=iso_date, help="YYYY-MM-DD: the cube as known that day")
    export.add_argument("--out", required=True, type=Path, help="CSV file to write")
    export.set_defaults(func=cmd_cube_export)
    vint = cube_sub.add_parser("vintages", help="list the cube's vintages")
    vint.add_argument("--json", action="store_true")
    vint.set_defaults(func=cmd_cube_vintages)
    cube.set_defaults(func=lambda args: cube.print_help() or 2)


def _settings(args: argparse.Namespace) -> Settings:
    data_dir = getattr(args, "data_dir", None)
    return Settings.from_env(data_dir=str(data_dir)) if data_dir else Settings.from_env()


def cmd_ingest(args: argparse.Namespace) -> int:
    from service.usecases.uploads import ingest_settling

    settings = _settings(args)
    report, settled = ingest_settling(settings, download=args.download, only=args.sources,
                                      force=args.force)
    if args.json:
        print(json.dumps(report.to_dict() | {"uploads": settled["settled"]}, indent=2,
                         default=str, ensure_ascii=False))
    else:
        _print_ingest(report, settings)
        for upload in settled["settled"]:
            print(f"upload {upload['id']}: {upload['status']} ({upload['message']})")
    return {"ok": 0, "unchanged": 0, "partial": 1}.get(report.outcome, 2)


def _print_ingest(report, settings: Settings) -> None:
    print(f"data directory: {settings.data_dir}")
    print(f"{'source':<24} {'status':<8} {'rows':>9} {'terr.':>5}  {'dates':<23}  file")
    for o in report.sources:
        s = o.summary
        dates = f"{s.get('first_date', '')}..{s.get('last_date', '')}" if s else ""
        print(f"{o.source:<24} {o.status:<8} {s.get('rows', ''):>9} "
              f"{s.get('territories', ''):>5}  {dates:<23}  {o.file or ''}")
        for warning in s.get("warnings", []):
            print(f"    warning: {warning}")
        if o.status in ("failed", "missing") and o.error:
            for line in str(o.error).splitlines():
                print(f"    {line}")
        if o.quarantined:
            print(f"    quarantined in {o.quarantined}")
    print(f"\n{report.outcome}: {report.message}")


def cmd_cube_info(args: argparse.Namespace) -> int:
    from service.usecases.cube import describe

    try:
        info = describe(_settings(args), args.as_of)
    except NoVintageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(f"vintage {info['vintage_id']} issued {info['issued_at']}"
          + (f", read as of {args.as_of}" if args.as_of else ""))
    if info["issued_after_as_of"]:
        print("  note: no vintage was issued by that date; the earliest one is shown, truncated")
    for frequency, d in info["datasets"].items():
        levels = ", ".join(f"{n} {lvl}" for lvl, n in d["levels"].items())
        print(f"\n{frequency}: {d['territories']} territories ({levels}) × {d['dates']} dates")
        for name, ind in d["indicators"].items():
            print(f"  {name:<36} {ind['units']:<38} {ind['first_date']}..{ind['last_date']}"
                  f"  {ind['territories']} terr.")
    return 0


def cmd_cube_export(args: argparse.Namespace) -> int:
    from service.usecases.cube import UnknownIndicator, UnknownTerritories, export_indicator

    try:
        export = export_indicator(_settings(args), args.indicator, args.territory, args.as_of)
    except NoVintageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UnknownIndicator:
        print(f"error: unknown indicator '{args.indicator}'", file=sys.stderr)
        return 2
    except UnknownTerritories as exc:
        print(f"error: unknown territory code(s): {', '.join(exc.codes)}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(export.frame, args.out, index=False)
    print(f"wrote {len(export.frame)} rows of {args.indicator} ({export.frequency}) to "
          f"{args.out}")
    if export.empty:
        listed = ", ".join(f"{c} ({n})" for c, n in export.empty)
        hint = f"; an estimate may exist: --indicator {export.estimate}" if export.estimate \
            else ""
        print(f"note: no value of {args.indicator} for {listed}{hint}", file=sys.stderr)
    return 0


def cmd_cube_vintages(args: argparse.Namespace) -> int:
    from service.usecases.cube import list_vintages

    rows = list_vintages(_settings(args))
    if args.json:
        print(json.dumps([{"id": r["id"], "issued_at": r["issued_at"].isoformat(),
                           "files": r["files"]} for r in rows], indent=2, default=str))
        return 0
    for r in rows:
        print(f"{r['id']}  issued {r['issued_at']:%Y-%m-%d %H:%M:%S}Z  {len(r['files'])} files")
    return 0
