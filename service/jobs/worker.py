"""Isolated job runs: a child process (``python -m service.job_worker``) per run, with an
address-space limit (``VIGIE_JOB_MEMORY_LIMIT_MB``) and its BLAS/OpenMP threads set
(``VIGIE_JOB_THREADS``); :func:`run_request` is the child's side."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from features.fencing import FencedError
from features.settings import PROJECT_ROOT
from service.jobs.context import JobContext, call
from service.jobs.spec import JobSpec, WorkerError

log = logging.getLogger("service.jobs")

#: Thread-count variables of the numeric libraries (OpenMP, OpenBLAS, MKL, numexpr, …).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS")
DEFAULT_MEMORY_LIMIT_MB = 4096
WATCH_EVERY = 5.0  # seconds between checks that a worker process's run is still ours


def isolation() -> str:
    """``process`` (default): isolated jobs run in a child process; ``thread``: in the worker
    thread (``VIGIE_JOB_ISOLATION``)."""
    return "thread" if os.environ.get("VIGIE_JOB_ISOLATION", "").lower() == "thread" \
        else "process"


def memory_limit_mb() -> int:
    """Address-space limit of a job's worker process (``VIGIE_JOB_MEMORY_LIMIT_MB``; 0: none)."""
    return int(os.environ.get("VIGIE_JOB_MEMORY_LIMIT_MB") or DEFAULT_MEMORY_LIMIT_MB)


def job_threads() -> int:
    """BLAS/OpenMP threads of a job's worker process (``VIGIE_JOB_THREADS``; default half the
    CPUs, so that the serving process keeps some)."""
    value = os.environ.get("VIGIE_JOB_THREADS")
    return max(1, int(value) if value else (os.cpu_count() or 2) // 2)


def run_in_worker(ctx: JobContext, spec: JobSpec, params: dict) -> dict:
    """Run ``spec.func(ctx, **params)`` in a child process (``python -m service.job_worker``).

    The child gets the memory limit and thread counts in its environment, rebuilds the context
    (its own database engine, the same run, worker and fence) and publishes under the same
    fence. While it runs, this thread checks every few seconds that the run is still ours and
    kills the child otherwise.

    Raises
    ------
    FencedError
        The run was lost meanwhile.
    WorkerError
        The job failed in the child (its error and traceback), ran out of memory, or the child
        died (its exit code or signal and its last output).
    """
    limit, threads = memory_limit_mb(), job_threads()
    env = {**os.environ, "VIGIE_JOB_MEMORY_LIMIT_MB": str(limit),
           **{name: str(threads) for name in THREAD_VARS},
           "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT)] + [
               p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    request = {"func": spec.func, "params": params, "settings": ctx.settings,
               "run_id": ctx.run_id, "attempt": ctx.attempt, "requested_by": ctx.requested_by,
               "worker": ctx.worker, "fence": ctx.fence}
    with tempfile.TemporaryDirectory(prefix=f"vigie-job-{ctx.run_id}-") as tmp:
        folder = Path(tmp)
        (folder / "request.pkl").write_bytes(pickle.dumps(request))
        with open(folder / "output.log", "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "service.job_worker", str(folder)],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=str(PROJECT_ROOT))
        log.info("job %s run %s: worker process %s (memory limit %s MB, %s threads)",
                 spec.name, ctx.run_id, proc.pid, limit or "no", threads)
        try:
            _watch(proc, ctx)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output = (folder / "output.log").read_bytes().decode("utf-8", "replace")
        if output.strip():
            log.info("job %s run %s worker output:\n%s", spec.name, ctx.run_id,
                     output[-20000:].rstrip())
        answer_path = folder / "response.pkl"
        answer = pickle.loads(answer_path.read_bytes()) if answer_path.exists() else None
    if answer is not None and answer["ok"]:
        return answer["result"]
    raise _worker_failure(answer, proc.returncode, output, limit)


def _watch(proc: subprocess.Popen, ctx: JobContext) -> None:
    """Wait for the child, checking every :data:`WATCH_EVERY` seconds that the run is still
    ours; kill it and raise :class:`FencedError` when it is not."""
    while True:
        try:
            proc.wait(timeout=WATCH_EVERY)
            return
        except subprocess.TimeoutExpired:
            pass
        try:
            owned = ctx.still_owns()
        except Exception:  # database away: the child's own checks still fence it
            log.exception("job run %s: ownership check failed", ctx.run_id)
            owned = True
        if not owned:
            proc.kill()
            proc.wait()
            raise FencedError(f"fenced: job run {ctx.run_id} was lost by {ctx.worker} "
                              f"(lease epoch {ctx.fence}) while its worker process "
                              f"{proc.pid} ran; the process was stopped")


def _worker_failure(answer: dict | None, returncode: int, output: str,
                    limit: int) -> Exception:
    tail = "\n".join(output.rstrip().splitlines()[-30:])
    if answer is not None:
        kind, message = answer["type"], answer["message"]
        if kind == "FencedError":
            return FencedError(message)
        if kind == "MemoryError" or _out_of_memory(message):
            return WorkerError(
                f"out of memory: the job's worker process went over its limit of {limit} MB "
                f"(VIGIE_JOB_MEMORY_LIMIT_MB) and stopped; the service was not affected. "
                f"{kind}: {message}\n\nworker traceback:\n{answer['traceback']}")
        return WorkerError(f"{kind}: {message}\n\nworker traceback:\n{answer['traceback']}")
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = (f"; SIGKILL usually means it ran out of memory (limit {limit} MB, "
                "VIGIE_JOB_MEMORY_LIMIT_MB)" if -returncode == signal.SIGKILL else "")
        return WorkerError(f"the job's worker process was killed by {name}{hint}; the service "
                           f"was not affected.\n\nlast output:\n{tail}")
    return WorkerError(f"the job's worker process exited with code {returncode} without an "
                       f"answer (memory limit {limit} MB).\n\nlast output:\n{tail}")


def _out_of_memory(message: str) -> bool:
    text = message.lower()
    return any(s in text for s in ("cannot allocate memory", "out of memory",
                                   "unable to allocate", "failed to map segment",
                                   "memory allocation failed"))


def run_request(request: dict) -> dict:
    """The child's side of :func:`run_in_worker` (called by :mod:`service.job_worker`)."""
    from features.catalog import get_engine

    settings = request["settings"]
    ctx = JobContext(settings, get_engine(settings.database_url), request["run_id"],
                     request["attempt"], request.get("requested_by"),
                     worker=request.get("worker"), fence=request.get("fence"))
    return call(ctx, request["func"], request.get("params") or {})

