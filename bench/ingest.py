"""Benchmark a full ingest against the floor of reading the same raw files with pandas.

Prints wall time and peak traced memory of ``run_ingest`` (every source of the data directory →
validated frames → cube → vintage on disk + catalog row) next to plain ``pandas.read_csv`` of the
same raw files, in the same process, and their ratio. Machines are noisy: each figure is the
median of ``--repeat`` runs, alternating the two.

Run: ``python bench/ingest.py [--data-dir DIR] [--repeat 3]``. Aim: ratio under 3.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from features.ingest import run_ingest
from features.settings import Settings


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def peak_memory(fn) -> float:
    """Peak MiB of Python-traced allocations (numpy and pandas buffers included) of one call.

    Traced separately from the timings: tracing slows allocation-heavy code several-fold.
    """
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Settings.from_env().data_dir)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env(home=home, data_dir=str(args.data_dir),
                                     database_url=f"sqlite:///{home}/vigie.sqlite")
        report = run_ingest(settings)  # warm-up: imports, file cache, catalog schema
        files = [args.data_dir / name for name in report_files(report, settings)]

        def floor() -> None:
            for path in files:
                pd.read_csv(path)

        def ingest() -> None:
            result = run_ingest(settings, force=True)
            assert result.outcome == "ok", result.message

        floor_times, ingest_times = [], []
        for _ in range(args.repeat):
            floor_times.append(timed(floor))
            ingest_times.append(timed(ingest))
        f_mem, i_mem = peak_memory(floor), peak_memory(ingest)

    f_time = statistics.median(floor_times)
    i_time = statistics.median(ingest_times)
    size = sum(p.stat().st_size for p in files) / 2**20
    print(f"raw files: {len(files)} files, {size:.1f} MiB, in {args.data_dir}")
    print(f"{'':<28}{'time (s)':>10}{'peak memory (MiB)':>20}")
    print(f"{'pandas.read_csv (floor)':<28}{f_time:>10.2f}{f_mem:>20.1f}")
    print(f"{'full ingest (vigie)':<28}{i_time:>10.2f}{i_mem:>20.1f}")
    print(f"{'ratio ingest / floor':<28}{i_time / f_time:>10.2f}{i_mem / f_mem:>20.2f}")
    print(f"median of {args.repeat} runs each; aim: time ratio under 3")


def report_files(report, settings) -> list[str]:
    from features.store import CubeStore

    return sorted(CubeStore(settings).current_vintage()["files"])


if __name__ == "__main__":
    main()
