"""``python -m service.job_worker FOLDER``: one job run in a process of its own.

Started by :func:`service.jobs.worker.run_in_worker` for heavy jobs (scenarios, forecasts,
backtests): the serving process only waits for it. Before importing anything heavy the process
limits its address space to ``VIGIE_JOB_MEMORY_LIMIT_MB`` (``RLIMIT_AS``), so that a run
needing too much memory gets a ``MemoryError`` here (or dies here) instead of growing the
server. The numeric libraries' thread counts come in the environment (``OMP_NUM_THREADS`` …,
set by the parent).

``FOLDER/request.pkl`` holds the job function, its parameters, the settings and the run's
identity (worker and fence); the answer goes to ``FOLDER/response.pkl``: ``{"ok": True,
"result": …}`` or ``{"ok": False, "type", "message", "traceback"}``. Logs go to stdout/stderr
(the parent relays them).
"""

from __future__ import annotations

import os
import resource
import sys


def limit_memory() -> int:
    """Apply ``VIGIE_JOB_MEMORY_LIMIT_MB`` to this process (0 or unset: no limit)."""
    megabytes = int(os.environ.get("VIGIE_JOB_MEMORY_LIMIT_MB") or 0)
    if megabytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))
    return megabytes


def _peak() -> str:
    try:
        with open("/proc/self/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        return (f"peak address space {fields['VmPeak'].strip()}, "
                f"peak resident {fields['VmHWM'].strip()}")
    except (OSError, KeyError):  # pragma: no cover - not Linux
        return "peak memory unknown"


def main(argv: list[str] | None = None) -> int:
    from pathlib import Path

    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0])
    limit_memory()

    import logging
    import pickle
    import traceback

    # As the command that started the server: Vigie's steps, warnings once, the libraries'
    # INFO logs (Alembic, Dask…) only when it ran with -v (VIGIE_LOG_LEVEL=DEBUG).
    from features.storage.atomic import atomic_write_bytes
    from service.cli import configure_logging

    configure_logging(os.environ.get("VIGIE_LOG_LEVEL", "").upper() == "DEBUG")
    try:
        request = pickle.loads((folder / "request.pkl").read_bytes())
        from service.jobs.worker import run_request

        answer = {"ok": True, "result": run_request(request)}
    except BaseException as exc:  # reported to the parent, whatever it is
        kind, message = type(exc).__name__, str(exc)[:4000]
        try:  # after a MemoryError even formatting may fail
            trace = "".join(traceback.format_exception(exc))[-4000:]
        except BaseException:
            trace = "(traceback unavailable)"
        del exc
        answer = {"ok": False, "type": kind, "message": message, "traceback": trace}
    logging.getLogger("service.job_worker").info("job worker %s done: %s", os.getpid(), _peak())
    atomic_write_bytes(folder / "response.pkl", pickle.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
