"""Every database table Vigie keeps (SQLAlchemy Core), in two sets.

* :data:`catalog_metadata`: the cube's catalog, one row per vintage and per ingest run
  (re-exported by :mod:`features.catalog`);
* :data:`service_metadata`: API tokens, the audit log, job runs, leases and APScheduler's job
  store (re-exported by :mod:`service.db`).

Their creation and every later change go through the Alembic scripts in
``features/storage/migrations`` (:func:`features.storage.db.migrate`); the migrations test
checks that the migrated schema matches these definitions.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC: every timestamp the tables store."""
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


#: The cube's catalog.
catalog_metadata = sa.MetaData()

vintages = sa.Table(
    "cube_vintages", catalog_metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("data_dir", sa.Text),
    sa.Column("sources", sa.JSON, nullable=False),       # name → summary (rows, dates, warnings)
    sa.Column("files", sa.JSON, nullable=False),         # name → sha256, size, rows
    sa.Column("row_counts", sa.JSON, nullable=False),    # frequency → {indicator: non-NaN cells}
    sa.Column("fitted", sa.JSON),                        # parameters fitted while building
)

ingest_runs = sa.Table(
    "ingest_runs", catalog_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.String(16), nullable=False),  # ok, partial, unchanged, failed
    sa.Column("vintage_id", sa.String(64)),
    sa.Column("report", sa.JSON),
)

#: The service's tables.
service_metadata = sa.MetaData()

#: API tokens; only a SHA-256 of the secret is kept (the secret is 256 random bits, so a slow
#: password hash would add latency to every request without adding protection).
api_tokens = sa.Table(
    "api_tokens", service_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    # A ``city`` token's scope: the JSON list of its commune and EPCI codes (null: unscoped).
    sa.Column("territories", sa.JSON),
)

#: One row (id 1) whose ``generation`` grows at every token revocation, in the revocation's
#: transaction: processes that keep verified tokens in memory drop them when it changes.
api_token_generation = sa.Table(
    "api_token_generation", service_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
)

#: Who asked what, when, and which data vintage and model version the answer came from.
audit_log = sa.Table(
    "audit_log", service_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("event", sa.String(32), nullable=False),      # request, forecast_published, …
    sa.Column("actor", sa.String(100), nullable=False),     # token name, or a job name
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("method", sa.String(8)),
    sa.Column("path", sa.Text),
    sa.Column("query", sa.Text),
    sa.Column("status", sa.Integer),
    sa.Column("vintage_id", sa.String(64)),
    sa.Column("model_version", sa.String(120)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("remote_addr", sa.String(64)),
    sa.Column("details", sa.JSON),
    # The request's id (written by the audit journal, service.audit_journal): a row shipped
    # twice is stored once. Null for rows written directly (publications).
    sa.Column("request_id", sa.String(32), index=True, unique=True),
)

#: Job history and queue: a row is queued, then running, then ok / failed / interrupted.
#: ``worker`` and ``fence`` name who runs it: the scheduler lease's holder and the lease's epoch
#: when the run was claimed (``fence`` is null for runs claimed without the lease, e.g. by
#: ``jobs run``). Finishing or publishing is a compare-and-set on both (see ``service.jobs``).
job_runs = sa.Table(
    "job_runs", service_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("trigger", sa.String(16), nullable=False),  # schedule, manual, api, retry, chain
    sa.Column("attempt", sa.Integer, nullable=False, default=1),
    sa.Column("max_attempts", sa.Integer, nullable=False, default=1),
    sa.Column("params", sa.JSON),
    sa.Column("requested_by", sa.String(100)),
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("worker", sa.String(128)),
    sa.Column("error", sa.Text),
    sa.Column("result", sa.JSON),
    sa.Column("retry_of", sa.Integer),
    sa.Column("fence", sa.Integer),
)

#: Leases: the holder of ``scheduler`` runs the scheduler; others wait for it to expire.
#: ``epoch`` grows by one at every change of holder and never goes back (a released lease is
#: expired, not deleted): it is the fencing token of the runs claimed under the lease.
locks = sa.Table(
    "service_locks", service_metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
)

#: APScheduler's persistent job store, declared here so that migrations own the schema
#: (same definition as ``apscheduler.jobstores.sqlalchemy``; it then finds the table present).
apscheduler_jobs = sa.Table(
    "apscheduler_jobs", service_metadata,
    sa.Column("id", sa.Unicode(191), primary_key=True),
    sa.Column("next_run_time", sa.Float(25), index=True),
    sa.Column("job_state", sa.LargeBinary, nullable=False),
)


def all_metadata() -> list[sa.MetaData]:
    """Every table set the migrations must cover: the catalog's and the service's."""
    return [catalog_metadata, service_metadata]
