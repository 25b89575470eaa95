"""The audit trail: every authenticated request and every published forecast, in the database.

Each row says who (token name and role, or the job that published), when, what (method, path,
query, status) and which cube vintage and model version the answer came from. Routes name those
with :func:`note` (``note(vintage_id=..., model_version=..., run_id=...)``); the same values go
out as ``X-Vigie-Vintage`` / ``X-Vigie-Model-Version`` / ``X-Vigie-Run`` response headers.

Writes are synchronous: an audit row that could be lost in a crash would not be an audit trail.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, g, request

from features.catalog import as_utc, utcnow
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


def record(engine: sa.Engine, *, event: str, actor: str, role: str,
           details: dict | None = None, **columns: Any) -> None:
    """Insert one audit row (columns: method, path, query, status, vintage_id, …)."""
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
    """Audit rows newest first, and how many match in all."""
    rows, total = newest_page(engine, audit_log,
                              {audit_log.c.actor: actor, audit_log.c.event: event}, limit, offset)
    out = [dict(r._mapping) for r in rows]
    for row in out:
        row["at"] = as_utc(row["at"]).isoformat()
    return out, total


def _printable(text: str) -> str:
    """Control characters percent-encoded (PostgreSQL refuses NUL in text: a path holding one,
    answered 400, would otherwise leave no audit row)."""
    return re.sub("[\x00-\x1f\x7f-\x9f]", lambda m: f"%{ord(m.group()):02X}", text)


def init_app(app: Flask) -> None:
    """Add provenance headers to responses and audit authenticated requests."""

    @app.after_request
    def _after(response):
        provenance = getattr(g, "provenance", None) or {}
        for key, header in HEADERS.items():
            if provenance.get(key):
                response.headers[header] = str(provenance[key])
        principal = getattr(g, "principal", None)
        if principal is not None and principal.authenticated:
            try:
                record(current_app.extensions["vigie"].engine, event="request",
                       actor=principal.name, role=principal.role, method=request.method,
                       path=_printable(request.path)[:2000],
                       query=request.query_string.decode("utf-8", "backslashreplace")[:2000],
                       status=response.status_code,
                       vintage_id=provenance.get("vintage_id"),
                       model_version=provenance.get("model_version"),
                       run_id=provenance.get("run_id"), remote_addr=request.remote_addr)
            except Exception:  # the answer is still right; the failure is logged loudly
                log.exception("could not write the audit row of %s %s", request.method,
                              request.path)
        return response
