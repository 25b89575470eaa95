"""Storage behind one URL: the same Vigie on a local folder and on an S3 object store.

An S3-protocol server (``moto`` in server mode, from PyPI) is started by these tests on a free
port of 127.0.0.1; everything goes through real HTTP requests to it (s3fs/aiobotocore). The
tests skip, saying why, only when that server cannot start.

* end to end: the same data ingested into a local home and into ``s3://…`` gives the same cube
  (every frequency, ``as_of`` reads, tables, manifest), the same forecast, the same stored and
  re-read forecast run, scenario result, publication decision and registry entry, and the API
  (``VIGIE_STORE_URL`` in the environment) serves ``/data`` and ``/forecasts`` from S3 with the
  local answers;
* atomic publication: an upload that fails mid-way leaves the previous vintage (and forecast
  run) served and removes what it wrote; a writer killed mid-way (SIGKILL) leaves objects no
  reader ever opens; readers running while a writer publishes never see a partial vintage or
  run;
* city uploads: one host takes an upload, another host (same database and store, its own
  empty home) serves it from its next ingest, and a refused file is quarantined in the store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr

from features.settings import PROJECT_ROOT, Settings

BUCKET = "vigie-test"
SUBSET = ("fr_departements_population.csv", "fr_communes_20k_population.csv",
          "fr_spf_hosp_incid_dep_daily.csv", "fr_spf_hosp_rea_stock_dep_2020H2.csv",
          "fr_drees_critical_care_beds.csv")
VOLATILE = ("vintage_id", "issued_at")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 with one bucket; its endpoint URL."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed "
                                      "(requirements-dev.txt): no S3 server to test against")
    boto3 = pytest.importorskip("boto3", reason="boto3 (moto's dependency) is not installed")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="vigie-test", AWS_SECRET_ACCESS_KEY="vigie-test",
                      AWS_DEFAULT_REGION="us-east-1")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    except Exception as exc:  # the only reason to skip: no server to talk to
        with contextlib.suppress(Exception):
            server.stop()
        pytest.skip(f"the moto S3 server could not start on {endpoint}: {exc!r}")
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _settings(home: Path, data: Path, store_url: str = "", endpoint: str = "") -> Settings:
    extra = ({"store_url": store_url, "store_options": {"endpoint_url": endpoint}}
             if store_url else {})
    return Settings.from_env(home=str(home), data_dir=str(data),
                             database_url=f"sqlite:///{home}/vigie.sqlite", **extra)


def _url(prefix: str) -> str:
    return f"s3://{BUCKET}/{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def homes(s3, data_dir, tmp_path_factory):
    """(local settings, S3 settings): the same real-data subset ingested into each."""
    from features.ingest import run_ingest

    base = tmp_path_factory.mktemp("storage_s3")
    data = base / "data"
    data.mkdir()
    for name in SUBSET:
        shutil.copyfile(data_dir / name, data / name)
    local = _settings(base / "local", data)
    remote = _settings(base / "s3home", data, _url("e2e"), s3)
    for settings in (local, remote):
        report = run_ingest(settings)
        assert report.outcome == "ok", report.to_dict()
    return local, remote


def _stable(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign_attrs({k: "" for k in VOLATILE if k in ds.attrs})


# ---------------------------------------------------------------------------- configuration
def test_store_url_and_options_are_checked(monkeypatch, tmp_path, capsys):
    from features.storage.objects import StoreConfigError
    from service.cli import main

    for bad, said in (("ftp://host/x", "scheme 'ftp'"), ("s3:///prefix", "no bucket"),
                      ("s3://b/p\x1bx", "control character")):
        monkeypatch.setenv("VIGIE_STORE_URL", bad)
        with pytest.raises(StoreConfigError, match=said):
            Settings.from_env(home=str(tmp_path))
    monkeypatch.setenv("VIGIE_STORE_URL", "s3://bucket/prefix/")
    monkeypatch.setenv("VIGIE_STORE_OPTIONS", '{"endpoint_url": "http://x",\n "key": }')
    with pytest.raises(StoreConfigError, match=r"line 2, column 9: expected a JSON object"):
        Settings.from_env(home=str(tmp_path))
    monkeypatch.setenv("VIGIE_HOME", str(tmp_path))
    assert main(["cube", "info"]) == 2  # the command line says it, no traceback
    assert "configuration error: VIGIE_STORE_OPTIONS, line 2, column 9" in \
        capsys.readouterr().err
    monkeypatch.setenv("VIGIE_STORE_OPTIONS", "[1]")
    with pytest.raises(StoreConfigError, match="found list"):
        Settings.from_env(home=str(tmp_path))
    monkeypatch.setenv("VIGIE_STORE_OPTIONS", '{"endpoint_url": "http://x"}')
    settings = Settings.from_env(home=str(tmp_path))
    assert settings.store_url == "s3://bucket/prefix"
    assert settings.store_options == {"endpoint_url": "http://x"}
    monkeypatch.delenv("VIGIE_STORE_URL")
    monkeypatch.delenv("VIGIE_STORE_OPTIONS")
    assert Settings.from_env(home=str(tmp_path)).store_url == ""


def test_local_default_writes_where_and_what_it_always_did(tmp_path):
    """Unset URL: the vintage folder, run folder, pointer and registry file keep their paths
    and bytes (pointer and registry compared with what the previous code wrote)."""
    from features.store import CubeStore
    from models.registry import get_registry
    from models.store import ForecastStore
    from tests.synthetic_cube import synthetic_cube

    settings = _settings(tmp_path / "home", tmp_path)
    store = CubeStore(settings)
    vid = store.write_vintage({"daily": synthetic_cube("daily", periods=30)}, {}, {})
    row = store.current_vintage()
    assert row["path"] == str(settings.vintages_dir / vid)
    assert sorted(p.name for p in Path(row["path"]).iterdir()) == ["daily.nc", "manifest.json"]
    run = ForecastStore.from_settings(settings).save(_hub_rows(1.0), _run_meta(vid))
    assert run.path == settings.forecast_runs_dir / run.run_id
    pointer = settings.forecast_latest_dir / "inc_hosp_weekly_national_baseline.json"
    assert pointer.read_bytes() == json.dumps({"run_id": run.run_id}).encode()
    get_registry(settings).register("ets", kind="ets", params={"window": 26}, version="9.1")
    saved = json.loads(settings.registry_file.read_text())
    assert settings.registry_file.read_text() == json.dumps(saved, indent=2)
    assert [m["version"] for m in saved["models"]] == ["9.1"]


# ---------------------------------------------------------------------------- end to end
def test_vintage_on_s3_is_the_local_cube(homes):
    from features.storage.objects import open_store
    from features.store import CubeStore

    local, remote = homes
    lstore, rstore = CubeStore(local), CubeStore(remote)
    row = rstore.current_vintage()
    assert row["path"] == f"{remote.store_url}/cube/vintages/{row['id']}"
    objects = open_store(row["path"], remote.store_options)
    names = set(objects.find(""))
    assert {"daily.nc", "weekly.nc", "yearly.nc", "manifest.json"} <= names
    assert not remote.vintages_dir.exists()  # nothing of the cube in the S3 home's folder
    for frequency in ("daily", "weekly", "yearly"):
        xr.testing.assert_identical(_stable(lstore.open(frequency)),
                                    _stable(rstore.open(frequency)))
    xr.testing.assert_identical(_stable(lstore.open("daily", as_of="2020-11-02")),
                                _stable(rstore.open("daily", as_of="2020-11-02")))
    lman, rman = lstore.manifest(), rstore.manifest()
    assert rman["id"] == row["id"]
    assert {k: v for k, v in lman.items() if k not in ("id", "issued_at", "data_dir")} == \
        {k: v for k, v in rman.items() if k not in ("id", "issued_at", "data_dir")}
    tables = sorted(p.stem for p in (Path(lstore.current_vintage()["path"]) / "tables")
                    .glob("*.parquet"))
    for name in tables:
        pd.testing.assert_frame_equal(lstore.open_table(name), rstore.open_table(name))
    with pytest.raises(KeyError, match="no table 'nope'"):
        rstore.open_table("nope")
    with pytest.raises(KeyError, match="no 'monthly' dataset"):
        rstore.open("monthly")


def test_forecast_run_through_s3_is_the_local_run(homes):
    from models.store import ForecastStore
    from service.usecases.forecasts import find_target, forecast_target

    out = {}
    for settings in homes:
        target = find_target(settings, "inc_hosp", "weekly")
        rows, meta, _ = forecast_target(settings, target, "national", model="baseline",
                                        calibrate=False, parallel=False)
        store = ForecastStore.from_settings(settings)
        run = store.save(rows, meta)
        latest = store.latest("inc_hosp", "national", model="baseline")
        assert latest.run_id == run.run_id
        assert [r.run_id for r in store.list_runs()] == [run.run_id]
        assert store.get(run.run_id).metadata == run.metadata
        out[bool(settings.store_url)] = (rows, latest.read())
    local_rows, local_read = out[False]
    remote_rows, remote_read = out[True]
    pd.testing.assert_frame_equal(local_rows.reset_index(drop=True),
                                  remote_rows.reset_index(drop=True))
    pd.testing.assert_frame_equal(local_read, remote_read)
    remote = homes[1]
    assert not remote.forecasts_dir.exists()
    store = ForecastStore.from_settings(remote)
    assert str(store.root).startswith(remote.store_url)
    for forged in ("../../cube", "a/b", "", "x" * 200, "run\x00"):
        with pytest.raises(KeyError):
            store.get(forged)
    for target, level, model in (("inc_hosp", "national", "../../models/registry"),
                                 ("inc_hosp", "../national", "baseline"),
                                 ("inc_hosp", "national", "base*"), ("a\nb", "national", "x")):
        assert store.latest(target, level, model) is None
    for target, level in (("inc_hosp", "../national"), ("a\nb", "national"),
                          ("inc_hosp", "nat*")):
        assert store.latest_of_any_model(target, level) is None
    assert store.latest_of_any_model("inc_hosp", "national").run_id == run.run_id


def test_scenario_result_through_s3_is_the_local_result(homes):
    from service import scenario_runs
    from service.usecases.scenarios import run_and_store

    results = {}
    for settings in homes:
        summary = run_and_store(settings, 7, name="status_quo")
        stored = scenario_runs.load_result(settings, 7)
        assert stored["vintage"]["vintage_id"] == summary["vintage"]
        assert scenario_runs.result_ids(settings) == [7]
        assert scenario_runs.load_result(settings, 8) is None
        decision = {"published": True, "by": "test", "role": "admin", "at": "2021-01-01"}
        scenario_runs.write_publication(settings, 7, decision)
        assert scenario_runs.read_publication(settings, 7) == decision
        assert scenario_runs.decided_ids(settings) == [7]
        scenario_runs.remove_publication(settings, 7)
        assert scenario_runs.read_publication(settings, 7) is None
        assert scenario_runs.decided_ids(settings) == []
        results[bool(settings.store_url)] = stored
    assert results[True]["summary"] == results[False]["summary"]
    assert results[True]["inputs"] == results[False]["inputs"]
    assert not homes[1].scenario_runs_dir.exists()


def test_registry_through_s3(homes):
    from features.storage.objects import for_settings
    from models.registry import get_registry

    specs = {}
    for settings in homes:
        get_registry(settings).register("ets", kind="ets", params={"window": 26},
                                        version="1.1-w26", description="w26")
        again = get_registry(settings)  # a new process reads what the first saved
        specs[bool(settings.store_url)] = again.get("ets")
        with pytest.raises(ValueError, match="already exists"):
            again.register("ets", kind="ets", params={}, version="1.1-w26")
    assert specs[True].version == "1.1-w26" and specs[True].params == {"window": 26}
    assert {**vars(specs[True]), "created_at": ""} == {**vars(specs[False]), "created_at": ""}
    remote = homes[1]
    assert for_settings(remote).exists("models/registry.json")
    assert not remote.registry_file.exists()


def test_api_serves_data_and_forecasts_from_s3(homes, s3, monkeypatch, api_clock):
    from models.store import ForecastStore
    from service.app import create_app

    local, remote = homes
    monkeypatch.setenv("VIGIE_STORE_URL", remote.store_url)
    monkeypatch.setenv("VIGIE_STORE_OPTIONS", json.dumps({"endpoint_url": s3}))
    from_env = Settings.from_env(home=str(remote.home), data_dir=str(remote.data_dir),
                                 database_url=remote.database_url)
    assert from_env.store_url == remote.store_url
    answers = {}
    for name, settings in (("local", local), ("s3", from_env)):
        client = create_app({"TESTING": True, "SETTINGS": settings,
                             "RATELIMIT_ENABLED": False}).test_client()
        data = client.get("/api/v1/data?indicator=inc_hosp&territory=FR,69"
                          "&start=2020-11-01&end=2020-11-30&per_page=1000")
        assert data.status_code == 200, data.get_data(as_text=True)
        forecasts = client.get("/api/v1/forecasts?target=inc_hosp&level=national"
                               "&model=baseline")
        assert forecasts.status_code == 200, forecasts.get_data(as_text=True)
        any_model = client.get("/api/v1/forecasts?target=inc_hosp&level=national")
        assert any_model.status_code == 200, any_model.get_data(as_text=True)
        assert any_model.get_json()["run"]["model"] == "baseline"  # no ensemble run: newest
        answers[name] = (client, data.get_json(), forecasts.get_json())
    _, ldata, lfc = answers["local"]
    client, rdata, rfc = answers["s3"]
    assert _rows(rdata) == _rows(ldata) and len(_rows(rdata)) == 60
    assert _rows(rfc) == _rows(lfc) and _rows(rfc)
    # A run published on S3 by another process is served once the freshness window passes.
    store = ForecastStore.from_settings(remote)
    newer = store.save(store.latest("inc_hosp", "national", "baseline").read(),
                       {**rfc["run"], "note": "newer"})
    api_clock.advance(1.1)
    again = client.get("/api/v1/forecasts?target=inc_hosp&level=national&model=baseline")
    assert again.get_json()["run"]["run_id"] == newer.run_id


def _rows(body: dict) -> list:
    rows = body.get("rows", body.get("items"))
    assert isinstance(rows, list), sorted(body)
    return rows


# ---------------------------------------------------------------------------- atomicity
def _hub_rows(scale: float) -> pd.DataFrame:
    from models.base import QUANTILES

    return pd.DataFrame([("2021-01-04", "1 wk ahead inc hosp", "2021-01-09", "FR", "quantile",
                          q, round(1000 * scale * (0.5 + q), 3)) for q in QUANTILES],
                        columns=["forecast_date", "target", "target_end_date", "location",
                                 "type", "quantile", "value"])


def _run_meta(vintage: str) -> dict:
    return {"target": "inc_hosp", "frequency": "weekly", "level": "national",
            "model": "baseline", "model_version": "1.0", "vintage_id": vintage,
            "as_of": "2021-01-04"}


def _cube(k: int) -> dict[str, xr.Dataset]:
    from tests.synthetic_cube import synthetic_cube

    daily = synthetic_cube("daily", periods=120, seed=k)
    return {"daily": daily.assign_attrs(marker=k),
            "weekly": synthetic_cube("weekly", periods=30, seed=k).assign_attrs(marker=k)}


@pytest.fixture
def s3_settings(s3, tmp_path):
    return _settings(tmp_path / "home", tmp_path, _url("atomic"), s3)


def test_failed_upload_leaves_the_previous_vintage_and_run_served(s3_settings, monkeypatch):
    from features.storage import objects
    from features.store import CubeStore
    from models.store import ForecastStore

    store = CubeStore(s3_settings)
    first = store.write_vintage(_cube(1), {"extra": pd.DataFrame({"a": [1, 2]})}, {})
    runs = ForecastStore.from_settings(s3_settings)
    run = runs.save(_hub_rows(1.0), _run_meta(first))
    fs = store.objects.fs
    real_put, calls = fs.put_file, []

    def failing_put(lpath, rpath, *args, **kwargs):
        calls.append(rpath)
        if len(calls) == 2:
            raise ConnectionError("connection reset by the object store")
        return real_put(lpath, rpath, *args, **kwargs)

    monkeypatch.setattr(fs, "put_file", failing_put)
    with pytest.raises(ConnectionError):
        store.write_vintage(_cube(2), {}, {})
    failed_key = calls[0].split("/cube/vintages/")[1].split("/")[0]
    calls.clear()
    with pytest.raises(ConnectionError):
        runs.save(_hub_rows(2.0), _run_meta(first))
    failed_run = calls[0].split("/runs/")[1].split("/")[0]
    monkeypatch.setattr(fs, "put_file", real_put)
    assert [v["id"] for v in store.list_vintages()] == [first]
    assert store.open("daily").attrs["marker"] == 1
    assert store.open_table("extra")["a"].tolist() == [1, 2]
    remote = objects.for_settings(s3_settings)
    assert remote.find(f"cube/vintages/{failed_key}") == {}  # what it wrote is removed
    assert remote.find(f"forecasts/runs/{failed_run}") == {}
    assert runs.latest("inc_hosp", "national", "baseline").run_id == run.run_id
    assert [r.run_id for r in runs.list_runs()] == [run.run_id]


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from features.settings import Settings
    from features.store import CubeStore
    from tests.test_storage_s3 import _cube
    settings = Settings.from_env(home={home!r}, data_dir={home!r},
                                 database_url={db!r}, store_url={url!r},
                                 store_options={{"endpoint_url": {endpoint!r}}})
    store = CubeStore(settings)
    real_put = store.objects.fs.put_file
    def put_then_die(lpath, rpath, *a, **k):
        real_put(lpath, rpath, *a, **k)
        print(rpath, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-upload: the manifest never goes
    store.objects.fs.put_file = put_then_die
    store.write_vintage(_cube(2), {{}}, {{}})
""")


