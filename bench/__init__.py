"""Benchmarks: scripts run as ``python bench/<name>.py`` (a package only so that the layer
contract in pyproject.toml sees what they import: they sit above the service)."""

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall seconds of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
