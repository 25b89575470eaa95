"""Maintenance: apply the retention policy (``python -m service prune`` and the daily ``prune``
job, :mod:`service.retention`)."""

from __future__ import annotations

from typing import Any


def prune(settings: Any, *, dry_run: bool = False, retain_vintages: int | None = None,
          retain_forecast_runs: int | None = None) -> Any:
    """Delete the cube vintages and forecast runs the policy lets go and stale temporary
    entries (``dry_run``: only say which; ``None``: the settings' numbers to keep); the
    :class:`service.retention.Plan` (its ``summary()`` is the job's result)."""
    from service.retention import prune as apply_policy

    return apply_policy(settings, dry_run=dry_run, retain_vintages=retain_vintages,
                        retain_forecast_runs=retain_forecast_runs)
