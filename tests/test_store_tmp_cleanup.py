"""Temporary folders of a killed ingest or forecast are removed when a store is next opened;
a folder a live writer is filling is never touched."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from features import tempfiles
from features.settings import Settings
from features.store import CubeStore
from models.store import ForecastStore
from models.targets import HUB_COLUMNS

KILLED_INGEST = """
import os, sys, time
from pathlib import Path
import features.store as store
from features.settings import Settings

settings = Settings.from_env(home=sys.argv[1], data_dir=sys.argv[1],
                             database_url="sqlite:///" + sys.argv[1] + "/vigie.sqlite")
cube = store.CubeStore(settings)
real_replace = os.replace

def stall(src, dst):  # the vintage is written; die before it is renamed into place
    print("WRITTEN", src, flush=True)
    time.sleep(600)

os.replace = stall  # the atomic write's rename (features.storage.atomic)
import numpy as np, pandas as pd, xarray as xr
ds = xr.Dataset({"x": (("territory", "date"), np.ones((1, 3)))},
                coords={"territory": ["FR"], "date": pd.date_range("2021-01-01", periods=3)})
cube.write_vintage({"daily": ds}, {}, {"data_dir": sys.argv[1]})
"""


def _settings(home) -> Settings:
    return Settings.from_env(home=str(home), data_dir=str(home),
                             database_url=f"sqlite:///{home}/vigie.sqlite")


def _fresh_sweeps(monkeypatch):
    """Each store opening in the test sweeps again (the real process sweeps once)."""
    monkeypatch.setattr(tempfiles, "_swept", set())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_killed_ingest_leaves_a_folder_the_next_store_opening_removes(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, str(home)],
                            stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        line = proc.stdout.readline()
        assert line.startswith("WRITTEN"), line
        leftover = next((home / "cube" / "vintages").glob(".tmp-*"))
        assert (leftover / "daily.nc").exists()
        assert tempfiles.writer_of(leftover.name)[1] == proc.pid
        # While the writer lives, opening the store (another ingest, serve) leaves it alone.
        _fresh_sweeps(monkeypatch)
        CubeStore(_settings(home))
        assert leftover.exists()
    finally:
        proc.kill()
        proc.wait()
    _fresh_sweeps(monkeypatch)
    CubeStore(_settings(home))
    assert not leftover.exists()
    assert not list((home / "cube" / "vintages").glob(".tmp-*"))


def test_only_orphans_and_old_unnamed_entries_are_removed(tmp_path, monkeypatch):
    home = tmp_path / "home"
    vintages = home / "cube" / "vintages"
    vintages.mkdir(parents=True)
    host = tempfiles._host()
    dead = vintages / f".tmp-20210101T000000Z-aaaa~{host}~{_dead_pid()}"
    mine = vintages / f".tmp-20210101T000000Z-bbbb~{host}~{os.getpid()}"
    other_host = vintages / ".tmp-20210101T000000Z-cccc~elsewhere~1"
    legacy_new = vintages / ".tmp-20210101T000000Z-dddd"
    legacy_old = vintages / ".tmp-20210101T000000Z-eeee"
    latest = home / "forecasts" / "latest"
    latest.mkdir(parents=True)
    old_pointer, new_pointer = latest / "tmpabc.tmp", latest / "tmpdef.tmp"
    raw = home / "raw" / "ab"
    raw.mkdir(parents=True)
    old_part = raw / "abcd-file.csv.part"
    for folder in (dead, mine, other_host, legacy_new, legacy_old):
        folder.mkdir()
    for path in (old_pointer, new_pointer, old_part):
        path.write_text("{}")
    week_ago = time.time() - 7 * 86400
    for path in (legacy_old, old_pointer, old_part):
        os.utime(path, (week_ago, week_ago))
    stale = tempfiles.sweep(home, 6.0, dry_run=True)
    assert {e.path for e in stale} == {dead, legacy_old, old_pointer, old_part}
    assert dead.exists()  # dry run
    _fresh_sweeps(monkeypatch)
    CubeStore(_settings(home))
    assert not dead.exists() and not legacy_old.exists() and not old_pointer.exists()
    assert not old_part.exists()
    # A live writer (this process), another host's recent write, recent unnamed entries stay.
    assert mine.exists() and other_host.exists() and legacy_new.exists() and new_pointer.exists()
    old = time.time() - 7 * 3600
    os.utime(other_host, (old, old))
    _fresh_sweeps(monkeypatch)
    assert [e.path for e in tempfiles.sweep(home, 6.0)] == [other_host]


def test_forecast_store_sweeps_its_runs(tmp_path, monkeypatch):
    root = tmp_path / "forecasts"
    runs = root / "runs"
    runs.mkdir(parents=True)
    orphan = runs / f".tmp-20210101T000000.000000Z-abc~{tempfiles._host()}~{_dead_pid()}~x1"
    orphan.mkdir()
    (orphan / "forecast.csv").write_text("")
    _fresh_sweeps(monkeypatch)
    store = ForecastStore(root)
    assert not orphan.exists()
    rows = pd.DataFrame([["2021-01-04", "1 wk ahead inc hosp", "2021-01-09", "FR", "quantile",
                          0.5, 1.0]], columns=HUB_COLUMNS)
    run = store.save(rows, {"target": "inc_hosp", "frequency": "weekly", "level": "national",
                            "model": "ensemble", "model_version": "1", "vintage_id": "v",
                            "as_of": "2021-01-04"})
    assert [p.name for p in runs.iterdir()] == [run.run_id]
    assert [p.name for p in (root / "latest").iterdir()] == \
        ["inc_hosp_weekly_national_ensemble.json"]


def test_temp_names_carry_the_writer():
    name = tempfiles.temp_name("20210101T000000Z-abcd1234")
    assert name.startswith(".tmp-20210101T000000Z-abcd1234~")
    assert tempfiles.writer_of(name) == (tempfiles._host(), os.getpid())
    assert tempfiles.writer_of(".tmp-20210101T000000Z-abcd1234") is None


@pytest.mark.parametrize("frequency", ["daily"])
def test_a_written_vintage_leaves_no_temporary_entry(tmp_path, frequency):
    settings = _settings(tmp_path / "home")
    ds = xr.Dataset({"x": (("territory", "date"), np.ones((1, 2)))},
                    coords={"territory": ["FR"],
                            "date": pd.date_range("2021-01-01", periods=2)})
    vintage = CubeStore(settings).write_vintage({frequency: ds}, {}, {})
    names = [p.name for p in (settings.cube_dir / "vintages").iterdir()]
    assert names == [vintage]
