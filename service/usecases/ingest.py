"""Ingest: read, validate and merge every source found into a new cube vintage.

Called by ``python -m service ingest`` and the ``ingest`` job (which then queues the forecast
refresh), and by ``backtest --data-dir`` through :func:`ensure_ingested`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def ingest(settings: Any, *, data_dir: str | Path | None = None, download: bool = False,
           only: list[str] | None = None, force: bool = False, actor: str = "cli") -> Any:
    """Ingest ``data_dir`` (default: the settings' data directory) into a new vintage unless
    nothing changed (``force``: write one anyway); ``only`` these sources; ``download`` the
    official publications first. The :class:`features.ingest.IngestReport`.

    Audited: one ``ingest`` row per call (``actor``: ``cli`` or ``job:ingest``), its outcome,
    new vintage (in the details: a vintage an ingest made is not pinned by it) and failed
    sources."""
    from features.catalog import get_engine
    from features.ingest import run_ingest
    from service.audit import record

    report = run_ingest(settings, data_dir=Path(data_dir) if data_dir else None,
                        download=download, only=only, force=force)
    record(get_engine(settings.database_url), event="ingest", actor=actor, role="admin",
           details={"outcome": report.outcome, "vintage_id": report.vintage_id,
                    "failed_sources": [s.source for s in report.failed],
                    "only": only, "force": bool(force), "download": bool(download)})
    return report


def ensure_ingested(settings: Any) -> None:
    """Ingest ``settings.data_dir`` unless the current vintage was built from it."""
    from features.errors import NoVintageError
    from features.store import CubeStore

    try:
        current = CubeStore(settings).current_vintage()
        if Path(str(current.get("data_dir") or "")).resolve() == settings.data_dir:
            return
    except NoVintageError:
        pass
    log.info("ingesting %s", settings.data_dir)
    ingest(settings, data_dir=settings.data_dir)
