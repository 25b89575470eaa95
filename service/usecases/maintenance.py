"""Maintenance: apply the retention policy (``python -m service prune`` and the daily ``prune``
job, :mod:`service.retention`)."""

from __future__ import annotations

from typing import Any


def prune(settings: Any, *, dry_run: bool = False, retain_vintages: int | None = None,
          retain_forecast_runs: int | None = None, actor: str = "cli") -> Any:
    """Delete the cube vintages, forecast runs and backtest plans and files the policy lets
    go and stale temporary entries (``dry_run``: only say which; ``None``: the settings'
    numbers to keep); the
    :class:`service.retention.Plan` (its ``summary()`` is the job's result, and the details
    of the ``prune`` audit row)."""
    from features.catalog import get_engine
    from service.audit import record
    from service.retention import prune as apply_policy

    plan = apply_policy(settings, dry_run=dry_run, retain_vintages=retain_vintages,
                        retain_forecast_runs=retain_forecast_runs)
    if not dry_run:  # audited when something may have been deleted, not for a preview
        record(get_engine(settings.database_url), event="prune", actor=actor, role="admin",
               details=plan.summary())
    return plan
