"""Lockdown and status-quo scenarios for France and all 101 départements, scored on history.

Usage::

    VIGIE_HOME=/path/to/ingested/home python bench/scenario_validation.py
        [--periods 2020-11 2021-04] [--samples 500] [--decompose] [--table]

For each period (as of 2020-10-25: the November 2020 lockdown; as of 2021-03-28: the April
2021 lockdown, see ``scenarios/validation.py``), the library lockdown scenario and the status
quo run with only what was known at ``as_of``; observed = SPF admissions of the next 28 days.
A territory is a hit when the lockdown scenario's median 28-day admissions lie within 25 % of
what happened AND the status quo's median lies above what happened (issue 12).

Printed: the hit fraction before (R now from admissions, each territory on its own: the
method before daily cases were ingested) and after (R now from cases where they exist,
départements pooled toward their région: ``scenarios/rnow.py``); ``--decompose`` adds the two
intermediate methods (pooling without cases, cases without pooling); ``--table`` the
per-territory rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

METHODS = {
    "before: admissions, own R": ("admissions", False),
    "after: cases, pooled": ("cases", True),
}
INTERMEDIATE = {
    "admissions, pooled": ("admissions", True),
    "cases, own R (ratio)": ("cases", False),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--periods", nargs="+", default=["2020-11", "2021-04"])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--decompose", action="store_true",
                        help="also the intermediate methods (pooling only, cases only)")
    parser.add_argument("--table", action="store_true", help="print the per-territory rows")
    args = parser.parse_args()

    from scenarios.validation import PERIODS, TOLERANCE, hit_fraction, validate

    methods = {**METHODS, **(INTERMEDIATE if args.decompose else {})}
    results = {}
    for period in args.periods:
        for name, (basis, pool) in methods.items():
            t0 = time.perf_counter()
            rows = validate(period, territories=("FR", "departments"), n_samples=args.samples,
                            rt_basis=basis, rt_pool=pool)
            results[period, name] = (rows, time.perf_counter() - t0)

    print(f"hit = lockdown median 28-day admissions within {TOLERANCE:.0%} of what happened "
          f"and status-quo median above it; {args.samples} samples")
    print(f"{'period (as of)':<24} {'method':<28} {'n':>4} {'hit':>6} {'lockdown ok':>12} "
          f"{'SQ above':>9} {'in 90 %':>8} {'time':>7}")
    for (period, name), (rows, secs) in results.items():
        n = len(rows)
        lock_ok = sum(abs(r.lockdown_error) <= TOLERANCE for r in rows) / n
        above = sum(r.status_quo_above for r in rows) / n
        inside = sum(r.lockdown_total_inside for r in rows) / n
        label = f"{period} ({PERIODS[period][0]})"
        print(f"{label:<24} {name:<28} {n:>4} {hit_fraction(rows):>6.3f} {lock_ok:>12.3f} "
              f"{above:>9.3f} {inside:>8.3f} {secs:>6.1f}s")
    if args.table:
        for period in args.periods:
            print(f"\n{period}: observed, then lockdown / status-quo medians as a ratio of it, "
                  "R now, hit (before | after)")
            before = {r.territory: r for r in results[period, "before: admissions, own R"][0]}
            after = {r.territory: r for r in results[period, "after: cases, pooled"][0]}
            print(f"{'terr.':<6} {'observed':>9} {'lock b':>7} {'SQ b':>6} {'R b':>5} {'hit b':>5}"
                  f" {'lock a':>7} {'SQ a':>6} {'R a':>5} {'hit a':>5}  basis after")
            for code, b in before.items():
                a = after[code]
                o = b.observed_total
                hb, ha = ("yes" if r.hit() else "" for r in (b, a))
                print(f"{code:<6} {o:>9,.0f} {b.lockdown_total[1] / o:>7.2f} "
                      f"{b.status_quo_total[1] / o:>6.2f} {b.r_now:>5.2f} {hb:>5}"
                      f" {a.lockdown_total[1] / o:>7.2f} {a.status_quo_total[1] / o:>6.2f} "
                      f"{a.r_now:>5.2f} {ha:>5}  {a.r_basis}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
