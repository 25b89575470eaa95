"""The public version of a forecast's quantiles (docs/DISCLOSURE.md): never more precise than the
observation of the same cell, no small count shown."""

from __future__ import annotations


def forecast_public(quantiles: list[float | None], median: float | None, observed_hidden: bool,
                    threshold: float, count: bool) -> tuple[list[float | None], bool]:
    """The public quantile values of one forecast (location × target date) and whether any
    was hidden. For a count target: everything is hidden when the observation of the same
    cell is hidden (never more precise than the observation) or the median is in
    ``(0, threshold)``; otherwise each quantile value in ``(0, threshold)`` is hidden."""
    if not count:
        return list(quantiles), False
    if observed_hidden or (median is not None and 0 < median < threshold):
        return [None] * len(quantiles), True
    shown = [None if v is not None and 0 < v < threshold else v for v in quantiles]
    return shown, any(a is None and b is not None for a, b in zip(shown, quantiles,
                                                                  strict=True))
