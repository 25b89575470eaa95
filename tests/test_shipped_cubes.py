"""The cubes sent to Dask workers (:class:`models.parallel.ShippedCubes`): a task receives the
cube it would have opened (same values, dates and attributes, the vintage chosen by its date),
each vintage is sent once however many dates read it, and a task asking for another cube is
refused. On an in-process cluster; tests/test_dask_cluster.py runs the real thing."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import xarray as xr

from features.settings import Settings
from tests.synthetic_cube import synthetic_cube


@pytest.fixture
def opener(tmp_path):
    from features.store import CubeStore
    from models.preparation import default_opener

    settings = Settings.from_env(home=str(tmp_path), data_dir=str(tmp_path),
                                 database_url=f"sqlite:///{tmp_path}/vigie.sqlite")
    store = CubeStore(settings)
    manifest = {"data_dir": str(tmp_path), "sources": {"synthetic": {}}}
    store.write_vintage({"weekly": synthetic_cube("weekly", periods=50)}, {}, manifest,
                        issued_at=dt.datetime(2020, 12, 1, tzinfo=dt.UTC))
    store.write_vintage({"weekly": synthetic_cube("weekly", periods=50, seed=1)}, {}, manifest)
    return default_opener(settings)


@pytest.fixture
def client():
    from dask.distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        yield client


def _same(opener, frequency, as_of):
    return opener(frequency, as_of)


def _counting_scatters(client, monkeypatch) -> list[str]:
    """The vintage of each cube the client scatters, in order."""
    sent, scatter = [], client.scatter

    def counted(data, **kwargs):
        sent.append(data.attrs["vintage_id"])
        return scatter(data, **kwargs)

    monkeypatch.setattr(client, "scatter", counted)
    return sent


def test_each_task_gets_its_cube_and_each_vintage_is_sent_once(opener, client, monkeypatch):
    from models.parallel import ShippedCubes

    # Every date reads the old vintage (issued 2020-12-01; the current one was issued today),
    # cut at its own date; no date, the current vintage.
    dates = [pd.Timestamp(d) for d in ("2020-06-01", "2020-09-07", "2020-12-07",
                                       "2021-01-04", "2021-02-01")]
    keys = [("weekly", d) for d in dates] + [("weekly", None)]
    sent = _counting_scatters(client, monkeypatch)
    calls = [(_same, f, d, (f, d)) for f, d in keys]
    finished = dict(ShippedCubes(client, opener).run(calls))
    assert sorted(finished) == list(range(len(calls)))
    for i, (frequency, as_of) in enumerate(keys):
        got, expected = finished[i].result(), opener(frequency, as_of)
        xr.testing.assert_identical(got, expected)
        assert got.attrs == expected.attrs
    assert len(sent) == len(set(sent)) == 2  # one copy per vintage, not one per date


def test_vintages_are_sent_a_few_at_a_time(client, monkeypatch):
    """Ten dates each reading its own vintage, one worker: never more than the two vintages
    of the waiting tasks (and the one ending) on the cluster, not all ten at once."""
    from models.parallel import ShippedCubes

    def opener(frequency, as_of):
        cube = synthetic_cube(frequency, periods=40, as_of=str(as_of.date()))
        return cube.assign_attrs(vintage_id=f"v{as_of.date()}")

    dates = list(pd.date_range("2020-10-05", periods=10, freq="7D"))
    sent = _counting_scatters(client, monkeypatch)
    ended, most = 0, 0
    for _, future in ShippedCubes(client, opener).run([(_same, "weekly", d, ("weekly", d))
                                                      for d in dates]):
        most = max(most, len(sent) - ended)
        assert future.result().attrs["vintage_id"] in sent
        ended += 1
    assert ended == len(sent) == 10 and most <= 3, most


def test_a_task_asking_for_another_cube_is_refused(opener, client):
    from models.parallel import ShippedCubes

    calls = [(_same, "weekly", "2021-01-04", ("weekly", "2021-01-11")),
             (_same, "weekly", "2021-01-04", ("daily", "2021-01-04"))]
    finished = dict(ShippedCubes(client, opener).run(calls))
    with pytest.raises(ValueError, match="sent the weekly cube as of 2021-01-04 00:00:00, not"):
        finished[0].result()
    with pytest.raises(ValueError, match="not the daily cube"):
        finished[1].result()