def test_killed_writer_leaves_nothing_served(s3_settings, s3):
    from features.storage import objects
    from features.store import CubeStore

    store = CubeStore(s3_settings)
    first = store.write_vintage(_cube(1), {}, {})
    script = KILLED_WRITER.format(root=str(PROJECT_ROOT), home=str(s3_settings.home),
                                  db=s3_settings.database_url, url=s3_settings.store_url,
                                  endpoint=s3)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == -signal.SIGKILL, done.stderr
    uploaded = done.stdout.split()
    assert len(uploaded) == 1 and "/cube/vintages/" in uploaded[0]
    orphan = uploaded[0].split("/cube/vintages/")[1].split("/")[0]
    remote = objects.for_settings(s3_settings)
    assert list(remote.find(f"cube/vintages/{orphan}")) != []  # left behind, never published
    assert "manifest.json" not in remote.find(f"cube/vintages/{orphan}")
    reader = CubeStore(s3_settings)
    assert [v["id"] for v in reader.list_vintages()] == [first]
    assert reader.open("daily").attrs["marker"] == 1
    assert reader.manifest()["id"] == first


def test_readers_never_see_a_partial_vintage_or_run(s3_settings, monkeypatch):
    """A writer publishes vintages and runs with slow uploads while readers read in a loop:
    every vintage a reader is given opens whole (each frequency, its manifest), every run
    listed or pointed to reads whole."""
    from features.store import CubeStore
    from models.store import ForecastStore

    writer = CubeStore(s3_settings)
    first = writer.write_vintage(_cube(0), {}, {})
    runs = ForecastStore.from_settings(s3_settings)
    runs.save(_hub_rows(1.0), _run_meta(first))
    fs = writer.objects.fs
    real_put = fs.put_file

    def slow_put(*args, **kwargs):
        time.sleep(0.05)
        return real_put(*args, **kwargs)

    monkeypatch.setattr(fs, "put_file", slow_put)
    problems, seen_vintages, seen_runs, stop = [], set(), set(), threading.Event()

    def read_vintages():
        reader = CubeStore(s3_settings)
        while not stop.is_set():
            try:
                row = reader.current_vintage()
                # The vintage the reader was given, opened by id (opening "the current one"
                # twice could straddle a publication between the calls: not a partial read).
                daily = reader.open("daily", vintage_id=row["id"])
                weekly = reader.open("weekly", vintage_id=row["id"])
                manifest = reader.manifest(row["id"])
                if not (daily.attrs["vintage_id"] == weekly.attrs["vintage_id"]
                        == manifest["id"] == row["id"]):
                    problems.append(("mixed vintage", row["id"]))
                seen_vintages.add(row["id"])
            except Exception as exc:  # any failure to read what was published is a problem
                problems.append(("vintage", repr(exc)))

    def read_runs():
        reader = ForecastStore.from_settings(s3_settings)
        while not stop.is_set():
            try:
                for run in [*reader.list_runs()[:2],
                            reader.latest("inc_hosp", "national", "baseline")]:
                    rows = run.read()
                    if len(rows) != len(_hub_rows(1.0)) or rows["value"].isna().any():
                        problems.append(("partial run", run.run_id))
                    seen_runs.add(run.run_id)
            except Exception as exc:
                problems.append(("run", repr(exc)))

    readers = [threading.Thread(target=read_vintages), threading.Thread(target=read_runs)]
    for thread in readers:
        thread.start()
    try:
        for k in range(1, 4):
            vid = writer.write_vintage(_cube(k), {}, {})
            for j in range(3):
                runs.save(_hub_rows(1.0 + k + j / 10), _run_meta(vid))
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=120)
    assert problems == []
    assert len(seen_vintages) >= 2 and len(seen_runs) >= 2  # the readers did overlap writes
    assert len(writer.list_vintages()) == 4


