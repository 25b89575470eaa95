"""Warnings logged on Dask workers reach the terminal once per run, not once per worker
(models.parallel: workers send Vigie's records to the client, which logs each fact once)."""

from __future__ import annotations

import logging

import pytest

from models.parallel import dask_client

pytest.importorskip("distributed")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def test_a_warning_of_every_worker_and_date_is_logged_once_by_the_client():
    collect = _Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    try:
        with dask_client(n_workers=2) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            log = logging.getLogger("models.signals").warning
            for periods in (27, 26, 25):  # the same fact at three dates, on both workers
                client.run(log, "%s: leading signal %s dropped (%d periods of history)",
                           "gbm", "positivity_rate_7d", periods)
            client.run(log, "%s: leading signal %s dropped (%d periods of history)",
                       "gbm", "incidence_rate_7d", 27)  # another fact
            client.run(logging.getLogger("models.forecasting").error, "fit failed: %s",
                       "singular matrix")  # errors are never folded
            client.run(logging.getLogger("models.signals").info, "quiet at WARNING")
    finally:
        root.removeHandler(collect)
    signals = [line for line in collect.lines if "leading signal" in line]
    assert signals == [
        "WARNING models.signals: gbm: leading signal positivity_rate_7d dropped (27 periods "
        "of history)",
        "WARNING models.signals: gbm: leading signal incidence_rate_7d dropped (27 periods "
        "of history)"]
    assert collect.lines.count("ERROR models.forecasting: fit failed: singular matrix") == 2
    assert not any("quiet" in line for line in collect.lines)
