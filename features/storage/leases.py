"""Leases: rows of ``service_locks`` taken by compare-and-set, held for a few seconds and
renewed; a lease's ``epoch`` grows at every change of holder (a fencing token). The scheduler's
(:mod:`service.jobs`, fencing its jobs) and the uploads lock (:func:`features.uploads.locked`)
are two of them: one row per database, so every process and host sharing it waits on it."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from features.storage.schema import as_utc, locks, utcnow


def acquire_lease(engine: sa.Engine, holder: str, ttl: float, name: str) -> int | None:
    """Take or renew the lease ``name`` for ``ttl`` seconds.

    Returns
    -------
    The lease's epoch when ``holder`` has it (the fencing token: it grows by one whenever the
    lease changes hands, and a renewal keeps it), else None.
    """
    now = utcnow()
    expires = now + dt.timedelta(seconds=ttl)
    mine = locks.c.holder == holder
    with engine.begin() as conn:
        # Every right-hand side reads the row as it was before the update.
        renewed = conn.execute(locks.update().where(
            locks.c.name == name, sa.or_(mine, locks.c.expires_at < now)
        ).values(acquired_at=sa.case((mine, locks.c.acquired_at), else_=now),
                 epoch=sa.case((mine, locks.c.epoch), else_=locks.c.epoch + 1),
                 holder=holder, expires_at=expires)).rowcount
        if renewed:
            return int(conn.execute(sa.select(locks.c.epoch).where(locks.c.name == name))
                       .scalar_one())
    try:
        with engine.begin() as conn:
            conn.execute(locks.insert().values(name=name, holder=holder, acquired_at=now,
                                               expires_at=expires, epoch=1))
        return 1
    except sa.exc.IntegrityError:
        return None


def try_lock(engine: sa.Engine, holder: str, ttl: float, name: str) -> bool:
    """Take or renew the lease ``name`` for ``ttl`` seconds; True when ``holder`` has it."""
    return acquire_lease(engine, holder, ttl, name) is not None


def release_lock(engine: sa.Engine, holder: str, name: str) -> None:
    """Give the lease up: it is expired, not deleted, so that its epoch never goes back."""
    with engine.begin() as conn:
        conn.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                     .values(expires_at=utcnow() - dt.timedelta(seconds=1)))


def lock_holder(engine: sa.Engine, name: str) -> dict | None:
    """The lease's row (holder, acquired_at, expires_at, epoch) and whether it is ``alive``;
    None when it was never taken."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(locks).where(locks.c.name == name)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["expires_at"] = as_utc(out["expires_at"])
    out["acquired_at"] = as_utc(out["acquired_at"])
    out["alive"] = out["expires_at"] > utcnow()
    return out