def test_stamp_changes_with_every_publication(s3_settings):
    from features.storage.objects import for_settings

    store = for_settings(s3_settings)
    assert store.stamp("forecasts/latest") == 0
    store.write_bytes("forecasts/latest/a.json", b'{"run_id": "1"}')
    one = store.stamp("forecasts/latest")
    store.write_bytes("forecasts/latest/a.json", b'{"run_id": "2"}')
    two = store.stamp("forecasts/latest")
    store.delete("forecasts/latest/a.json")
    assert len({0, one, two}) == 3 and store.stamp("forecasts/latest") == 0


def test_prune_on_s3_removes_old_vintages_and_runs(s3_settings):
    from features.storage.objects import for_settings
    from features.store import CubeStore
    from models.store import ForecastStore
    from service.retention import prune

    cube, runs = CubeStore(s3_settings), ForecastStore.from_settings(s3_settings)
    made = []
    for k in range(3):
        vid = cube.write_vintage(_cube(k), {}, {})
        made.append((vid, runs.save(_hub_rows(1.0 + k), _run_meta(vid)).run_id))
    done = prune(s3_settings, retain_vintages=1, retain_forecast_runs=1)
    gone = done.summary()
    assert sorted(gone["vintages"]["deleted_ids"]) == sorted(v for v, _ in made[:2])
    assert sorted(gone["forecast_runs"]["deleted_ids"]) == sorted(r for _, r in made[:2])
    assert gone["vintages"]["bytes_freed"] > 0 and gone["forecast_runs"]["bytes_freed"] > 0
    store = for_settings(s3_settings)
    for vid, run_id in made[:2]:
        assert store.find(f"cube/vintages/{vid}") == {}
        assert store.find(f"forecasts/runs/{run_id}") == {}
        with pytest.raises(KeyError):
            runs.get(run_id)
    assert [r.run_id for r in runs.list_runs()] == [made[2][1]]
    assert cube.open("daily").attrs["marker"] == 2


