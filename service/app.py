"""The Flask application factory.

``create_app(config)``: defaults, then ``VIGIE_API_*`` environment variables (e.g.
``VIGIE_API_RATELIMIT_DEFAULT="600 per minute"``), then ``config`` on top (tests). The cube,
forecast store and database come from :class:`features.settings.Settings` (``config["SETTINGS"]``
or the environment). Blueprints are registered per resource under ``/api/v1``; the OpenAPI
document is generated from their decorators at ``/api/v1/openapi.json`` with a Swagger UI page at
``/api/v1/docs`` whose assets are served locally (no CDN).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

from apiflask import APIFlask
from flask import send_from_directory

from features.catalog import get_engine
from features.settings import Settings
from service import audit, auth, errors, guards
from service.api.response_cache import ResponseCache
from service.api.state import VigieState

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
BLUEPRINTS = ("territories", "indicators", "data", "vintages", "forecasts", "targets",
              "models", "scenarios", "alerts", "risk", "jobs", "audit", "uploads")

DEFAULTS: dict[str, Any] = {
    "SETTINGS": None,                      # features.settings.Settings; None: from environment
    "START_SCHEDULER": False,              # `serve` turns it on
    "SCHEDULER": {},                       # keyword arguments of service.jobs.Scheduler
    "RESPONSE_CACHE_SIZE": 2048,           # entries
    "RESPONSE_CACHE_BYTES": 64 * 1024 * 1024,  # and bytes (bodies, headers and keys)
    "MAX_CONTENT_LENGTH": 1024 * 1024,     # request bodies: 413 above (service.guards)
    "MAX_JSON_DEPTH": 32,                  # JSON bodies nested deeper: 400 before parsing
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_PUBLIC": "300 per minute",  # per client address, whole API (service.ratelimit)
    "RATELIMIT_TOKEN": "3000 per minute",  # per token
    "RATELIMIT_AUTH_FAILURES": "20 per minute",  # refused tokens per client address, then 429
    "RATELIMIT_STORAGE_URI": None,         # None: VIGIE_REDIS_URL if set, else memory://
    "RATELIMIT_KEY_PREFIX": None,          # None: one per deployment (digest of the database URL)
    "RATELIMIT_HEADERS_ENABLED": True,
    "FAST_PATH": True,                     # repeated cached reads answered without Flask
                                           # (service.fastpath: same bytes, audit, limits)
    "TOKEN_CACHE_SECONDS": 1.0,            # verified tokens kept in memory; a revocation reaches
                                           # every process within this delay (0: no cache)
    "AUDIT_SYNC": "write",                 # audit journal: "write" (survives a crash of the
                                           # process) or "fsync" (power loss too; group commit)
    "JSON_SORT_KEYS": False,
    # apiflask: 400 for invalid input, and our error shape in the document.
    "VALIDATION_ERROR_STATUS_CODE": 400,
    "VALIDATION_ERROR_SCHEMA": errors.ERROR_SCHEMA,
    "HTTP_ERROR_SCHEMA": errors.ERROR_SCHEMA,
    "AUTO_404_RESPONSE": True,
    "SECURITY_SCHEMES": {"BearerAuth": {"type": "http", "scheme": "bearer",
                                        "description": "API token (python -m service token "
                                                       "create); without it: public role"}},
    "SWAGGER_UI_CSS": "/api/v1/docs/assets/swagger-ui.css",
    "SWAGGER_UI_BUNDLE_JS": "/api/v1/docs/assets/swagger-ui-bundle.js",
    "SWAGGER_UI_STANDALONE_PRESET_JS": "/api/v1/docs/assets/swagger-ui-standalone-preset.js",
    "DOCS_FAVICON": "/api/v1/docs/assets/favicon-32x32.png",
    "DESCRIPTION": (
        "Vigie: crisis-response analytics and forecasting for French territories. Without a "
        "token, answers are public: aggregated territories only, counts below the small-count "
        "threshold suppressed. JSON by default; `format=csv` (with `sep=;` for French Excel) "
        "on lists. Every error is `{code, message, details}`."),
}


def _swagger_assets() -> Path:
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or spec.origin is None:  # pragma: no cover - listed in requirements.txt
        raise RuntimeError("flask-swagger-ui is not installed (pip install -r requirements.txt)")
    return Path(spec.origin).parent / "dist"


def create_app(config: dict[str, Any] | None = None) -> APIFlask:
    """Build the Vigie application.

    Parameters
    ----------
    config:
        Flask configuration applied last (tests): ``SETTINGS``, ``START_SCHEDULER``,
        ``SCHEDULER``, ``RATELIMIT_*``, ``TESTING``…
    """
    app = APIFlask("service", title="Vigie API", version=API_VERSION,
                   spec_path="/api/v1/openapi.json", docs_path="/api/v1/docs",
                   docs_ui="swagger-ui")
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env(prefix="VIGIE_API")
    if config:
        app.config.from_mapping(config)
    settings = app.config["SETTINGS"] or Settings.from_env()
    engine = get_engine(settings.database_url)
    vigie = VigieState(settings, engine, ResponseCache(app.config["RESPONSE_CACHE_SIZE"],
                                                       app.config["RESPONSE_CACHE_BYTES"]))
    app.extensions["vigie"] = vigie

    errors.init_app(app)
    app.before_request(auth.resolve_principal)
    audit.init_app(app)
    _init_limiter(app)
    # Control characters, role (before any body is read), body size and JSON depth; security
    # headers on every answer. After the token and rate-limit hooks, before the cache's.
    guards.init_app(app)

    from service.api import health

    health.init_app(app)
    from service.api.cache import serve_from_cache

    app.before_request(serve_from_cache)  # last: after token, rate limit and timer hooks
    for name in BLUEPRINTS:
        module = importlib.import_module(f"service.api.{name}")
        app.register_blueprint(module.bp, url_prefix=f"/api/v1/{module.PREFIX}")
    _register_dashboard(app)

    assets = _swagger_assets()

    @app.get("/api/v1/docs/assets/<path:name>")
    @app.doc(hide=True)
    def docs_assets(name: str):
        return send_from_directory(assets, name, max_age=86400)

    from service.api.openapi import init_app as init_openapi

    init_openapi(app)
    from service.fastpath import install as install_fast_path

    install_fast_path(app)  # in front of Flask, behind the client-address middleware

    if app.config["START_SCHEDULER"]:
        start_scheduler(app)
    return app


def _register_dashboard(app: APIFlask) -> None:
    """The dashboard (issue 6) plugs in when present: ``init_app(app)`` or a ``bp`` blueprint."""
    if importlib.util.find_spec("service.dashboard") is None:
        return
    dashboard = importlib.import_module("service.dashboard")
    if hasattr(dashboard, "init_app"):
        dashboard.init_app(app)
    elif hasattr(dashboard, "bp"):
        app.register_blueprint(dashboard.bp)
    else:
        log.debug("service.dashboard has neither init_app nor bp: not registered yet")


def start_scheduler(app: APIFlask):
    """Start this process's scheduler (it runs jobs only while it holds the database lease)."""
    from service.jobs import Scheduler

    vigie: VigieState = app.extensions["vigie"]
    if vigie.scheduler is None:
        vigie.scheduler = Scheduler(vigie.settings, vigie.engine, **app.config["SCHEDULER"])
        vigie.scheduler.start()
    return vigie.scheduler


def _init_limiter(app: APIFlask) -> None:
    """Rate limits per token, per client address for the public and for refused tokens; shared
    through Redis when ``VIGIE_REDIS_URL`` is set; client addresses behind
    ``VIGIE_TRUSTED_PROXIES`` (see :mod:`service.ratelimit`)."""
    from service.ratelimit import init_limiter

    init_limiter(app, app.extensions["vigie"].settings)
