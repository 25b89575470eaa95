"""Fencing of publications: a job publishes only while it still owns its run.

A scheduled job runs under the scheduler lease (see :mod:`service.jobs`). If its process stalls
long enough for the lease to expire, another process takes the lease over, marks the run
interrupted and runs it again; when the stalled process wakes up, what it computed must not
reach the public. So while a job function runs, the job installs a *fence* here (a context
variable: it follows the job's thread, and is absent everywhere else), and every step that makes
an output public goes through it:

* a switch made by renaming a file or folder (forecast "latest" pointer, scenario result,
  leaderboard) runs inside :func:`publishing`;
* a switch made by a database write (a cube vintage entering the catalog) calls :func:`check`
  with the connection of the transaction that writes it.

Both verify, inside one database transaction, that the run is still ``running`` under this
worker and lease epoch, and raise :class:`FencedError` otherwise. The check also locks the run's
row (and, on PostgreSQL, the lease's row; SQLite locks the whole database for the write), so no
takeover can slip in between the check and the switch: the new leader's lease update waits for
the switch to be done. Inside :func:`publishing` the block must not write to the database through
another connection (SQLite would wait on the lock held by the check).

Outside jobs (command line, notebooks, tests) no fence is installed and both are no-ops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol

import sqlalchemy as sa


class FencedError(RuntimeError):
    """The job no longer owns its run (lease lost, run taken over): it must not publish."""


class Fence(Protocol):
    """What a job installs: its database and a check of its ownership."""

    engine: sa.Engine

    def check(self, conn: sa.Connection) -> None:
        """Raise :class:`FencedError` unless the run is still ours (locks the run's row)."""


_FENCE: ContextVar[Fence | None] = ContextVar("vigie_publication_fence", default=None)


@contextlib.contextmanager
def installed(fence: Fence | None) -> Iterator[None]:
    """Install ``fence`` for the code run inside (a job function)."""
    token = _FENCE.set(fence)
    try:
        yield
    finally:
        _FENCE.reset(token)


def current() -> Fence | None:
    return _FENCE.get()


def check(conn: sa.Connection | None = None) -> None:
    """Raise :class:`FencedError` if the running job lost its run; no-op outside jobs.

    With ``conn`` (a transaction on the job database), the check holds until that transaction
    ends: write the publication in it.
    """
    fence = _FENCE.get()
    if fence is None:
        return
    if conn is not None:
        fence.check(conn)
        return
    with fence.engine.begin() as own:
        fence.check(own)


@contextlib.contextmanager
def publishing() -> Iterator[None]:
    """Run an atomic switch (a rename) only if the job still owns its run, and keep any other
    worker from taking the run over until it is done; no-op outside jobs."""
    fence = _FENCE.get()
    if fence is None:
        yield
        return
    with fence.engine.begin() as conn:
        fence.check(conn)
        yield