OTHER_HOST = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    from features.settings import Settings
    from features.store import CubeStore
    from models.registry import get_registry
    from models.store import ForecastStore
    from service import scenario_runs
    settings = Settings.from_env()  # VIGIE_HOME, VIGIE_DATABASE_URL, VIGIE_STORE_URL/_OPTIONS
    cube = CubeStore(settings)
    run = ForecastStore.from_settings(settings).latest("inc_hosp", "national", "baseline")
    print(json.dumps({{
        "vintage": cube.current_vintage()["id"], "marker": int(cube.open("daily").attrs["marker"]),
        "run": run.run_id, "values": run.read()["value"].tolist(),
        "decided": scenario_runs.decided_ids(settings),
        "ets": get_registry(settings).get("ets").version}}))
""")


def test_another_host_serves_what_one_host_published(s3, db_url, tmp_path):
    """Two hosts: their own empty home folders, one catalog database (SQLite file or
    PostgreSQL), one S3 store; the second (another process) reads what the first wrote."""
    from features.store import CubeStore
    from models.registry import get_registry
    from models.store import ForecastStore
    from service import scenario_runs

    url = _url("hosts")
    first = Settings.from_env(home=str(tmp_path / "host_a"), data_dir=str(tmp_path),
                              database_url=db_url, store_url=url,
                              store_options={"endpoint_url": s3})
    vid = CubeStore(first).write_vintage(_cube(5), {}, {})
    run = ForecastStore.from_settings(first).save(_hub_rows(3.0), _run_meta(vid))
    scenario_runs.write_publication(first, 11, {"published": False})
    get_registry(first).register("ets", kind="ets", params={"window": 20}, version="7.0-host")
    (tmp_path / "host_b").mkdir()
    env = {**os.environ, "VIGIE_HOME": str(tmp_path / "host_b"), "VIGIE_DATABASE_URL": db_url,
           "VIGIE_STORE_URL": url, "VIGIE_STORE_OPTIONS": json.dumps({"endpoint_url": s3})}
    done = subprocess.run([sys.executable, "-c", OTHER_HOST.format(root=str(PROJECT_ROOT))],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path / "host_b")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"vintage": vid, "marker": 5, "run": run.run_id,
                    "values": _hub_rows(3.0)["value"].tolist(), "decided": [11],
                    "ets": "7.0-host"}
    assert sorted(p.name for p in (tmp_path / "host_b").iterdir()) == []


# ---------------------------------------------------------------------------- city uploads
UPLOAD_DATA = ("fr_departements_population.csv", "fr_communes_20k_population.csv",
               "fr_communes_population.csv", "fr_epci_communes.csv",
               "fr_spf_hosp_incid_dep_daily.csv", "fr_drees_critical_care_beds.csv")


def _city_file(value: int) -> bytes:
    """The synthetic city fixture (Rennes and Bruz) with Rennes' last food-aid value set."""
    from tests.conftest import FIXTURES

    frame = pd.read_csv(FIXTURES / "city_indicators_synthetic_epci.csv", dtype=str)
    last = frame.index[(frame["territory_code"] == "35238")
                       & (frame["indicator"] == "food_aid_requests")][-1]
    frame.loc[last, "value"] = str(value)
    return frame.to_csv(index=False).encode()


