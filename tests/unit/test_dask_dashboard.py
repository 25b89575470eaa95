"""A local Dask cluster serves its dashboard (bokeh, 1-3 s of each start) only when
``VIGIE_DASK_DASHBOARD`` asks for it; the log says where it is, or that it is off."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

import pytest

from features.settings import Settings
from service.usecases.forecasts import fit_cluster


def _status(client) -> int:
    port = client.scheduler_info()["services"]["dashboard"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.parametrize("dashboard", ["", ":0"])
def test_a_local_cluster_serves_a_dashboard_only_when_asked(dashboard, tmp_path, caplog):
    settings = Settings.from_env(home=tmp_path, dask_dashboard=dashboard)
    if settings.dask_address:
        pytest.skip("VIGIE_DASK_ADDRESS is set: not a local cluster")
    with caplog.at_level(logging.INFO, logger="service.usecases.forecasts"), \
            fit_cluster(settings) as client:
        status = _status(client)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Dask:")]
    if dashboard:
        assert status == 200 and "dashboard http://" in said[0], said
    else:
        assert status == 404, status
        assert said[0].endswith("(local cluster), dashboard off (VIGIE_DASK_DASHBOARD unset)"), \
            said
