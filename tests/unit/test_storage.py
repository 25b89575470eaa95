"""The storage foundation (features.storage): atomic writes leave the final file complete or as it
was, their temporary entries name their writer where the sweep looks, a fenced publication
writes nothing, and JSON-safe values have no NaN, infinity or numpy type left."""

from __future__ import annotations

import datetime as dt
import json
import os

import numpy as np
import pytest

from features import fencing, tempfiles
from features.settings import Settings
from features.storage import jsonsafe
from features.storage.atomic import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    temp_path,
)


def test_writes_replace_the_file_whole(tmp_path):
    path = tmp_path / "a" / "b.json"
    atomic_write_json(path, {"x": [1, 2]}, indent=2)
    assert path.read_text() == json.dumps({"x": [1, 2]}, indent=2)
    atomic_write_text(path, "é")
    assert path.read_bytes() == "é".encode()
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


def test_an_error_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.parquet"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.parquet"]
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "run") as folder:
        (folder / "forecast.csv").write_text("x")
        raise RuntimeError("writer failed")
    assert [p.name for p in tmp_path.iterdir()] == ["f.parquet"]


def test_temporary_names_carry_the_writer_and_match_the_sweep(tmp_path):
    tmp = temp_path(tmp_path / "leaderboard.json")
    assert tempfiles.writer_of(tmp.name) == (tempfiles._host(), os.getpid())
    assert tmp.name.startswith(".tmp-leaderboard.json~") and tmp.suffix == ".tmp"
    assert temp_path(tmp_path / "x.csv", suffix=".part").name.endswith(".part")
    for folder, pattern in tempfiles.LOCATIONS:  # every swept folder sees a temporary file
        if "vintages" in folder or "runs" in folder:
            continue  # folders of atomic_dir: .tmp-<name>~…
        assert tmp.match(pattern) or temp_path(tmp, suffix=".part").match(pattern), pattern
    with atomic_dir(tmp_path / "runs" / "r1") as folder:
        assert folder.match(".tmp-*") and tempfiles.writer_of(folder.name)[1] == os.getpid()


def test_a_temp_dir_elsewhere_and_a_pointer_after_the_rename(tmp_path):
    final, pointer = tmp_path / "deep" / "one.parquet", tmp_path / "latest.json"
    seen = []
    with atomic_path(final, temp_dir=tmp_path / "models",
                     after=lambda: atomic_write_json(pointer, {"run": final.name})) as tmp:
        seen.append(tmp.parent)
        tmp.write_bytes(b"rows")
    assert seen == [tmp_path / "models"] and final.read_bytes() == b"rows"
    assert json.loads(pointer.read_text()) == {"run": "one.parquet"}
    assert list((tmp_path / "models").iterdir()) == []


class _Fence:
    """A job's fence that has lost (or still owns) its run."""

    def __init__(self, engine, owned: bool):
        self.engine, self.owned, self.checks = engine, owned, 0

    def check(self, conn) -> None:
        self.checks += 1
        if not self.owned:
            raise fencing.FencedError("run taken over")


def test_a_fenced_publication_writes_nothing(tmp_path):
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path}/fence.sqlite")
    path = tmp_path / "out" / "result.json"
    lost, owned = _Fence(engine, owned=False), _Fence(engine, owned=True)
    with fencing.installed(lost), pytest.raises(fencing.FencedError):
        atomic_write_json(path, {"a": 1}, publish=True)
    assert not path.exists() and list(path.parent.iterdir()) == [] and lost.checks == 1
    with fencing.installed(owned):
        atomic_write_json(path, {"a": 1}, publish=True)
        atomic_write_json(path, {"a": 2})  # not a publication: no check
    assert json.loads(path.read_text()) == {"a": 2} and owned.checks == 1
    engine.dispose()


def test_jsonable_values():
    value = {1: np.float64("nan"), "a": (np.int64(2), np.inf, -np.inf, 1.5),
             "b": np.array([1.0, np.nan]), "c": np.bool_(True), "d": dt.date(2021, 1, 4),
             "e": None, "f": "x"}
    assert jsonsafe.jsonable(value) == {"1": None, "a": [2, None, None, 1.5],
                                        "b": [1.0, None], "c": True, "d": "2021-01-04",
                                        "e": None, "f": "x"}
    assert jsonsafe.dumps({"x": float("nan")}) == '{"x": null}'
    assert jsonsafe.scalar(np.float32("inf")) is None
    assert jsonsafe.scalar(dt.datetime(2021, 1, 4, 5)) == "2021-01-04T05:00:00"
    assert jsonsafe.scalar(np.int16(3)) == 3 and jsonsafe.scalar([1]) == [1]
    assert jsonsafe.plain({"d": dt.date(2021, 1, 4), "t": (1, 2)}) == {"d": "2021-01-04",
                                                                       "t": [1, 2]}


def test_the_paths_vigie_keeps_are_settings(tmp_path):
    s = Settings.from_env(home=str(tmp_path), data_dir=str(tmp_path),
                          database_url="sqlite://")
    assert s.vintages_dir == tmp_path / "cube" / "vintages"
    assert s.disclosure_dir == tmp_path / "cube" / "disclosure"
    assert s.forecast_latest_dir == tmp_path / "forecasts" / "latest"
    assert s.forecast_runs_dir == tmp_path / "forecasts" / "runs"
    assert s.leaderboard_file == tmp_path / "models" / "leaderboard.json"
    assert s.registry_file == tmp_path / "models" / "registry.json"
    assert s.retrospective_file == tmp_path / "models" / "retrospective.json"
    assert s.backtests_dir == tmp_path / "models" / "backtests"
    assert s.scenario_runs_dir == tmp_path / "scenario_runs"
