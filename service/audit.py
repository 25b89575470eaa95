"""The audit trail: every authenticated request and every published forecast, in the database.

Each row says who (token name and role, or the job that published), when, what (method, path,
query, status) and which cube vintage and model version the answer came from. Routes name those
with :func:`note` (``note(vintage_id=..., model_version=..., run_id=...)``); the same values go
out as ``X-Vigie-Vintage`` / ``X-Vigie-Model-Version`` / ``X-Vigie-Run`` response headers.

A request's row is written to this process's audit journal (:mod:`service.audit_journal`)
before the answer is sent, and shipped to the database in batches by a background thread: off
the request path, yet a crash loses no answered request's row (the journal is replayed at the
next start). Readers in this process (:func:`query`) ship what is pending first. Other rows
(publications, :func:`record`) are written to the database directly.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import sqlalchemy as sa
from flask import Flask, g, request

from features.catalog import as_utc, utcnow
from service import audit_journal
from service.db import audit_log, newest_page

log = logging.getLogger(__name__)

HEADERS = {"vintage_id": "X-Vigie-Vintage", "model_version": "X-Vigie-Model-Version",
           "run_id": "X-Vigie-Run"}


def note(*, pin: bool = False, **provenance: Any) -> None:
    """Record where the current answer came from (vintage_id, model_version, run_id).

    ``pin=True``: these are the answer's own (a forecast's vintage and model version); notes
    made later while the view looks things up in the current cube (territory names,
    indicators) do not replace them.
    """
    current = getattr(g, "provenance", None) or {}
    fixed = getattr(g, "provenance_pinned", None) or set()
    given = {k: v for k, v in provenance.items() if v}
    current.update({k: v for k, v in given.items() if pin or k not in fixed})
    if pin:
        g.provenance_pinned = fixed | set(given)
    g.provenance = current


def pinned(key: str) -> bool:
    """Whether the current answer's ``key`` (e.g. ``vintage_id``) was pinned by the view."""
    return key in (getattr(g, "provenance_pinned", None) or set())


def ship_pending(engine: sa.Engine) -> None:
    """Ship the rows this process's audit journals hold for ``engine`` (call before reading
    the audit trail); a failure is logged and the rows stay in the journal for its shipper."""
    try:
        audit_journal.flush(engine)
    except Exception:
        log.exception("could not ship the audit journal's pending rows before reading")


def record(engine: sa.Engine, *, event: str, actor: str, role: str,
           details: dict | None = None, **columns: Any) -> None:
    """Insert one audit row (columns: method, path, query, status, vintage_id, …), after the
    rows this process's journal holds for ``engine`` (rows keep the order of events)."""
    ship_pending(engine)
    with engine.begin() as conn:
        conn.execute(audit_log.insert().values(
            at=utcnow(), event=event, actor=actor, role=role, details=details, **columns))


def record_publication(engine: sa.Engine, metadata: dict, actor: str = "job:forecast") -> None:
    """Audit a forecast run made public (written to the forecast store)."""
    record(engine, event="forecast_published", actor=actor, role="admin",
           vintage_id=str(metadata.get("vintage_id") or "")[:64] or None,
           model_version=f"{metadata.get('model', '')}@{metadata.get('model_version', '')}"[:120],
           run_id=str(metadata.get("run_id") or "")[:64] or None,
           details={k: metadata.get(k) for k in ("target", "frequency", "level", "as_of",
                                                 "rows", "created_at")})


def query(engine: sa.Engine, *, actor: str | None = None, event: str | None = None,
          limit: int = 100, offset: int = 0) -> tuple[list[dict], int]:
    """Audit rows newest first, and how many match in all (this process's journal shipped
    first, so an answer sees every request this process answered)."""
    ship_pending(engine)
    rows, total = newest_page(engine, audit_log,
                              {audit_log.c.actor: actor, audit_log.c.event: event}, limit, offset)
    out = [dict(r._mapping) for r in rows]
    for row in out:
        row["at"] = as_utc(row["at"]).isoformat()
        row.pop("request_id", None)  # the journal's, not part of the answer
    return out, total


def _printable(text: str) -> str:
    """Control characters percent-encoded (PostgreSQL refuses NUL in text: a path holding one,
    answered 400, would otherwise leave no audit row)."""
    return re.sub("[\x00-\x1f\x7f-\x9f]", lambda m: f"%{ord(m.group()):02X}", text)


def init_app(app: Flask) -> None:
    """Add provenance headers to responses and audit authenticated requests (through the
    audit journal: ``AUDIT_SYNC`` is its durability policy, ``"write"`` or ``"fsync"``; the
    journals of dead processes of this home are replayed first)."""
    vigie = app.extensions["vigie"]
    journal = audit_journal.AuditJournal(vigie.settings.audit_journal_dir, vigie.engine,
                                         sync=app.config.get("AUDIT_SYNC") or "write")
    try:
        audit_journal.recover(vigie.settings.audit_journal_dir, vigie.engine)
    except Exception:  # the service starts; the journals stay for the next start
        log.exception("could not replay the audit journals in %s",
                      vigie.settings.audit_journal_dir)
    vigie.extra["audit_journal"] = journal

    @app.after_request
    def _after(response):
        provenance = getattr(g, "provenance", None) or {}
        for key, header in HEADERS.items():
            if provenance.get(key):
                response.headers[header] = str(provenance[key])
        principal = getattr(g, "principal", None)
        if principal is not None and principal.authenticated:
            _write(journal, request_row(principal, request.method, request.path,
                                        request.query_string, response.status_code,
                                        provenance, request.remote_addr))
        return response


def request_row(principal, method: str, path: str, query_string: bytes, status: int,
                provenance: dict, remote_addr: str | None) -> dict:
    """The audit row of an authenticated request (also written by :mod:`service.fastpath`)."""
    row = {"request_id": audit_journal.new_request_id(), "at": utcnow().isoformat(),
           "event": "request", "actor": principal.name, "role": principal.role,
           "method": method, "path": _printable(path)[:2000],
           "query": _printable(query_string.decode("utf-8", "backslashreplace"))[:2000],
           "status": status,
           "vintage_id": provenance.get("vintage_id"),
           "model_version": provenance.get("model_version"),
           "run_id": provenance.get("run_id"), "remote_addr": remote_addr}
    if principal.territories is not None:  # a scoped token: its territories named
        row["details"] = {"territories": sorted(principal.territories)}
    return {k: v for k, v in row.items() if v is not None}


def _write(journal: audit_journal.AuditJournal, row: dict) -> None:
    """The row into the journal; straight into the database when the journal cannot be
    written (disk full…); logged loudly when neither works (the answer is still right)."""
    try:
        journal.append(row)
        return
    except Exception:
        log.exception("audit journal %s not writable: writing the row directly", journal.path)
    try:
        audit_journal.insert_rows(journal.engine, [row])
    except Exception:
        log.exception("could not write the audit row of %s %s", row.get("method"),
                      row.get("path"))