def _run_queued(settings: Settings, run_id: int) -> dict:
    """Run the queued run ``run_id`` with ``settings`` (this host as the scheduler leader)."""
    from features.catalog import get_engine, utcnow
    from service.db import job_runs
    from service.jobs import execute, get_run

    engine = get_engine(settings.database_url)
    with engine.begin() as conn:
        assert conn.execute(job_runs.update().where(
            job_runs.c.id == run_id, job_runs.c.status == "queued"
        ).values(status="running", worker="host-b", started_at=utcnow())).rowcount == 1
    assert execute(engine, settings, get_run(engine, run_id)) == "ok", get_run(engine, run_id)
    return get_run(engine, run_id)


def test_another_host_sees_an_upload_in_its_next_ingest(s3, data_dir, tmp_path):
    """Host A takes a city's upload (as the API does: kept, its ingest queued); host B (its
    own empty home; the same database and S3 store) runs that ingest and serves the upload,
    then reads A's replacement in its next ingest. No upload touches either host's disk: the
    index, the files in force, their copies are objects of the store."""
    from features.ingest import run_ingest
    from features.store import CubeStore
    from features.uploads import UploadIndex, upload_store
    from service.usecases.uploads import upload_file

    data = tmp_path / "data"
    data.mkdir()
    for name in UPLOAD_DATA:
        (data / name).symlink_to(data_dir / name)
    url, database = _url("uploads"), f"sqlite:///{tmp_path}/vigie.sqlite"
    host_a, host_b = (Settings.from_env(home=str(tmp_path / h), data_dir=str(data),
                                        database_url=database, store_url=url,
                                        store_options={"endpoint_url": s3})
                      for h in ("host_a", "host_b"))
    assert run_ingest(host_a).outcome == "ok"

    def send(value: int) -> dict:
        report = upload_file(host_a, _city_file(value), "rennes_social.csv",
                             sender="ville-rennes", role="city", actor="test",
                             territories=frozenset({"243500139"}), wait=False)
        assert report["status"] == "accepted" and report["job_id"], report
        return report

    def served() -> tuple[dict, float]:
        cube = CubeStore(host_b)
        vintage = cube.current_vintage()
        food = cube.open("weekly", vintage_id=vintage["id"])["food_aid_requests"]
        return vintage, float(food.sel(territory="35238").dropna("date").values[-1])

    first = send(100)
    run = _run_queued(host_b, first["job_id"])
    vintage, value = served()
    assert run["result"]["vintage_id"] == vintage["id"] and value == 100
    assert vintage["files"][first["file"]]["sha256"] == first["sha256"]
    assert [(u["id"], u["status"]) for u in run["result"]["uploads"]] == [(first["id"],
                                                                           "active")]
    second = send(999)
    assert second["replaces"] == [first["id"]]
    report = run_ingest(host_b)  # B's next ingest (the daily one) reads the replacement
    assert report.outcome == "ok"
    vintage, value = served()
    assert value == 999 and vintage["files"][second["file"]]["sha256"] == second["sha256"]
    _run_queued(host_b, second["job_id"])  # the upload's own run settles it (nothing new)
    index = {r["id"]: r for r in UploadIndex(host_a).records()}
    assert index[first["id"]]["status"] == "replaced"
    assert index[second["id"]]["status"] == "active"
    assert index[second["id"]]["vintage_id"] == vintage["id"]
    store = upload_store(host_a)
    assert store.remote and store.names("active") == [second["file"]]
    assert store.names("raw") == sorted(f"{r['sha256']}-{r['file']}" for r in (first, second))
    refused = upload_file(host_a, _city_file(999).replace(b",999,", b",douze,"), "bad.csv",
                          sender="ville-rennes", role="city", actor="test", wait=False)
    assert refused["status"] == "refused" and refused["problems"][0]["column"] == "value"
    assert store.names("quarantine") == [refused["quarantine"]]
    assert b",douze," in store.read_bytes(f"quarantine/{refused['quarantine']}/bad.csv")
    assert store.names("active") == [second["file"]]
    for home in ("host_a", "host_b"):
        assert not (tmp_path / home / "uploads").exists(), home
