"""The scheduler lease (:data:`~service.jobs.spec.SCHEDULER_LOCK`): the leases of
:mod:`features.storage.leases` with the scheduler's row as their default name."""

from __future__ import annotations

import sqlalchemy as sa

from features.storage import leases
from service.jobs.spec import SCHEDULER_LOCK


def acquire_lease(engine: sa.Engine, holder: str, ttl: float,
                  name: str = SCHEDULER_LOCK) -> int | None:
    """:func:`features.storage.leases.acquire_lease`: the lease's epoch when ``holder`` has
    it, else None."""
    return leases.acquire_lease(engine, holder, ttl, name)


def try_lock(engine: sa.Engine, holder: str, ttl: float, name: str = SCHEDULER_LOCK) -> bool:
    """Take or renew the lease ``name`` for ``ttl`` seconds; True when ``holder`` has it."""
    return leases.try_lock(engine, holder, ttl, name)


def release_lock(engine: sa.Engine, holder: str, name: str = SCHEDULER_LOCK) -> None:
    """Give the lease up (expired, never deleted: its epoch never goes back)."""
    leases.release_lock(engine, holder, name)


def lock_holder(engine: sa.Engine, name: str = SCHEDULER_LOCK) -> dict | None:
    """The lease's row and whether it is alive; None when never taken."""
    return leases.lock_holder(engine, name)
