"""Use cases: what Vigie does, once, whoever asks (command line, scheduled job, notebook).

A use case takes settings and plain parameters, calls the pipeline (``features``, ``models``,
``scenarios``) and the stores, writes the audit trail, and reports progress through a
:class:`Progress`; the command line and the jobs only parse their arguments and render the
outcome. One function per thing a user does, called alike by the command line, the jobs
(:mod:`service.job_bodies`) and the API; a use case that publishes writes its own audit rows,
whoever calls it. Modules: :mod:`~service.usecases.ingest` (ingest),
:mod:`~service.usecases.forecasts` (forecast one target, publish forecasts, the retrospective
track record), :mod:`~service.usecases.backtests` (backtest, score, the leaderboard),
:mod:`~service.usecases.scenarios` (run, submit, publish scenario runs),
:mod:`~service.usecases.cube` (describe, export), :mod:`~service.usecases.maintenance` (prune),
:mod:`~service.usecases.tokens` (API tokens); the reads the API and the dashboard answer with:
:mod:`~service.usecases.forecast_reads`, :mod:`~service.usecases.risk_reads`,
:mod:`~service.usecases.data_reads`, :mod:`~service.usecases.alerts`,
:mod:`~service.usecases.accuracy`.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("service.usecases")


class Progress:
    """How a use case tells what it is doing: one line per step, a bar on long steps.

    This default logs each step at INFO and ignores bars (jobs, tests); the command line
    renders bars with tqdm (:class:`service.cli.progress.TerminalProgress`).
    """

    def step(self, message: str) -> None:
        log.info(message)

    def bar(self, total: int, description: str) -> Any:
        return _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass
