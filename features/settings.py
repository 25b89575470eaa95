"""Configuration read from the environment (12-factor style).

Every setting has an embedded default so that ``make run`` works on a fresh machine:
files and an SQLite database under ``VIGIE_HOME``. PostgreSQL or a Dask cluster are a matter of
setting ``VIGIE_DATABASE_URL`` / ``VIGIE_DASK_ADDRESS``, never of changing code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_home() -> Path:
    """``var`` of the source checkout; for an installed package (``pip install .``: no
    ``pyproject.toml`` beside the packages, which sit in site-packages), ``var`` of the working
    directory, never a folder inside site-packages."""
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / "var"
    return Path.cwd() / "var"


def _default_data_dir() -> Path:
    """The shared real-data folder beside the clone, else a download folder under the home."""
    beside_clone = PROJECT_ROOT.parent / "shared" / "data"
    if beside_clone.is_dir():
        return beside_clone
    return Path(os.environ.get("VIGIE_HOME") or _default_home()) / "downloads"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration.

    Attributes
    ----------
    home:
        Root folder of everything Vigie writes (``VIGIE_HOME``, default ``./var``).
    data_dir:
        Where source files are read from (``VIGIE_DATA_DIR``).
    database_url:
        SQLAlchemy URL of the catalog database (``VIGIE_DATABASE_URL``); default an SQLite file
        in ``home``.
    dask_address:
        Address of a Dask scheduler (``VIGIE_DASK_ADDRESS``); empty means a local cluster.
    dask_dashboard:
        Where a local cluster serves its Dask dashboard (``VIGIE_DASK_DASHBOARD``, e.g.
        ``:8787``, ``:0`` for any free port); empty: no dashboard (starting bokeh costs each
        local cluster 1-2 s; a remote scheduler serves its own).
    small_count_threshold:
        Counts below this are suppressed in public outputs (``VIGIE_SMALL_COUNT_THRESHOLD``).
    risk_thresholds:
        A YAML file of risk-level thresholds replacing ``features/risk_thresholds.yaml``
        (``VIGIE_RISK_THRESHOLDS``); None: the shipped defaults (see :mod:`features.risk`).
    redis_url:
        Redis holding the API's rate-limit counters, shared by every ``serve`` process
        (``VIGIE_REDIS_URL``, e.g. ``redis://127.0.0.1:6379/0``); empty: per process, in memory.
    trusted_proxies:
        Reverse proxies whose ``X-Forwarded-For`` names the client (``VIGIE_TRUSTED_PROXIES``):
        a number of hops (``1``) or a comma-separated list of addresses or networks
        (``10.0.0.5,10.1.0.0/16``); empty: the peer address is the client, the header ignored.
    retain_vintages:
        ``python -m service prune`` keeps this many newest cube vintages, plus every vintage
        something kept refers to (``VIGIE_RETAIN_VINTAGES``, default 30; 0 keeps all).
    retain_forecast_runs:
        Forecast runs kept per target, frequency, level and model, newest first, plus every run
        referenced (``VIGIE_RETAIN_FORECAST_RUNS``, default 8; 0 keeps all). See
        :mod:`service.retention`.
    upload_max_bytes:
        Largest city file accepted by ``POST /api/v1/uploads`` and ``python -m service upload``
        (``VIGIE_UPLOAD_MAX_BYTES``, default 10 MiB; larger: 413 / refused before reading).
    upload_quarantine_max_files, upload_quarantine_max_bytes:
        Caps of the refused uploads kept with their reports (``VIGIE_UPLOAD_QUARANTINE_MAX_FILES``,
        default 200; ``VIGIE_UPLOAD_QUARANTINE_MAX_BYTES``, default 100 MiB; 0: no cap): the
        oldest are dropped beyond them (:func:`features.uploads.cap_quarantine`).
    tmp_grace_hours:
        Age after which a temporary entry whose writer cannot be checked (another host, no
        writer in its name) is removed (``VIGIE_TMP_GRACE_HOURS``, default 6); see
        :mod:`features.tempfiles`.
    store_url:
        Where the cube vintages, forecast runs, scenario results and model registry are kept
        (``VIGIE_STORE_URL``): empty, the home folder; a folder or ``file://`` URL; or
        ``s3://bucket/prefix`` (:mod:`features.storage.objects`).
    store_options:
        Options of the object store's file system (``VIGIE_STORE_OPTIONS``, a JSON object,
        e.g. ``{"endpoint_url": "http://10.0.0.9:9000"}``).
    """

    home: Path
    data_dir: Path
    database_url: str
    dask_address: str = ""
    dask_dashboard: str = ""
    small_count_threshold: int = 10
    risk_thresholds: Path | None = None
    redis_url: str = ""
    trusted_proxies: str = ""
    retain_vintages: int = 30
    retain_forecast_runs: int = 8
    tmp_grace_hours: float = 6.0
    store_url: str = ""
    store_options: dict = field(default_factory=dict)
    upload_max_bytes: int = 10 * 1024 * 1024
    upload_quarantine_max_files: int = 200
    upload_quarantine_max_bytes: int = 100 * 1024 * 1024
    extra: dict = field(default_factory=dict)

    # -- the paths of everything Vigie keeps (one place: callers use these, never spell them)
    @property
    def cube_dir(self) -> Path:
        """The cube store (:mod:`features.store`)."""
        return self.home / "cube"

    @property
    def vintages_dir(self) -> Path:
        """One immutable folder per cube vintage."""
        return self.cube_dir / "vintages"

    @property
    def disclosure_dir(self) -> Path:
        """Per-vintage disclosure records (:func:`features.disclosure.store_masks`)."""
        return self.cube_dir / "disclosure"

    @property
    def raw_dir(self) -> Path:
        """Content-addressed copies of every raw input file that was ingested."""
        return self.home / "raw"

    @property
    def uploads_dir(self) -> Path:
        """City files sent through the service (:mod:`features.uploads`): ``index.json``
        (every upload, accepted or refused) and ``active/``, the accepted files the ingest
        reads beside the data directory; every version is also in the raw store."""
        return self.home / "uploads"

    @property
    def uploads_active_dir(self) -> Path:
        """The accepted uploads each ingest reads (one file per upload still in force)."""
        return self.uploads_dir / "active"

    @property
    def quarantine_dir(self) -> Path:
        """Source files that failed validation, each with its report."""
        return self.home / "quarantine"

    @property
    def forecasts_dir(self) -> Path:
        """The forecast store (:mod:`models.store`): ``runs/`` and ``latest/``."""
        return self.home / "forecasts"

    @property
    def forecast_runs_dir(self) -> Path:
        return self.forecasts_dir / "runs"

    @property
    def forecast_latest_dir(self) -> Path:
        """The pointers to the newest run of each kind."""
        return self.forecasts_dir / "latest"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def registry_file(self) -> Path:
        """Models created at run time (:mod:`models.registry`)."""
        return self.models_dir / "registry.json"

    @property
    def leaderboard_file(self) -> Path:
        """The ``backtest`` job's leaderboard."""
        return self.models_dir / "leaderboard.json"

    @property
    def retrospective_file(self) -> Path:
        """The retrospective track record (:mod:`models.trackrecord`)."""
        return self.models_dir / "retrospective.json"

    @property
    def backtests_dir(self) -> Path:
        """Past dates' raw forecasts (:class:`models.trackrecord.BacktestStore`)."""
        return self.models_dir / "backtests"

    @property
    def scenario_runs_dir(self) -> Path:
        """Scenario jobs' results and their publication marks."""
        return self.home / "scenario_runs"

    @property
    def audit_journal_dir(self) -> Path:
        """The audit journals of the API processes (:mod:`service.audit_journal`): one
        append-only file per process, replayed into the database."""
        return self.home / "audit_journal"

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        env = os.environ
        home = Path(overrides.pop("home", None) or env.get("VIGIE_HOME") or _default_home())
        home = home.resolve()
        data_dir = (overrides.pop("data_dir", None) or env.get("VIGIE_DATA_DIR")
                    or _default_data_dir())
        database_url = (
            overrides.pop("database_url", None)
            or env.get("VIGIE_DATABASE_URL")
            or f"sqlite:///{home / 'vigie.sqlite'}"
        )
        return cls(
            home=home,
            data_dir=Path(data_dir).resolve(),
            database_url=database_url,
            dask_address=overrides.pop("dask_address", None) or env.get("VIGIE_DASK_ADDRESS", ""),
            dask_dashboard=str(overrides.pop("dask_dashboard", None)
                               or env.get("VIGIE_DASK_DASHBOARD", "")).strip(),
            small_count_threshold=int(
                overrides.pop("small_count_threshold", None)
                or env.get("VIGIE_SMALL_COUNT_THRESHOLD", 10)
            ),
            risk_thresholds=_optional_path(overrides.pop("risk_thresholds", None)
                                           or env.get("VIGIE_RISK_THRESHOLDS")),
            redis_url=overrides.pop("redis_url", None) or env.get("VIGIE_REDIS_URL", ""),
            trusted_proxies=str(overrides.pop("trusted_proxies", None)
                                or env.get("VIGIE_TRUSTED_PROXIES", "")).strip(),
            retain_vintages=int(_first(overrides.pop("retain_vintages", None),
                                       env.get("VIGIE_RETAIN_VINTAGES"), 30)),
            retain_forecast_runs=int(_first(overrides.pop("retain_forecast_runs", None),
                                            env.get("VIGIE_RETAIN_FORECAST_RUNS"), 8)),
            tmp_grace_hours=float(_first(overrides.pop("tmp_grace_hours", None),
                                         env.get("VIGIE_TMP_GRACE_HOURS"), 6.0)),
            store_url=_store_url(overrides.pop("store_url", None), env),
            store_options=_store_options(overrides.pop("store_options", None), env),
            upload_max_bytes=int(_first(overrides.pop("upload_max_bytes", None),
                                        env.get("VIGIE_UPLOAD_MAX_BYTES"), 10 * 1024 * 1024)),
            upload_quarantine_max_files=int(_first(
                overrides.pop("upload_quarantine_max_files", None),
                env.get("VIGIE_UPLOAD_QUARANTINE_MAX_FILES"), 200)),
            upload_quarantine_max_bytes=int(_first(
                overrides.pop("upload_quarantine_max_bytes", None),
                env.get("VIGIE_UPLOAD_QUARANTINE_MAX_BYTES"), 100 * 1024 * 1024)),
            extra=overrides,
        )


def _first(*values):
    """The first value that is set (0 is a value; None and "" are not)."""
    return next(v for v in values if v is not None and v != "")


def _store_url(value: str | None, env) -> str:
    from features.storage.objects import check_url

    return check_url(value if value is not None else env.get("VIGIE_STORE_URL", ""))


def _store_options(value: dict | None, env) -> dict:
    from features.storage.objects import parse_options

    return dict(value) if value is not None else parse_options(env.get("VIGIE_STORE_OPTIONS"))


def _optional_path(value: str | Path | None) -> Path | None:
    return Path(value).expanduser().resolve() if value else None
