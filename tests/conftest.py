"""Shared fixtures.

Real data comes from ``$VIGIE_DATA_DIR`` (CI sets it to ``../shared/data`` beside the clone);
nothing from there is copied into the repository. Fixtures the project makes itself (small valid
files in the official formats, deliberately broken files) live in ``tests/fixtures``.

Every test that asks, directly or through another fixture, for one of ``REAL_DATA_FIXTURES``
is marked ``integration`` here at collection: ``pytest -m "not integration"`` runs the rest
(``tests/unit/`` and every test on synthetic or fixture data) without the real data; plain
``pytest`` (``make test``) runs everything.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from features.settings import PROJECT_ROOT, Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: The fixtures that read the shared real data; a test using any of them is an integration test.
REAL_DATA_FIXTURES = frozenset({"data_dir", "data_copy", "real_cube"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``integration`` every test whose fixture closure reaches the real data (a test
    asking for such a fixture only at run time, with ``request.getfixturevalue``, carries
    ``@pytest.mark.integration`` itself)."""
    for item in items:
        if REAL_DATA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _real_data_dir() -> Path:
    env = os.environ.get("VIGIE_DATA_DIR")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared folder of real published data (read-only)."""
    path = _real_data_dir()
    if not (path / "fr_spf_hosp_incid_dep_daily.csv").exists():
        pytest.fail(f"real data not found in {path}: set VIGIE_DATA_DIR to the shared data folder")
    return path


@pytest.fixture
def make_settings(tmp_path: Path):
    """Settings for a fresh home under ``tmp_path`` (SQLite catalog), data from ``data_dir``."""

    def _make(data_dir: Path, name: str = "home", **overrides) -> Settings:
        return Settings.from_env(home=str(tmp_path / name), data_dir=str(data_dir),
                                 database_url=overrides.pop(
                                     "database_url", f"sqlite:///{tmp_path / name}/vigie.sqlite"),
                                 **overrides)

    return _make


@pytest.fixture
def data_copy(tmp_path: Path, data_dir: Path):
    """A writable copy of the real data folder, to break or remove files in."""

    def _copy(*names: str) -> Path:
        target = tmp_path / "data"
        target.mkdir(exist_ok=True)
        for path in data_dir.glob("*.csv"):
            if not names or path.name in names:
                shutil.copyfile(path, target / path.name)
        return target

    return _copy


@pytest.fixture(scope="session")
def real_cube(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Settings:
    """Settings of a home holding one vintage ingested from all the real data (built once).

    Read-only for tests: use ``make_settings`` for a home you write to.
    """
    from features.ingest import run_ingest

    home = tmp_path_factory.mktemp("real_cube")
    settings = Settings.from_env(home=str(home), data_dir=str(data_dir),
                                 database_url=f"sqlite:///{home}/vigie.sqlite")
    report = run_ingest(settings)
    assert report.outcome == "ok", report.to_dict()
    return settings


class Clock:
    """A clock that moves only when told (``advance``): injected in place of the wall clock so
    that tests of expiries (leases, retry backoff, the API's freshness window) never sleep."""

    def __init__(self) -> None:
        import datetime as dt
        import time

        self._utc = dt.datetime.now(dt.UTC)
        self._mono = time.monotonic()

    def utcnow(self):
        return self._utc

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        import datetime as dt

        self._utc += dt.timedelta(seconds=seconds)
        self._mono += seconds


@pytest.fixture
def job_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The job queue's and the leases' ``utcnow`` (every ``service.jobs`` module and
    ``features.storage.leases``, which imported ``features.catalog.utcnow``), as a
    :class:`Clock` of this process only."""
    import sys

    import features.storage.leases  # noqa: F401
    import service.jobs  # noqa: F401  (loads every module of the package)
    from features import catalog

    clock = Clock()
    patched = 0
    for name, module in list(sys.modules.items()):
        if (name in ("service.jobs", "features.storage.leases")
                or name.startswith("service.jobs.")) and \
                getattr(module, "utcnow", None) is catalog.utcnow:
            monkeypatch.setattr(module, "utcnow", clock.utcnow)
            patched += 1
    assert patched, "service.jobs no longer reads features.catalog.utcnow: update job_clock"
    return clock


@pytest.fixture
def api_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock of the API's freshness window (``service.api.state``): ``advance(1.1)`` in
    place of sleeping past it."""
    import types

    from service.api import state

    clock = Clock()
    monkeypatch.setattr(state, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    return clock


pytest_plugins = ["tests.api_fixtures"]
