"""Micro-benchmark of the audit journal's append (:mod:`service.audit_journal`), this code
against a previous commit's, in the same run.

N threads each append M rows (the size of an authenticated request's row) to one journal, as
N request threads of a ``serve`` process would; shipping is held meanwhile (the database is
not measured). For each N: appends per second, p50 / p99 latency of one append, and the new
code's number of ``os.write`` calls (batches), old and new alternated ``--repeat`` times (the
median is kept), then the ratio new / old. The previous code is read with ``git show
REV:service/audit_journal.py`` (default ``HEAD``: run before committing a change to compare
it with the committed code). Without ``--rev``: the version before the journal's last commit
when the file is unchanged since, the committed one when it has local changes.

Usage: ``python bench/audit_journal.py [--threads 1,4,16,32] [--appends 2000] [--repeat 3]
[--sync write|fsync] [--rev REV]``. The machine's 1-minute load average is printed with each
row: on a shared machine, compare ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from service import audit_journal  # noqa: E402
from service.db import audit_log  # noqa: E402


def previous_module(rev: str) -> types.ModuleType:
    """``service/audit_journal.py`` as it was at ``rev``, as a module of its own."""
    source = subprocess.run(["git", "show", f"{rev}:service/audit_journal.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType(f"audit_journal_{rev.replace('~', '_').replace('^', '_')}")
    module.__file__ = f"{rev}:service/audit_journal.py"
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def row(i: int) -> dict:
    return {"request_id": audit_journal.new_request_id(), "at": "2026-12-01T23:00:00+00:00",
            "event": "request", "actor": "cellule-crise-nord", "role": "reader",
            "method": "GET", "path": "/api/v1/forecasts", "query": f"territory=59&i={i}",
            "status": 200, "vintage_id": "20261201T020000Z-1a2b3c4d",
            "model_version": "ets-1.4.2", "run_id": "20261201T030000Z-5e6f7a8b",
            "remote_addr": "127.0.0.1"}


def run(module: types.ModuleType, folder: Path, engine: sa.Engine, threads: int, appends: int,
        sync: str) -> dict:
    journal = module.AuditJournal(folder, engine, sync=sync)
    rows = [[row(t * appends + i) for i in range(appends)] for t in range(threads)]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        out = latencies[t]
        start.wait()
        for one in rows[t]:
            began = time.perf_counter()
            journal.append(one)
            out.append(time.perf_counter() - began)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    with journal.hold():
        for w in workers:
            w.start()
        start.wait()
        began = time.perf_counter()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - began
        lines = journal.path.read_bytes().count(b"\n")
    assert lines == threads * appends, (lines, threads * appends)
    journal.close()
    every = sorted(x for one in latencies for x in one)
    return {"rate": threads * appends / elapsed, "p50": every[len(every) // 2] * 1e3,
            "p99": every[int(len(every) * 0.99)] * 1e3,
            "writes": getattr(journal, "writes", None)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,4,16,32")
    parser.add_argument("--appends", type=int, default=2000, help="rows per thread")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sync", choices=audit_journal.SYNC_POLICIES, default="write")
    parser.add_argument("--rev", help="the previous code's commit")
    args = parser.parse_args()
    if args.rev is None:
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--",
                                  "service/audit_journal.py"], cwd=ROOT).returncode
        args.rev = "HEAD" if changed else subprocess.run(
            ["git", "log", "-n", "2", "--format=%h", "--", "service/audit_journal.py"],
            cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()[-1]
    old = previous_module(args.rev)
    commit = subprocess.run(["git", "rev-parse", "--short", args.rev], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    print(f"audit journal append, {args.appends} rows per thread, sync={args.sync}, old = "
          f"{args.rev} ({commit}), median of {args.repeat}")
    print(f"{'threads':>7} {'load':>5} | {'old rows/s':>10} {'p50 ms':>7} {'p99 ms':>7} | "
          f"{'new rows/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'writes':>7} | {'new/old':>7}")
    with tempfile.TemporaryDirectory(prefix="vigie-bench-journal-") as tmp:
        engine = sa.create_engine(f"sqlite:///{tmp}/audit.sqlite")
        audit_log.metadata.create_all(engine, tables=[audit_log])
        for n in (int(x) for x in args.threads.split(",")):
            load = os.getloadavg()[0]
            results: dict[str, list[dict]] = {"old": [], "new": []}
            for i in range(args.repeat):
                for name, module in (("old", old), ("new", audit_journal)):
                    folder = Path(tmp) / f"{name}-{n}-{i}"
                    results[name].append(run(module, folder, engine, n, args.appends,
                                             args.sync))
            med = {name: {key: statistics.median(r[key] for r in rs)
                          for key in ("rate", "p50", "p99")} for name, rs in results.items()}
            writes = statistics.median(r["writes"] for r in results["new"])
            print(f"{n:>7} {load:>5.1f} | {med['old']['rate']:>10,.0f} {med['old']['p50']:>7.3f} "
                  f"{med['old']['p99']:>7.2f} | {med['new']['rate']:>10,.0f} "
                  f"{med['new']['p50']:>7.3f} {med['new']['p99']:>7.2f} {writes:>7,.0f} | "
                  f"{med['new']['rate'] / med['old']['rate']:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
