"""``upload FILE [--as NAME] [--json]``: send a city file in the shared format, as
``POST /api/v1/uploads`` does (:mod:`service.usecases.uploads`), for the operator (every
territory). Synchronous: the ingest runs in this process and settles the upload (the API
queues it instead). Exit 0 accepted (a new vintage), 1 refused (quarantined, every problem
printed) or undone (the ingest did not take it: the uploads it replaced are back), 2 not
sent (no such file, a forged name, over ``VIGIE_UPLOAD_MAX_BYTES``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    upload = subparsers.add_parser(
        "upload", help="send a city file in the shared format: validated, kept, ingested",
        description="Validate a city file in Vigie's shared format "
                    "(features/schemas/city_indicators.schema.json) as the ingest does; valid, "
                    "keep it ($VIGIE_HOME/uploads/active and the raw store, read by every "
                    "ingest) and make a new vintage; refused, quarantine it with its report. "
                    "A newer file replaces the operator's older upload of the same name, or "
                    "one whose every (indicator, territory) it carries.")
    upload.add_argument("file", type=Path, metavar="FILE", help="the CSV file to send")
    upload.add_argument("--as", dest="upload_as", metavar="NAME",
                        help="the name it is kept under (default: the file's own name); the "
                             "same name again replaces it")
    upload.add_argument("--json", action="store_true", help="print the report as JSON")
    upload.set_defaults(func=cmd_upload)


def cmd_upload(args: argparse.Namespace) -> int:
    from features.settings import Settings
    from features.uploads import UploadsBusy
    from service.usecases.uploads import UploadRefused, upload_file

    settings = Settings.from_env()
    path: Path = args.file
    if not path.is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 2
    size = path.stat().st_size
    name = args.upload_as or path.name
    # Over the limit: refused (and audited) by the use case without reading the file.
    content = path.read_bytes() if size <= settings.upload_max_bytes else b""
    try:
        report = upload_file(settings, content, name, sender="cli", role="admin", actor="cli",
                             size=size, wait=True)
    except (UploadRefused, UploadsBusy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    else:
        _print(report)
    return 0 if report["status"] == "accepted" else 1


def _print(report: dict) -> None:
    print(f"upload {report['id']} ({report['name']}): {report['status']}")
    for problem in report["problems"]:
        where = [problem["file"]]
        if problem.get("line") is not None:
            where.append(f"line {problem['line']}")
        if problem.get("column"):
            where.append(f"column '{problem['column']}'")
        print(f"  {', '.join(where)}: expected {problem['expected']}, found {problem['found']}")
    if report["status"] == "accepted":
        print(f"  {report['rows']} rows, {', '.join(report['indicators'])} for "
              f"{len(report['territories'])} territories; kept as {report['file']}")
        if report["replaces"]:
            print(f"  replaces upload(s) {', '.join(report['replaces'])}")
        print(f"  {report['message']} (ingest {report['ingest']['outcome']}: "
              f"{report['ingest']['message']})")
    elif report.get("upload_status") == "undone":
        print(f"  {report['message']}; the uploads it replaced are back in force")
    else:
        print(f"  quarantined in {report['quarantine']}; nothing served changed")
