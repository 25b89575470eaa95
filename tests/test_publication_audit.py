"""Every publication writes exactly one audit row carrying the cube vintage and the model
version the forecast was made from: ``forecast-all``, ``forecast --save`` and the ``forecast``
job (which the notebooks run) all publish through :mod:`service.usecases.forecasts`.

The home holds two vintages: the forecasts are made as of 2021-01-04, which reads the older
one, so reporting the current vintage instead would fail these tests."""

from __future__ import annotations

import datetime as dt

import pytest

from features.settings import Settings
from tests.synthetic_cube import synthetic_cube

AS_OF = "2021-01-04"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home with vintage ``old`` (issued 2020-12-01: what a forecast as of 2021-01-04 reads)
    and a newer current vintage."""
    from features.store import CubeStore

    monkeypatch.setenv("VIGIE_HOME", str(tmp_path))
    monkeypatch.delenv("VIGIE_DATABASE_URL", raising=False)
    monkeypatch.delenv("VIGIE_DASK_ADDRESS", raising=False)
    monkeypatch.setenv("VIGIE_JOB_ISOLATION", "thread")
    store = CubeStore(Settings.from_env())
    manifest = {"data_dir": str(tmp_path), "sources": {"synthetic": {}}}
    old = store.write_vintage({"weekly": synthetic_cube("weekly", periods=50)}, {}, manifest,
                              issued_at=dt.datetime(2020, 12, 1, tzinfo=dt.UTC))
    current = store.write_vintage({"weekly": synthetic_cube("weekly", periods=50, seed=1)}, {},
                                  manifest)
    assert store.vintage_at(AS_OF)["id"] == old and store.current_vintage()["id"] == current
    return {"path": tmp_path, "old": old, "current": current}


def _audit_and_runs():
    from features.catalog import get_engine
    from models.store import ForecastStore
    from service.audit import query

    settings = Settings.from_env()
    rows, _ = query(get_engine(settings.database_url), event="forecast_published", limit=500)
    runs = {r.run_id: r.metadata for r in ForecastStore.from_settings(settings).list_runs()}
    return rows, runs


def _check_one_row_per_run(rows, runs, vintage):
    assert sorted(r["run_id"] for r in rows) == sorted(runs)  # one row per stored run
    for row in rows:
        meta = runs[row["run_id"]]
        assert row["vintage_id"] == meta["vintage_id"] == vintage
        assert row["model_version"] == f"{meta['model']}@{meta['model_version']}" \
            == "baseline@1.0"
        assert row["details"]["as_of"] == AS_OF


def test_forecast_all_audits_each_run_with_its_vintage_and_model_version(home, runner):
    args = ["forecast-all", "--target", "inc_hosp", "inc_icu", "--model", "baseline",
            "--as-of", AS_OF, "--sequential"]
    code, _, err = runner(args)
    assert code == 0, err
    rows, runs = _audit_and_runs()
    assert len(runs) == 6  # two targets × France, régions, départements
    _check_one_row_per_run(rows, runs, home["old"])
    assert {r["actor"] for r in rows} == {"cli:forecast-all"}
    # Nothing changed: nothing published again, no audit row without a run.
    code, _, err = runner(args)
    assert code == 0 and "6 unchanged" in err
    assert len(_audit_and_runs()[0]) == 6


def test_forecast_save_audits_its_run(home, runner, tmp_path):
    code, _, err = runner(["forecast", "--target", "inc_hosp", "--level", "region",
                           "--as-of", AS_OF, "--model", "baseline", "--sequential", "--save",
                           "--out", str(tmp_path / "f.csv")])
    assert code == 0, err
    rows, runs = _audit_and_runs()
    assert len(runs) == 1
    _check_one_row_per_run(rows, runs, home["old"])
    assert rows[0]["actor"] == "cli:forecast"


def test_forecast_job_audits_each_run_with_its_vintage(home):
    from features.catalog import get_engine
    from service.jobs import enqueue, get_run, run_pending

    settings = Settings.from_env()
    engine = get_engine(settings.database_url)
    run_id = enqueue(engine, "forecast", {"model": "baseline", "runs": [["inc_icu", "weekly"]],
                                          "levels": ["national", "department"]})
    # The job forecasts from the data's last week (not AS_OF): the current vintage then.
    assert run_pending(engine, settings) == [(run_id, "ok")]
    rows, runs = _audit_and_runs()
    assert sorted(get_run(engine, run_id)["result"]["runs"]) == sorted(runs)
    assert len(runs) == 2
    for row in rows:
        assert row["vintage_id"] == runs[row["run_id"]]["vintage_id"]
        assert row["actor"] == "job:forecast"
