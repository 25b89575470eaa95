"""The rate limiter's in-process storage (``memory://``, one process, no Redis) without a thread
per burst of requests.

``limits``' :class:`~limits.storage.MemoryStorage` sweeps expired counters with a
``threading.Timer`` of 10 ms that it starts again on a counter increment whenever the previous
one has finished: under steady load, a new OS thread every 10 ms, started on the request path
(``Thread.start`` waits for the thread to run). Profiled with the Flask test client, that was
~20 % of an authenticated cached read. Counters expire lazily anyway (``get`` drops an expired
counter before reading it): the sweep only frees memory. So this storage sweeps from one daemon
thread, once a second, and never starts a thread on the request path. Registered as the scheme
``vigie-memory://``; :mod:`service.ratelimit` uses it in place of ``memory://``.
"""

from __future__ import annotations

import threading
import time
import weakref

from limits.storage import MemoryStorage

SWEEP_EVERY = 1.0  # seconds


class SweptMemoryStorage(MemoryStorage):
    STORAGE_SCHEME = ["vigie-memory"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        ref = weakref.ref(self)
        threading.Thread(target=_sweep, args=(ref,), name="ratelimit-sweep",
                         daemon=True).start()

    def _MemoryStorage__schedule_expiry(self) -> None:  # the base class's private hook
        """Nothing on the request path: :func:`_sweep` does it once a second."""


def _sweep(ref: weakref.ref) -> None:
    while True:
        time.sleep(SWEEP_EVERY)
        storage = ref()
        if storage is None:  # the app and its limiter are gone
            return
        storage._MemoryStorage__expire_events()
        del storage
