"""Benchmark: the retrospective track record, the reference code against this one, same run.

Each run computes the track record (``python -m service trackrecord --sequential``: one
process, so its CPU time is the whole computation) from an empty backtest store, on its own
freshly ingested home (the same data; the reference's home ingested by the reference code,
whose database schema may be older). The runs, one after the other:

* ``reference``: the code of ``--reference-commit`` (extracted with ``git archive``; default:
  the commit before this work), its default model (``ensemble`` 1.3 with ``gbm`` 1.2);
* ``this code, <model>`` for each ``--models`` (default ``ensemble@1.3``, the same model as
  the reference: only the code differs, so its rows must equal the reference's, which is
  checked and printed; and ``ensemble``, the current default).

Prints CPU seconds (user + system of the child process), wall seconds, the load average
(2 cores shared with other work: the CPU ratio is the figure to read; with ``--concurrent``
the runs start at once and share the cores, so only the CPU ratio compares them) and each
run's ratio to the reference; then, for each run whose rows differ from the reference's,
its relative WIS and coverage beside the reference's, target by target.

Usage::

    python bench/trackrecord.py                          # inc_hosp (weekly), every level
    python bench/trackrecord.py --target inc_hosp hosp --models ensemble
    python bench/trackrecord.py --target inc_hosp inc_icu hosp icu er_visits
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.make_run import env_for, extract, load  # noqa: E402

#: The last commit before the track record was made cheaper (holiday lookups, per-series
#: fits by position, gbm 1.3): the reference's code and default model.
REFERENCE_COMMIT = "feb3dd3"
#: Fields that differ between two computations of the same rows.
_VOLATILE = ("computed_at", "model_version", "model")


def start_trackrecord(tree: Path, home: Path, targets: list[str], model: str | None,
                      label: str) -> dict:
    """Start one sequential track record in ``tree`` on ``home``."""
    cmd = [sys.executable, "-m", "service", "trackrecord", "--sequential", "--json",
           "--target", *targets]
    if model:
        cmd += ["--model", model]
    log = open(home / "trackrecord.log", "w", encoding="utf-8")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=tree, env=env_for(home), stdout=subprocess.DEVNULL,
                            stderr=log)
    return {"label": label, "home": home, "proc": proc, "log": log,
            "started": time.perf_counter(), "load": os.getloadavg()[0]}


def finish_trackrecord(run: dict, ended: tuple | None = None) -> dict:
    """Wait for a started run (or take ``ended``, what ``os.wait4`` said when it ended): its
    CPU seconds (its own rusage, user + system), wall seconds and rows."""
    _, status, usage = ended or os.wait4(run["proc"].pid, 0)
    run["wall"] = time.perf_counter() - run["started"]
    run["cpu"] = usage.ru_utime + usage.ru_stime
    run["log"].close()
    if os.waitstatus_to_exitcode(status):
        tail = (run["home"] / "trackrecord.log").read_text(encoding="utf-8")[-3000:]
        raise SystemExit(f"{run['label']} failed:\n{tail}")
    payload = json.loads((run["home"] / "models" / "retrospective.json")
                         .read_text(encoding="utf-8"))
    run.update(rows=payload["rows"], model_version=payload["model_version"])
    print(f"  {run['label']:<40} cpu {run['cpu']:7.1f} s  wall {run['wall']:7.1f} s  "
          f"(load {run['load']:.1f} → {os.getloadavg()[0]:.1f})", flush=True)
    return run


def comparable(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in row.items() if k not in _VOLATILE} for row in rows),
                  key=lambda r: (r["target"], r["level"], r["period"], r["horizon"]))


def side_by_side(reference: dict, run: dict) -> None:
    """Relative WIS and 50/90 % coverage by horizon, the reference's then the run's."""
    key = ("target", "frequency", "level", "period")
    def table(rows):
        out: dict[tuple, dict[int, dict]] = {}
        for row in rows:
            out.setdefault(tuple(row[k] for k in key), {})[row["horizon"]] = row
        return out
    ref, new = table(reference["rows"]), table(run["rows"])
    print(f"\n{run['label']} ({run['model_version']}) against the reference "
          f"({reference['model_version']}): relative WIS / 50 % / 90 % coverage by horizon")
    print("| target | level | period | reference | this run |")
    print("|---|---|---|---|---|")
    for group in sorted(set(ref) | set(new)):
        cells = []
        for rows in (ref.get(group, {}), new.get(group, {})):
            cells.append("; ".join(" / ".join(
                "–" if rows[h][c] is None else f"{rows[h][c]:.2f}" for h in sorted(rows))
                for c in ("relative_wis", "coverage_50", "coverage_90")) or "–")
        print(f"| {group[0]} ({group[1]}) | {group[2]} | {group[3]} | {cells[0]} | "
              f"{cells[1]} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", nargs="+", default=["inc_hosp"])
    parser.add_argument("--models", nargs="+", default=["ensemble@1.3", "ensemble"],
                        help="models of this code's runs (default: ensemble@1.3, the "
                             "reference's model, then the current default)")
    parser.add_argument("--reference-commit", default=REFERENCE_COMMIT)
    parser.add_argument("--concurrent", action="store_true",
                        help="start the runs at once (each one's CPU time is its own; on a "
                             "machine busy with other work this gets them done sooner, the "
                             "wall times then share the cores)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="vigie-trackrecord-"))
    try:
        tree = extract(args.reference_commit, work / "reference")
        print(f"reference: {args.reference_commit} extracted in {tree}; targets "
              f"{' '.join(args.target)}; homes under {work}")
        # Each code ingests its own home (its database schema may differ); the runs of this
        # code start from copies of one.
        for tree_, name in ((tree, "ingested-reference"), (ROOT, "ingested")):
            subprocess.run([sys.executable, "-m", "service", "ingest"], cwd=tree_,
                           env=env_for(work / name), check=True, capture_output=True)
        runs = []
        for i, model in enumerate([None, *args.models]):
            home = work / f"home-{i}"
            shutil.copytree(work / ("ingested-reference" if model is None else "ingested"),
                            home, symlinks=True)
            label = "reference" if model is None else f"this code, {model}"
            runs.append(start_trackrecord(tree if model is None else ROOT, home, args.target,
                                          model, label))
            if not args.concurrent:
                finish_trackrecord(runs[-1])
        if args.concurrent:  # each run's wall time when it ends, whichever ends first
            by_pid = {run["proc"].pid: run for run in runs}
            while by_pid:
                ended = os.wait4(-1, 0)
                if ended[0] in by_pid:
                    finish_trackrecord(by_pid.pop(ended[0]), ended)
        reference = runs[0]
        print(f"\n{'run':<40} {'cpu (s)':>8} {'wall (s)':>9} {'cpu ratio':>10} "
              f"{'wall ratio':>11}  rows equal the reference's")
        for run in runs:
            same = comparable(run["rows"]) == comparable(reference["rows"])
            print(f"{run['label']:<40} {run['cpu']:8.1f} {run['wall']:9.1f} "
                  f"{reference['cpu'] / run['cpu']:9.2f}x {reference['wall'] / run['wall']:10.2f}x"
                  f"  {'yes' if same else 'no'}")
        for run in runs[1:]:
            if comparable(run["rows"]) != comparable(reference["rows"]):
                side_by_side(reference, run)
        print(f"\n({load()} at the end; ratios are reference / this run: above 1 is faster)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
