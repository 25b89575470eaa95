"""Validate ``incidence_rate_7d_estimated`` (départements' incidence from screened positive tests).

Ingests the data directory into a temporary home (or reads ``--home``'s cube) and prints:

1. alignment: the mean day-to-day change of the régions' persons/tests ratio when the SI-DEP
   7-day window is shifted against the screening window (the right alignment is the smoothest);
2. by construction: the population-weighted sum of the estimates over each région's
   départements against the région's own ``incidence_rate_7d`` (largest relative gap);
3. the persons/tests ratio: distribution over région-days, per région, and the spread between
   régions against the spread of one région over time; région-days left out by the minimum;
4. what using a parent's ratio costs, measured one level up where the truth is known: each
   région estimated with France's ratio against its own rate (relative error, alert class
   changed), to show why the région's own ratio is used for départements;
5. a sanity table on 2021-11-28 for a few départements;
6. the risk map's completeness (incidence criterion known, level complete) on a few days.

Run: ``python bench/incidence_estimated.py [--home DIR] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from features import risk
from features.incidence_estimate import MIN_REGION_TESTS
from features.ingest import run_ingest
from features.settings import Settings
from features.store import open_cube

THRESHOLDS = (50.0, 150.0, 250.0)
DEPARTMENTS = ("75", "69", "13", "59", "38", "74", "2A", "21", "974", "973")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a VIGIE_HOME already ingested")
    parser.add_argument("--data-dir", type=Path, default=Settings.from_env().data_dir)
    args = parser.parse_args()
    if args.home:
        report(Settings.from_env(home=str(args.home)))
        return
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env(home=home, data_dir=str(args.data_dir),
                                     database_url=f"sqlite:///{home}/vigie.sqlite")
        outcome = run_ingest(settings).outcome
        assert outcome == "ok", outcome
        report(settings)


def frame(ds, name: str, codes) -> pd.DataFrame:
    return ds[name].sel(territory=list(codes)).transpose("territory", "date").to_pandas()


def report(settings: Settings) -> None:
    daily = open_cube("daily", settings=settings)
    level = pd.Series(daily["territory_level"].values, daily["territory"].values)
    parent = pd.Series(daily["territory_parent"].values, daily["territory"].values)
    pop = pd.Series(daily["population"].values, daily["territory"].values)
    regions = list(level.index[level == "region"])
    departments = list(level.index[level == "department"])
    tests = frame(daily, "screened_positive_tests", regions)
    persons = frame(daily, "inc_cases", regions).T.rolling(7, min_periods=7).sum().T
    span = tests.columns[tests.notna().any()]
    print(f"screening windows ending {span[0].date()}..{span[-1].date()}, "
          f"{len(regions)} régions, {len(departments)} départements")

    print("\n1. alignment of the SI-DEP 7-day sum (shifted by k days) with the screening window")
    inner = span[7:-7]
    for k in range(-2, 3):
        ratio = (persons.shift(k, axis=1) / tests)[inner]
        change = np.log(ratio).diff(axis=1).abs().stack().mean()
        print(f"   k = {k:+d}: mean |day-to-day change of ln ratio| = {change:.4f}")

    est = frame(daily, "incidence_rate_7d_estimated", departments)
    own = frame(daily, "incidence_rate_7d", regions)
    print("\n2. by construction: Σ_d estimate_d × pop_d over a région's départements = its "
          "7-day positives")
    worst, cells = 0.0, 0
    for code in regions:
        deps = [d for d in departments if parent[d] == code]
        total = (est.loc[deps].mul(pop[deps], axis=0)).sum(min_count=len(deps)) / pop[code]
        both = total.notna() & own.loc[code].notna() & (own.loc[code] > 0)
        gap = ((total[both] - own.loc[code][both]).abs() / own.loc[code][both]).max()
        worst, cells = max(worst, gap if both.any() else 0.0), cells + int(both.sum())
    print(f"   {cells} région-days compared; largest relative gap {worst:.2e}")

    ratio = (persons / tests).where(tests >= MIN_REGION_TESTS)[span]
    values = ratio.stack()
    print(f"\n3. persons per positive test, {len(values)} région-days (windows with >= "
          f"{MIN_REGION_TESTS:g} tests)")
    q = values.quantile([0.01, 0.1, 0.5, 0.9, 0.99])
    print("   quantiles 1/10/50/90/99 %: " + " / ".join(f"{v:.3f}" for v in q))
    dropped = int(((tests[span] < MIN_REGION_TESTS) & persons[span].notna()).sum().sum())
    small = tests[span].index[(tests[span] < MIN_REGION_TESTS).any(axis=1)]
    print(f"   région-days left out by the minimum: {dropped} ({', '.join(sorted(small))})")
    saturdays = ratio.loc[:, ratio.columns.dayofweek == 5]
    per_region = saturdays.T.describe().T[["mean", "std", "min", "max"]]
    print(per_region.round(3).to_string(header=True).replace("\n", "\n   "))
    between = saturdays.std(axis=0).median()
    within = saturdays.std(axis=1).median()
    print(f"   spread between régions on the same Saturday (median SD): {between:.3f}; "
          f"spread of one région over the Saturdays (median SD): {within:.3f}; "
          f"région means {per_region['mean'].min():.3f}..{per_region['mean'].max():.3f}")

    print("\n4. cost of a parent's ratio, one level up: each région estimated with France's")
    persons_fr = frame(daily, "inc_cases", ["FR"]).T.rolling(7, min_periods=7).sum().T
    fr_ratio = persons_fr.iloc[0] / frame(daily, "screened_positive_tests", ["FR"]).iloc[0]
    guess = tests.mul(fr_ratio, axis=1).div(pop[regions], axis=0) * 1e5
    truth = own[guess.columns]
    ok = guess.notna() & truth.notna() & (truth > 0) & (tests >= MIN_REGION_TESTS)
    rel = ((guess - truth) / truth)[ok].stack()
    klass = lambda x: np.searchsorted(THRESHOLDS, x, side="left")  # noqa: E731
    changed = (klass(guess[ok].stack().to_numpy()) != klass(truth[ok].stack().to_numpy()))
    print(f"   {len(rel)} région-days: median |relative error| {rel.abs().median():.1%}, "
          f"90th percentile {rel.abs().quantile(0.9):.1%}; incidence class (50/150/250) "
          f"changed on {changed.mean():.1%} of them")

    day = "2021-11-28"
    print(f"\n5. sanity check on {day} (window 2021-11-22..28)")
    rows = []
    for code in DEPARTMENTS:
        reg = parent[code]
        t = float(daily["screened_positive_tests"].sel(territory=code, date=day))
        r = float(ratio.loc[reg, pd.Timestamp(day)])
        rows.append({"dép.": code, "name": str(daily["territory_name"].sel(territory=code)
                                                .item()),
                     "tests 7 d": t, "région": reg, "région ratio": round(r, 3),
                     "persons (est.)": round(t * r), "population": int(pop[code]),
                     "estimate /100k": round(float(est.loc[code, pd.Timestamp(day)]), 1),
                     "tests /100k": round(t / pop[code] * 1e5, 1),
                     "région rate": round(float(own.loc[reg, pd.Timestamp(day)]), 1)})
    print("   " + pd.DataFrame(rows).to_string(index=False).replace("\n", "\n   "))
    fr = float(daily["incidence_rate_7d"].sel(territory="FR", date=day))
    print(f"   France {fr:.1f}; départements' estimates: median "
          f"{est[pd.Timestamp(day)].median():.1f}, {int(est[pd.Timestamp(day)].notna().sum())} "
          "of 101 estimated")

    print("\n6. risk map (départements): incidence criterion known / level complete")
    yearly = open_cube("yearly", settings=settings)
    for day in ("2021-06-05", "2021-06-12", "2021-07-31", "2021-11-27", "2021-12-31"):
        out = risk.assess(daily.sel(date=[day]), yearly).sel(territory=departments)
        known = int(out["criterion_1_incidence_rate_7d"].notnull().sum())
        complete = int(out["risk_complete"].sum())
        estimated = int((out["incidence_rate_7d_origin"] == risk.ORIGIN_ESTIMATED).sum()) \
            if "incidence_rate_7d_origin" in out else 0
        levels = out["risk_level"].to_series().value_counts().sort_index().to_dict()
        print(f"   {day}: incidence known {known}/101 (estimated {estimated}), complete "
              f"{complete}/101, levels {levels}")


if __name__ == "__main__":
    main()
