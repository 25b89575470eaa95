"""Shared fixtures.

Real data comes from ``$VIGIE_DATA_DIR`` (CI sets it to ``../shared/data`` beside the clone);
nothing from there is copied into the repository. Fixtures the project makes itself (small valid
files in the official formats, deliberately broken files) live in ``tests/fixtures``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from features.settings import PROJECT_ROOT, Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"


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
pytest_plugins = ["tests.api_fixtures"]
