"""``scenario run`` / ``scenario compare`` / ``scenario list``: what-if scenarios from the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    ("inc_hosp", "peak", "adm. peak/d"),
    ("inc_hosp", "peak_date", "adm. peak date"),
    ("inc_hosp", "total", "adm. total (med)"),
    ("hosp", "peak", "hosp peak"),
    ("hosp", "bed_days", "hosp bed-days"),
    ("icu", "peak", "ICU peak"),
    ("icu", "capacity", "ICU beds"),
    ("icu", "prob_exceed", "P(ICU>beds)"),
    ("icu", "first_exceed_date", "ICU>beds from"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scenario {run,compare,list}`` to the CLI."""
    p = subparsers.add_parser("scenario", help="what-if scenarios (interventions vs capacity)")
    sub = p.add_subparsers(dest="scenario_command", metavar="SUBCOMMAND")

    run = sub.add_parser("run", help="run one scenario file and write its JSON result")
    run.add_argument("file", help="scenario YAML (e.g. scenarios/lockdown_2020_11.yaml)")
    _common(run)
    run.add_argument("--out", required=True, help="JSON file to write")
    run.add_argument("--no-trajectories", action="store_true",
                     help="omit the long quantile records (summaries only)")
    run.set_defaults(func=cmd_run)

    cmp_ = sub.add_parser("compare", help="run several scenarios and print summaries side by side")
    cmp_.add_argument("files", nargs="+", help="scenario YAML files")
    _common(cmp_)
    cmp_.add_argument("--plot", help="write a PNG fan chart of admissions, beds and ICU beds")
    cmp_.add_argument("--out", help="also write all results as one JSON file")
    cmp_.set_defaults(func=cmd_compare)

    lst = sub.add_parser("list", help="list the scenario library")
    lst.set_defaults(func=cmd_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    from service.cli import add_territory_option, iso_date, positive_int

    add_territory_option(p, "territory codes, as for forecast: --territory FR 69 13 or "
                            "--territory FR --territory 69 (FR, R84, 69, 2A, 971, or the groups "
                            "departments, metro_departments, regions); default: the file's")
    p.add_argument("--as-of", type=iso_date,
                   help="YYYY-MM-DD: first day not known (overrides the file)")
    p.add_argument("--samples", type=positive_int,
                   help="number of samples (default: file, else 500)")


def _run(file: str, args: argparse.Namespace, trajectories: bool = True) -> dict[str, Any]:
    from service.usecases.scenarios import run_file

    return run_file(file, as_of=args.as_of, territories=args.territory,
                    n_samples=args.samples, include_trajectories=trajectories)


def _bad_territories(args: argparse.Namespace) -> bool:
    """Print the codes of ``--territory`` that are not territory codes (before any run)."""
    from features.territories import territory_code_errors

    errors = territory_code_errors(args.territory or [], where="--territory")
    for e in errors:
        print(e, file=sys.stderr)
    return bool(errors)


def _unsafe_files(files: list[str]) -> bool:
    """Print the files that are too large, too deep or use YAML aliases, checked with PyYAML
    alone before the engine is imported (an alias bomb is answered at once)."""
    from features.safe_yaml import check_file

    bad = False
    for f in files:
        problem = check_file(f)
        if problem:
            print(f"invalid scenario:\n{f}: (file): {problem}", file=sys.stderr)
            bad = True
    return bad


def _run_or_exit_code(file: str, args: argparse.Namespace,
                     trajectories: bool) -> dict[str, Any] | int:
    """The result of :func:`_run`, or the exit code once the reason is printed: 2 for an invalid
    scenario, 1 for one that cannot run (e.g. on this cube)."""
    from scenarios import ScenarioValidationError

    try:
        return _run(file, args, trajectories=trajectories)
    except ScenarioValidationError as exc:
        print(f"invalid scenario:\n{exc}", file=sys.stderr)
        return 2
    except (KeyError, ValueError) as exc:
        print(f"cannot run {file}: {exc}", file=sys.stderr)
        return 1


def cmd_run(args: argparse.Namespace) -> int:
    if _unsafe_files([args.file]) or _bad_territories(args):
        return 2
    result = _run_or_exit_code(args.file, args, trajectories=not args.no_trajectories)
    if isinstance(result, int):
        return result
    result.pop("_projection", None)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(format_table({result["inputs"]["name"]: result}))
    print(f"\nwritten {args.out} ({result['timing_s']} s; vintage "
          f"{result['vintage']['vintage_id']}, as of {result['vintage']['as_of']})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if _unsafe_files(args.files) or _bad_territories(args):
        return 2
    results: dict[str, dict[str, Any]] = {}
    for f in args.files:
        r = _run_or_exit_code(f, args, trajectories=bool(args.out))
        if isinstance(r, int):
            return r
        results[r["inputs"]["name"]] = r
    print(format_table(results))
    if args.plot:
        plot_fans(results, args.plot)
        print(f"\nplot written to {args.plot}")
    if args.out:
        clean = {k: {kk: vv for kk, vv in v.items() if kk != "_projection"}
                 for k, v in results.items()}
        Path(args.out).write_text(json.dumps(clean, ensure_ascii=False, indent=1),
                                  encoding="utf-8")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from service.usecases.scenarios import library

    for item in library(paths=True):
        print(f"{item['name']:<20} {item['path']}\n    {item['description']}")
    return 0


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict):
        v = v.get("median")
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Summaries side by side: one line per (territory, scenario)."""
    head = ["territory", "scenario", "R now", *(c[2] for c in SUMMARY_COLUMNS)]
    rows = []
    territories: list[str] = []
    for r in results.values():
        territories += [t for t in r["summary"] if t not in territories]
    for t in territories:
        for name, r in results.items():
            s = r["summary"].get(t)
            if s is None:
                continue
            rows.append([t, name, _fmt(s["r_now"]["median"]),
                         *(_fmt(s[ind].get(key)) for ind, key, _ in SUMMARY_COLUMNS)])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    lines = ["  ".join(str(x).rjust(w) for x, w in zip(head, widths, strict=True))]
    lines += ["  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True))
              for row in rows]
    return "\n".join(lines)


def plot_fans(results: dict[str, dict[str, Any]], path: str) -> None:
    """PNG fan charts (90 % and 50 % bands, median) per territory and indicator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    first = next(iter(results.values()))["_projection"]
    terrs = first.territories
    inds = ("inc_hosp", "hosp", "icu")
    fig, axes = plt.subplots(len(terrs), 3, figsize=(13, 2.6 * len(terrs)), squeeze=False)
    top = np.zeros((len(terrs), 3))
    for name, r in results.items():
        proj = r["_projection"]
        for i, t in enumerate(proj.territories):
            if t not in terrs:
                continue
            row = terrs.index(t)
            for j, ind in enumerate(inds):
                ax = axes[row, j]
                q = np.quantile(proj.samples[ind][i], [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
                # The 95 % tail of an epidemic explodes; scale the axis on the 75 % quantile
                # (x 1.5) so that the medians stay readable: the 90 % band is clipped.
                top[row, j] = max(top[row, j], 1.5 * float(q[3].max()))
                ax.set_ylim(0, top[row, j] or None)
                (line,) = ax.plot(proj.dates, q[2], label=name)
                ax.fill_between(proj.dates, q[0], q[4], color=line.get_color(), alpha=0.15)
                ax.fill_between(proj.dates, q[1], q[3], color=line.get_color(), alpha=0.25)
                cap = proj.capacity.get(ind)
                if cap is not None and np.isfinite(cap[i]):
                    ax.axhline(cap[i], color="k", ls="--", lw=0.8)
                ax.set_title(f"{t} — {ind}", fontsize=9)
                ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("median, 50 % and 90 % bands (90 % band clipped at 1.5 x the 75 % quantile); "
                 "dashed: capacity", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
