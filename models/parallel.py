"""Where fits run: in this process on one thread, or split over a Dask cluster.

:func:`run_models` fits and predicts several forecasters on one history (per-series models
split by territory over the workers); :class:`ShippedCubes` sends the cubes of date tasks
(backtests, calibration history, the refresh) to the workers; :func:`dask_client` gives the
cluster, :func:`one_thread` the single-threaded setting of every fit, here or on a worker.

What a worker receives is data and code, never a path: the histories and cubes the fits read
are sent with the tasks, so a worker needs no access to Vigie's home, store or data folder,
only the same Vigie package (``pip install .``) and its dependencies. Every task sent to a
worker runs under :func:`one_thread` (:func:`on_worker`), whatever the worker's environment.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from models.base import Forecaster

log = logging.getLogger(__name__)


@contextmanager
def dask_client(address: str | None = None, n_workers: int | None = None, nice: int = 0,
                dashboard: str | None = None):
    """A ``dask.distributed`` client: the cluster at ``address`` or a LocalCluster.

    Workers are processes with one thread each: statsmodels and Stan fits hold the GIL. Their
    logging follows this process's (``VIGIE_LOG_LEVEL``, set by the command line: warnings
    once each unless ``-v``). ``nice``: lower the local workers' CPU priority (a background
    job leaves the serving process its share). ``dashboard``: where the LocalCluster serves
    its dashboard (``":8787"``, ``":0"``); None or empty: none (bokeh's start costs each
    local cluster 1-2 s of ``make run``'s two; a remote scheduler serves its own).
    """
    from dask.distributed import Client, LocalCluster

    if address:
        try:
            client = Client(address)
        except (OSError, ValueError) as exc:  # unreachable, or not an address
            from features.errors import SchedulerUnreachable

            raise SchedulerUnreachable(f"cannot reach the Dask scheduler at {address!r} "
                                       f"(VIGIE_DASK_ADDRESS): {exc}") from exc
        with client:
            yield client
        return
    n = n_workers or max(1, min(os.cpu_count() or 1, 8))
    with (
        LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True,
            # Without a dashboard the scheduler still serves its health routes: on a free
            # port, not on 8787, which another cluster may hold.
            dashboard_address=dashboard or ":0", scheduler_kwargs={"dashboard": bool(dashboard)},
        ) as cluster,
        Client(cluster) as client,
    ):
        client.subscribe_topic(LOG_TOPIC, _Relay())
        client.run(_worker_logging, os.environ.get("VIGIE_LOG_LEVEL", "WARNING"), nice)
        try:
            yield client
        finally:
            _drain_logs(client)


@contextmanager
def one_thread():
    """Fit with one BLAS/OpenMP thread, here or on a Dask worker (:func:`on_worker`).

    Each fit runs on one core already (one thread per worker, one worker per core); letting
    OpenMP and BLAS start a thread per core inside it oversubscribes the machine: scikit-learn's
    gradient boosting on two OpenMP threads of a busy 2-core machine spun 10-40x slower (one
    date of emergency visits: 56 s instead of 6), and a département forecast on workers started
    without the nanny's ``OMP_NUM_THREADS=1`` ran for minutes instead of seconds.
    """
    # threadpoolctl limits the libraries already loaded: load scikit-learn's OpenMP first.
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield None


def on_worker(fn, *args, **kwargs):
    """Call ``fn`` under :func:`one_thread`: what every task sent to a Dask worker runs (the
    limit then holds on any worker, with or without a nanny setting ``OMP_NUM_THREADS``)."""
    with one_thread():
        return fn(*args, **kwargs)


#: The Dask event topic on which workers send Vigie's log records to the client.
LOG_TOPIC = "vigie-log"
_VIGIE_LOGGERS = ("models", "features", "scenarios", "service")
_PLAIN = (str, int, float, bool, type(None))


def repeat_key(record: logging.LogRecord) -> tuple:
    """One line per fact, as the command line decides it (service.cli.repeat_key): logger,
    message template and its arguments but the detail (the last of several; the numbers of a
    single one)."""
    args = tuple(map(str, record.args)) if isinstance(record.args, tuple) else ()
    kept = args[:-1] if len(args) > 1 else tuple(re.sub(r"\d+", "#", a) for a in args)
    return (record.name, str(record.msg), *kept)


class _Once(logging.Filter):
    """A repeated warning once (errors always)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = repeat_key(record)
        if record.levelno != logging.WARNING or key not in self.seen:
            self.seen.add(key)
            return True
        return False


class _ToClient(logging.Handler):
    """In a worker: sends a record to the client (:data:`LOG_TOPIC`), where :class:`_Relay`
    logs it once for the whole cluster. Its template and arguments travel when they are plain
    values (the client's repeat key is the worker's), else the formatted message."""

    def __init__(self, worker) -> None:
        super().__init__()
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            plain = isinstance(record.args, tuple) and all(isinstance(a, _PLAIN)
                                                           for a in record.args)
            attrs = {k: v for k, v in record.__dict__.items() if isinstance(v, _PLAIN)}
            attrs.update(msg=str(record.msg) if plain else record.getMessage(),
                         args=list(record.args) if plain else None,
                         exc_text=self.formatter.formatException(record.exc_info)
                         if record.exc_info and self.formatter else record.exc_text)
            attrs.pop("message", None)
            self.worker.log_event(LOG_TOPIC, attrs)
        except Exception:  # logging must never fail a fit
            self.handleError(record)


class _Relay:
    """On the client: a worker's record, logged here once per cluster (a signal dropped at
    every date on every worker is one fact), by the logger of its name."""

    def __init__(self) -> None:
        self.once = _Once()

    def __call__(self, event) -> None:
        _, attrs = event
        attrs = dict(attrs)
        if attrs.get("args") is not None:
            attrs["args"] = tuple(attrs["args"])
        record = logging.makeLogRecord(attrs)
        if self.once.filter(record):
            logging.getLogger(record.name).handle(record)


def _drain_logs(client, wait: float = 0.3) -> None:
    """Let the workers' last records reach the client before it closes (events travel through
    the scheduler, behind the results)."""
    import time

    try:
        client.run(os.getpid)
    except Exception:  # a broken cluster: nothing more will come
        return
    time.sleep(wait)


def _worker_logging(level: str, nice: int = 0, dask_worker=None) -> None:
    """In a Dask worker: Vigie's records at ``level`` sent to the client (:class:`_ToClient`,
    each warning once per worker, once per run on the client: :class:`_Relay`); libraries'
    logs printed by the worker only when ``level`` is DEBUG."""
    for name in _VIGIE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _ToClient) for h in logger.handlers):
            handler = _ToClient(dask_worker)
            handler.setFormatter(logging.Formatter())
            handler.addFilter(_Once())
            logger.addHandler(handler)
            logger.propagate = False  # printed by the client, not a second time here
    root = logging.getLogger()
    if level.upper() == "DEBUG" and not any(getattr(h, "_vigie", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._vigie = True
        root.addHandler(handler)
    numeric = getattr(logging, level.upper(), logging.WARNING)
    for name in ("models", "features", "scenarios", "service"):
        logging.getLogger(name).setLevel(numeric)
    if nice:
        os.nice(nice)


def _fit_predict(model: Forecaster, y: xr.DataArray, X: xr.Dataset | None, steps: int,
                 needed: set[int] | None = None):
    fitted = model.clone().fit(y, X)
    if needed and getattr(fitted, "predicts_needed_steps", False):
        return fitted.predict(steps, needed=needed)
    return fitted.predict(steps)


def run_models(
    models: dict[str, Forecaster],
    y: xr.DataArray,
    X: xr.Dataset | None,
    steps: int,
    client: Any = None,
    needed: set[int] | None = None,
) -> dict[str, xr.DataArray]:
    """Fit and predict several models; per-series models are split over Dask workers.

    ``needed``: the steps that will be kept (a model that can skips fitting the others).

    Returns
    -------
    name → forecast (territory, horizon=step, quantile).
    """
    if client is None:
        return {name: _fit_predict(m, y, X, steps, needed) for name, m in models.items()}
    n_chunks = max(1, 2 * len(client.scheduler_info()["workers"]))
    codes = list(y["territory"].values)
    chunks = [c for c in np.array_split(np.array(codes, dtype=object), n_chunks) if len(c)]
    futures = {}
    y_f = client.scatter(y, broadcast=True)
    x_f = client.scatter(X, broadcast=True) if X is not None else None
    for name, model in models.items():
        if model.is_global or len(chunks) == 1:
            futures[name] = [client.submit(on_worker, _fit_predict, model, y_f, x_f, steps,
                                           needed, pure=False)]
        else:
            futures[name] = [
                client.submit(on_worker, _fit_chunk, model, y_f, x_f, steps, list(chunk),
                              needed, pure=False)
                for chunk in chunks
            ]
    out = {}
    for name, futs in futures.items():
        parts = client.gather(futs)
        out[name] = parts[0] if len(parts) == 1 else xr.concat(parts, dim="territory")
    return out


def _fit_chunk(model, y, X, steps, codes, needed=None):
    sub_x = X.sel(territory=codes) if X is not None and "territory" in X.dims else X
    return _fit_predict(model, y.sel(territory=codes), sub_x, steps, needed)


class ShippedCubes:
    """The cubes date tasks read, sent to the Dask workers as data (never a path).

    A date task reads the cube of one frequency as known on its date (``opener(frequency,
    as_of)``: the latest vintage issued by then, cut before that date). The tasks reading one
    vintage share one copy of it (the longest cut they ask for: the others are its first
    dates), scattered when their turn comes, and each task takes its own dates on the worker.

    Memory: a vintage's tasks are submitted together, and the next vintage's only while fewer
    than two tasks per worker are waiting; a vintage read by at least as many tasks as there
    are workers is sent to every worker, one read by fewer to one (its tasks run there or
    fetch it). A vintage's copy is dropped when its last task ends. So a worker holds a few
    vintages at a time (about 45 MB each for the real cube's daily and weekly datasets), not
    every vintage a track record over months of daily vintages reads; this process opens each
    vintage when its tasks are submitted (through the opener's cache).
    """

    def __init__(self, client: Any, opener: Any) -> None:
        self.client, self.opener = client, opener

    def run(self, calls: list[tuple]) -> Any:
        """Run each call ``(fn, frequency, as_of, args)`` as ``fn(opener, *args)`` on a worker,
        ``opener`` giving the cube of ``frequency`` as of ``as_of``; yield ``(index of the
        call, its finished future)`` as each ends (an error stays in its future)."""
        from dask.distributed import as_completed

        cuts, sources = self._plan(dict.fromkeys((f, _stamp(a)) for _, f, a, _ in calls))
        groups: dict[tuple, list[int]] = {}
        for i, (_, frequency, as_of, _) in enumerate(calls):
            groups.setdefault(cuts[(frequency, _stamp(as_of))][0], []).append(i)
        waiting = list(groups.items())
        workers = max(1, len(self.client.scheduler_info()["workers"]))
        data: dict[tuple, Any] = {}
        left: dict[tuple, int] = {}
        index: dict[str, tuple[int, tuple]] = {}
        running = as_completed()

        def admit() -> None:
            while waiting and (not left or sum(left.values()) < 2 * workers):
                group, members = waiting.pop(0)
                data[group] = self.client.scatter(self.opener(*sources[group]), hash=False,
                                                  broadcast=len(members) >= workers)
                left[group] = len(members)
                for i in members:
                    fn, frequency, as_of, args = calls[i]
                    _, n_dates, attrs = cuts[(frequency, _stamp(as_of))]
                    future = self.client.submit(on_worker, _on_cube, fn, data[group], n_dates,
                                                attrs, frequency, _stamp(as_of), *args,
                                                pure=False)
                    index[future.key] = (i, group)
                    running.add(future)

        admit()
        for future in running:
            i, group = index.pop(future.key)
            left[group] -= 1
            if not left[group]:
                del left[group], data[group]  # the workers may drop this vintage
                admit()
            yield i, future

    def _plan(self, keys: Any) -> tuple[dict, dict]:
        """Per (frequency, as_of): its vintage group, number of dates and attributes; per
        group, the (frequency, as_of) whose cut holds every date the others read."""
        cuts: dict[tuple, tuple] = {}
        longest: dict[tuple, tuple] = {}
        for key in keys:
            ds = self.opener(*key)
            vintage = str(ds.attrs.get("vintage_id", ""))
            group = (key[0], vintage) if vintage else key
            cuts[key] = (group, ds["date"].values, dict(ds.attrs))
            if group not in longest or ds.sizes["date"] > longest[group][0]:
                longest[group] = (ds.sizes["date"], key)
        sources = {group: key for group, (_, key) in longest.items()}
        for key, (group, dates, attrs) in list(cuts.items()):
            full = cuts[sources[group]][1]
            if len(dates) > len(full) or (full[:len(dates)] != dates).any():
                # Not the first dates of its vintage's longest cut: sent as it is.
                cuts[key], sources[(*key, "own")] = ((*key, "own"), dates, attrs), key
        return {key: (group, len(dates), attrs) for key, (group, dates, attrs)
                in cuts.items()}, sources


def _stamp(as_of: Any) -> pd.Timestamp | None:
    return pd.Timestamp(as_of) if as_of is not None else None


class _OneCube:
    """The opener of a task on a worker: the one cube it was sent."""

    def __init__(self, ds: xr.Dataset, frequency: str, as_of: pd.Timestamp | None) -> None:
        self.ds, self.frequency, self.as_of = ds, frequency, as_of

    def __call__(self, frequency: str, as_of: Any = None) -> xr.Dataset:
        asked = pd.Timestamp(as_of) if as_of is not None else None
        if frequency != self.frequency or asked != self.as_of:
            raise ValueError(f"this task was sent the {self.frequency} cube as of "
                             f"{self.as_of}, not the {frequency} cube as of {asked}")
        return self.ds


def _on_cube(fn, cube, n_dates, attrs, frequency, as_of, *args):
    ds = cube.isel(date=slice(0, n_dates)).copy(deep=False)
    ds.attrs = dict(attrs)
    return fn(_OneCube(ds, frequency, as_of), *args)


def _progress(items, enabled, desc):
    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=not enabled, leave=False)


def _progress_gather(finished, n, enabled):
    """The results of ``n`` calls in call order, from ``(index, future)`` pairs as they end
    (:meth:`ShippedCubes.run`), with a progress bar."""
    results = {}
    bar = _progress(range(n), enabled, "backtest")
    for i, fut in finished:
        results[i] = fut.result()
        bar.update(1)
    bar.close()
    return [results[i] for i in range(n)]
