"""The app's state: settings, database engine, cube store, response cache, scheduler and
metrics of one Flask app (``app.extensions["vigie"]``), and the data state its answers depend on
(:meth:`VigieState.freshness`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import current_app

from features.settings import Settings
from features.storage.objects import newest_mtime
from service.api.response_cache import ResponseCache

FRESHNESS_TTL = 1.0


@dataclass
class VigieState:
    """Per-app objects, in ``app.extensions["vigie"]``."""

    settings: Settings
    engine: sa.Engine
    cache: ResponseCache
    scheduler: Any = None
    metrics: Any = None
    extra: dict = field(default_factory=dict)
    _fresh: tuple[float, tuple] = (0.0, ())
    _fresh_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def store(self):
        from features.store import CubeStore

        store = self.extra.get("store")
        if store is None:
            store = self.extra["store"] = CubeStore(self.settings)
        return store

    def freshness(self) -> tuple:
        """(current vintage id, forecast pointers' mtime, model files' mtime, scenario runs'
        mtime, risk thresholds file's mtime), ≤ 1 s old."""
        now = time.monotonic()
        stamp, value = self._fresh
        if now - stamp < FRESHNESS_TTL and value:
            return value
        with self._fresh_lock:
            stamp, value = self._fresh
            if now - stamp < FRESHNESS_TTL and value:
                return value
            value = (self._vintage_id(), *self._store_stamps(),
                     newest_mtime(self._thresholds_file()))
            self._fresh = (now, value)
            return value

    def _store_stamps(self) -> tuple:
        """Forecast pointers', model files' and scenario runs' stamps: local mtimes, or with
        ``VIGIE_STORE_URL`` the store's listings (the models folder's local files too)."""
        settings = self.settings
        if not settings.store_url:
            return (newest_mtime(settings.forecast_latest_dir), newest_mtime(settings.models_dir),
                    newest_mtime(settings.scenario_runs_dir))
        from features.storage.objects import for_settings

        store = for_settings(settings)
        return (store.stamp("forecasts/latest"),
                (newest_mtime(settings.models_dir), store.stamp("models")),
                store.stamp("scenario_runs"))

    def _thresholds_file(self):
        from features.risk import DEFAULT_THRESHOLDS

        return self.settings.risk_thresholds or DEFAULT_THRESHOLDS

    def _vintage_id(self) -> str:
        try:
            return self.store.current_vintage()["id"]
        except LookupError:
            return ""


def state() -> VigieState:
    return current_app.extensions["vigie"]
