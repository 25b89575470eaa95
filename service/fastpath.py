"""The WSGI fast path of cached reads: a repeated GET or HEAD already answered from the response
cache (:mod:`service.api.cache`) is answered again without Flask.

Why: a cached answer costs a few milliseconds through Flask (request context, URL matching, a
dozen hooks, Werkzeug's response), ten times what the WSGI server itself spends on a request.

How it stays Flask's answer: the fast path never renders anything. When Flask answers a request
from the response cache, the fast path keeps what went out (status, every header in order, body)
as a *template*, under the request's method, path, raw query string, the caller's role and
scope, and the raw request headers an answer depends on (:data:`VARIANT_HEADERS`:
content negotiation of the compression, conditional requests). The next request with the same
key is answered from the template only while the response-cache entry it came from is still
the one Flask would serve (same data state, the very same cached object); otherwise Flask
answers and a new template is kept. What changes from one request to the next is done again for
each request, as Flask's hooks do it:

* the caller: no token, or a ``Bearer`` token verified by :func:`service.auth.lookup` (the same
  in-memory cache and revocation generation, so a revoked token is refused within
  ``TOKEN_CACHE_SECONDS``), after the address's failed-authentication budget is checked;
* the rate limit: the same bucket (``RATELIMIT_PUBLIC`` per address or ``RATELIMIT_TOKEN`` per
  token) of Flask-Limiter's storage, counted once, and its ``X-RateLimit-*`` / ``Retry-After``
  headers computed from the window after the hit, in the template's places (a rate of several
  limits, ``"300 per minute;20 per second"``, is left to Flask: it applies every one);
* the audit row (:func:`service.audit.request_row`, written to the same journal) and the
  Prometheus request counter and latency histogram.

Everything else goes to Flask untouched: other methods and paths, an unknown, revoked or
malformed token, a budget already spent (the 429 is Flask's), cookies, an internal request, a
template not learnt yet or stale, a compressed answer whose bytes are not reproducible (gzip
stamps the time), an error of the rate-limit storage. ``FAST_PATH`` (``VIGIE_API_FAST_PATH``,
default on) turns it off. ``tests/test_fast_path.py`` checks, request by request, that both
answers, audit rows and rate-limit counts are the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from werkzeug.http import http_date

from service.api.cache import CACHE_HIT
from service.audit import _write, request_row
from service.auth import PUBLIC, Principal, lookup
from service.ratelimit import INTERNAL_REQUEST, ClientAddress

#: Request headers a cached answer's bytes depend on (compression, conditional requests).
VARIANT_HEADERS = ("HTTP_ACCEPT_ENCODING", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
                   "HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_RANGE", "HTTP_RANGE")
TEMPLATES = 4096            # templates kept (cleared when full)
TEMPLATE_BYTES = 64 << 20   # and their bodies' bytes
KEY_CHARS = 2048            # a request whose key (path, query, variant headers) is longer: Flask
_UNSTABLE_ENCODINGS = (b"gzip", b"deflate")


@dataclass(frozen=True)
class Template:
    """One answer of Flask to one request key, as it went out."""

    cache_key: tuple            # the response-cache key it was served under
    answer: object              # the CachedAnswer object it was served from
    status: str
    headers: tuple[tuple[str, str], ...]
    slots: tuple[tuple[int, str], ...]  # (index in headers, which clock or rate-limit header)
    body: bytes
    status_code: int
    rule: str
    path: str
    query: bytes
    provenance: dict


class FastPath:
    """WSGI middleware in front of Flask's own ``wsgi_app`` (inside the client-address one)."""

    def __init__(self, app, wsgi_app: Callable) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.state = app.extensions["vigie"]
        self.templates: dict[tuple, Template] = {}
        self.bytes = 0
        self._lock = threading.Lock()
        self._limits: dict[str, object] = {}
        self.served = 0

    # ------------------------------------------------------------------ entry
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO", "")
        if (method not in ("GET", "HEAD") or not path.startswith("/api/v1/")
                or "HTTP_COOKIE" in environ or environ.get(INTERNAL_REQUEST)):
            return self.wsgi_app(environ, start_response)
        principal = self._principal(environ)
        if principal is None:
            return self.wsgi_app(environ, start_response)
        key = (method, environ.get("SCRIPT_NAME", ""), path, environ.get("QUERY_STRING", ""),
               principal.role, principal.territories,
               *(environ.get(name) for name in VARIANT_HEADERS))
        template = self.templates.get(key)
        if template is None or not self._current(template):
            return self._learn(key, environ, start_response)
        headers = self._rate_limit(environ, principal, template)
        if headers is None:
            return self.wsgi_app(environ, start_response)
        if principal.authenticated:
            _write(self.state.extra["audit_journal"],
                   request_row(principal, method, template.path, template.query,
                               template.status_code, template.provenance,
                               environ.get("REMOTE_ADDR")))
        self._observe(method, template, started)
        self.served += 1
        start_response(template.status, headers)
        return [template.body]

    # ------------------------------------------------------------------ caller
    def _principal(self, environ: dict) -> Principal | None:
        """The caller as :func:`service.auth.resolve_principal` finds it, or None for anything
        Flask must answer itself (a refusal, a spent failure budget, a storage error)."""
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header:
            return PUBLIC
        failures = self.state.extra.get("auth_failures")
        if failures is not None:
            try:
                remote = environ.get("REMOTE_ADDR") or "unknown"
                if not failures._strategy().test(failures.limit, failures.prefix,
                                                 "auth_failures", remote):
                    return None
            except Exception:
                return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return lookup(self.state.engine, token.strip(),
                      float(self.app.config.get("TOKEN_CACHE_SECONDS", 1.0) or 0.0))

    # ------------------------------------------------------------------ templates
    def _current(self, template: Template) -> bool:
        """Whether Flask would serve this template's cached answer now."""
        if template.cache_key[3] != self.state.freshness():
            return False
        return self.state.cache.get(template.cache_key, count_miss=False) is template.answer

    def _learn(self, key: tuple, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Flask answers; a cache hit's answer is kept as the template of ``key``."""
        seen: dict = {}

        def capture(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers
            return start_response(status, headers, exc_info) if exc_info else \
                start_response(status, headers)

        result = self.wsgi_app(environ, capture)
        hit = environ.get(CACHE_HIT)
        status = seen.get("status", "")
        if hit is None or status[:3] not in ("200", "304"):
            return result
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        self._keep(key, hit, status, list(seen["headers"]), body)
        return [body]

    def _keep(self, key: tuple, hit: dict, status: str, headers: list, body: bytes) -> None:
        if sum(len(part) for part in key if isinstance(part, str)) > KEY_CHARS:
            return  # long paths, queries or header values: never kept (memory)
        names = {n.lower() for n, _ in headers}
        if "set-cookie" in names:
            return
        encoding = next((v for n, v in headers if n.lower() == "content-encoding"), "")
        if any(e in encoding.encode("latin-1").lower() for e in _UNSTABLE_ENCODINGS):
            return
        mapping = {**self._limit_headers(), "Date": "date"}
        slots = tuple((i, mapping[n]) for i, (n, _) in enumerate(headers) if n in mapping)
        template = Template(hit["key"], hit["answer"], status,
                            tuple((n, v) for n, v in headers), slots, body,
                            int(status[:3]), hit["rule"], hit["path"], hit["query"],
                            hit["provenance"])
        with self._lock:
            old = self.templates.pop(key, None)
            if old is not None:
                self.bytes -= len(old.body)
            if len(self.templates) >= TEMPLATES or self.bytes + len(body) > TEMPLATE_BYTES:
                self.templates.clear()
                self.bytes = 0
            self.templates[key] = template
            self.bytes += len(body)

    # ------------------------------------------------------------------ rate limit
    def _limiter(self):
        return self.state.extra.get("limiter")

    def _limit_headers(self) -> dict[str, str]:
        """Header name → ``limit`` / ``remaining`` / ``reset`` / ``retry`` (the limiter's)."""
        from flask_limiter.constants import HeaderNames

        limiter = self._limiter()
        mapping = getattr(limiter, "_header_mapping", None) or {}
        names = {HeaderNames.LIMIT: "limit", HeaderNames.REMAINING: "remaining",
                 HeaderNames.RESET: "reset", HeaderNames.RETRY_AFTER: "retry"}
        return {mapping[h]: what for h, what in names.items() if h in mapping}

    def _rate_limit(self, environ: dict, principal: Principal, template: Template
                    ) -> list[tuple[str, str]] | None:
        """Count the request in its bucket as Flask-Limiter does and return the answer's
        headers; None when Flask must answer (budget spent, storage failing, fallback mode)."""
        values = {"date": _now_http()}
        limiter = self._limiter()
        if limiter is None or not limiter.enabled:
            return _fill(template, values)
        if getattr(limiter, "_storage_dead", False):
            return None
        config = self.app.config
        if principal.authenticated:
            text, who = config["RATELIMIT_TOKEN"], f"token:{principal.token_id}"
        else:
            text, who = config["RATELIMIT_PUBLIC"], f"addr:{environ.get('REMOTE_ADDR')}"
        limit = self._limits.get(text)
        if limit is None:
            from limits import parse_many

            every = parse_many(text)
            # "300 per minute;20 per second": Flask-Limiter applies every limit and names one
            # in its headers; the fast path counts a single one only, so Flask answers.
            limit = self._limits[text] = every[0] if len(every) == 1 else False
        if limit is False:
            return None
        args = (limiter._key_prefix, who, "global") if limiter._key_prefix else (who, "global")
        try:
            strategy = limiter.limiter
            if not strategy.test(limit, *args) or not strategy.hit(limit, *args):
                return None
            if len(template.slots) > 1 or (template.slots and template.slots[0][1] != "date"):
                reset_at, remaining = strategy.get_window_stats(limit, *args)
                reset = int(reset_at + 1)
                values.update(limit=str(limit.amount), remaining=str(remaining),
                              reset=str(reset), retry=str(int(reset - time.time())))
        except Exception:
            return None
        return _fill(template, values)

    # ------------------------------------------------------------------ metrics
    def _observe(self, method: str, template: Template, started: float) -> None:
        metrics = self.state.metrics
        if not metrics:
            return
        metrics["requests"].labels(method, template.rule, str(template.status_code)).inc()
        metrics["latency"].labels(template.rule).observe(time.perf_counter() - started)


def _fill(template: Template, values: dict[str, str]) -> list[tuple[str, str]]:
    headers = list(template.headers)
    for index, what in template.slots:
        headers[index] = (headers[index][0], values[what])
    return headers


_date = [0, ""]


def _now_http() -> str:
    """The Date header of now (as Werkzeug's ``make_conditional`` writes it), once a second."""
    now = int(time.time())
    if _date[0] != now:
        _date[1] = http_date(now)
        _date[0] = now
    return _date[1]


def install(app) -> FastPath | None:
    """Put the fast path right in front of Flask's ``wsgi_app`` (after the client-address
    middleware, so it sees the client's address); ``FAST_PATH`` false: nothing."""
    if not app.config.get("FAST_PATH", True):
        return None
    outer = app.wsgi_app
    if isinstance(outer, ClientAddress):
        fast = FastPath(app, outer.wsgi_app)
        outer.wsgi_app = fast
    else:
        fast = FastPath(app, outer)
        app.wsgi_app = fast
    app.extensions["vigie"].extra["fast_path"] = fast
    return fast
