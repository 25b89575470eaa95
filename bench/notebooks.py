"""Time the analyst notebooks, run as the test suite runs them (tests/test_notebooks.py).

Each notebook is executed top to bottom with nbclient and the suite's short parameters
(``FAST``: one région, two forecast dates, few scenario samples) in a home of its own: the
catalog of an ingested home (``--home``, left untouched: notebook 2 registers a model) or, by
default, a fresh ingest of ``--data-dir`` plus the Rennes city-indicator fixture, as the test
session builds it. Prints the seconds of each notebook beside the limits the tests asserted
before issue 15 (120 s; 150 s for notebook 2), which are no longer checked by the suite.

Run: ``python bench/notebooks.py [--home HOME | --data-dir DIR] [--only 01 03]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: What tests/test_notebooks.py asserted until issue 15 moved the figure here (seconds).
FORMER_LIMITS = {"01": 120, "02": 150, "03": 120, "04": 120}


def _home(args: argparse.Namespace, root: Path):
    from features.settings import Settings
    from tests.api_fixtures import home_sharing
    from tests.test_notebooks import ingest_with_city_fixture

    home = root / "home"
    if args.home:
        return home_sharing(Settings.from_env(home=args.home), home)
    settings = Settings.from_env(home=str(home), data_dir=args.data_dir,
                                 database_url=f"sqlite:///{home}/vigie.sqlite")
    started = time.perf_counter()
    report = ingest_with_city_fixture(settings, root / "data_with_city")
    if report.outcome != "ok":
        raise SystemExit(f"ingest failed: {report.to_dict()}")
    print(f"ingest of {settings.data_dir} + the Rennes fixture: "
          f"{time.perf_counter() - started:.0f} s")
    return settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="an ingested VIGIE_HOME whose catalog is reused")
    parser.add_argument("--data-dir", default=None,
                        help="data to ingest when no --home (default: VIGIE_DATA_DIR or "
                             "../shared/data)")
    parser.add_argument("--only", nargs="*", default=None, help="notebook numbers, e.g. 01 03")
    args = parser.parse_args()

    from tests.test_notebooks import FAST, NOTEBOOK_DIR, NOTEBOOKS, execute

    with tempfile.TemporaryDirectory(prefix="vigie-bench-notebooks-") as tmp:
        settings = _home(args, Path(tmp))
        os.environ.update({"VIGIE_HOME": str(settings.home),
                           "VIGIE_DATA_DIR": str(settings.data_dir),
                           "VIGIE_DATABASE_URL": settings.database_url,
                           "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
        os.environ.pop("VIGIE_DASK_ADDRESS", None)
        print(f"{'notebook':32} {'seconds':>8} {'former limit':>13}")
        for path in NOTEBOOKS:
            number = path.stem[:2]
            if args.only and number not in args.only:
                continue
            started = time.perf_counter()
            execute(NOTEBOOK_DIR / path.name, FAST[path.stem])
            seconds = time.perf_counter() - started
            print(f"{path.stem:32} {seconds:8.1f} {FORMER_LIMITS.get(number, 0):12d}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
