"""Time one scenario for one département and for all départements.

Usage::

    VIGIE_HOME=/path/to/ingested/home python bench/scenario.py [--as-of 2020-10-25]
        [--samples 500] [--horizon 42]

Targets (issue 4): one département under 1 s, all départements under 1 min, on 2 cores.
"Cold" includes opening the cube vintage and learning the effects from history; "warm" reuses
the effects learned for the same vintage and as_of (what the service does after the first
request of the day).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--as-of", default="2020-10-25")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--horizon", type=int, default=42)
    parser.add_argument("--department", default="69")
    args = parser.parse_args()

    from features.store import open_cube
    from scenarios import run_scenario
    from scenarios.engine import _EFFECT_CACHE

    definition = {
        "name": "bench_lockdown",
        "horizon_days": args.horizon,
        "n_samples": args.samples,
        "interventions": [{"type": "lockdown", "start": 5, "duration_days": 30, "ramp_days": 2},
                          {"type": "school_closure", "start": 5, "duration_days": 14}],
    }
    t0 = time.perf_counter()
    cube = open_cube("daily", as_of=args.as_of)
    yearly = open_cube("yearly", as_of=args.as_of)
    weekly = open_cube("weekly", as_of=args.as_of)
    t_open = time.perf_counter() - t0
    deps = [str(t) for t, lv in zip(cube["territory"].values, cube["territory_level"].values,
                                    strict=True) if lv == "department"]
    kw = dict(as_of=args.as_of, yearly=yearly, weekly=weekly)

    def timed(territories: list[str], trajectories: bool) -> float:
        t = time.perf_counter()
        run_scenario(definition, cube, territories=territories,
                     include_trajectories=trajectories, **kw)
        return time.perf_counter() - t

    _EFFECT_CACHE.clear()
    cold_one = timed([args.department], True)
    warm_one = min(timed([args.department], True) for _ in range(3))
    # Départements with admissions up to as_of (a territory without recent data is refused).
    ok = [d for d in deps
          if bool(cube["inc_hosp"].sel(territory=d).isel(date=slice(-7, None)).notnull().all())]
    all_no_traj = timed(ok, False)
    all_traj = timed(ok, True)
    print(f"as_of {args.as_of}, {args.samples} samples, horizon {args.horizon} d, "
          f"vintage {cube.attrs.get('vintage_id')}")
    print(f"open cubes (daily, yearly, weekly)          {t_open:6.2f} s")
    print(f"one département ({args.department}), cold (learn effects)  {cold_one:6.2f} s")
    print(f"one département ({args.department}), warm                  {warm_one:6.2f} s")
    print(f"all {len(ok)} départements, summaries only          {all_no_traj:6.2f} s")
    print(f"all {len(ok)} départements, with quantile records   {all_traj:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
