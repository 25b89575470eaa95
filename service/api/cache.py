"""The response cache behind ETag / Last-Modified.

A GET answer depends only on its path and query, on the caller's audience (public, a token's
territorial scope, or unsuppressed: :func:`service.api.disclosure_view.audience`; an answer made
for one scope is never served to another), and on the data state: current cube vintage and
forecast-store pointers. So rendered answers are kept in an LRU
(:class:`service.api.response_cache.ResponseCache`) keyed on exactly that, with a strong ETag
(hash of the body) and a Last-Modified (the vintage's issue time, or the forecast run's
creation). The data state is read at most once a second; vintages and forecast runs are
immutable and switched atomically, so an entry can only be stale for that
second, never torn.

The query part of the key is the view's *validated* arguments (:func:`cache_key`): unknown,
reordered or repeated parameters map to the entry of the same validated query, never to new
entries. The LRU is capped in entries and in bytes (``RESPONSE_CACHE_SIZE``,
``RESPONSE_CACHE_BYTES``, 64 MiB by default).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, g, request

from service.api.disclosure_view import PUBLIC_AUDIENCE, audience
from service.api.paging import link_header, query_schemas
from service.api.response_cache import CachedAnswer
from service.api.state import state
from service.audit import note


def _canonical(value: Any) -> Any:
    """A hashable, order-independent form of validated arguments (dates as ISO text)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def cache_key(args: dict | None, caller: tuple, freshness: tuple) -> tuple:
    """The response cache's key: path, the view's *validated* query arguments (defaults
    filled in, unknown parameters dropped, order and duplicates irrelevant), the caller's
    audience (:func:`~service.api.disclosure_view.audience`), data state. Never the raw query
    string."""
    return (request.path, _canonical(args or {}), caller, freshness)


def set_last_modified(value: dt.datetime | str | None) -> None:
    """Name the time the answer's data last changed (becomes the Last-Modified header)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    g.last_modified = value


#: WSGI environ key set on a request answered from the response cache: what the WSGI fast path
#: (:mod:`service.fastpath`) needs to answer the same request again without Flask.
CACHE_HIT = "vigie.cache_hit"


def _finish(answer: CachedAnswer, caller: tuple, key: tuple) -> Response:
    response = Response(answer.body, mimetype=answer.mimetype, headers=answer.headers)
    response.set_etag(answer.etag)
    if answer.last_modified is not None:
        response.last_modified = answer.last_modified
    response.headers["Cache-Control"] = ("public, max-age=60" if caller == PUBLIC_AUDIENCE
                                         else "private, max-age=0, must-revalidate")
    response.vary.add("Authorization")
    note(**answer.provenance)
    request.environ[CACHE_HIT] = {
        "key": key, "answer": answer, "provenance": dict(getattr(g, "provenance", None) or {}),
        "rule": request.url_rule.rule if request.url_rule else "unmatched",
        "path": request.path, "query": request.query_string}
    return response.make_conditional(request)


def serve_from_cache() -> Response | None:
    """``before_request`` fast path: a GET already answered (same path, validated arguments,
    audience and data state) is served before the view runs. Only 200 answers of ``@cached``
    views are ever stored. The query is validated here with the view's own schema, so the key
    is the one :func:`cached` computes; a query that does not validate falls through to the
    view, which answers the 400. Authentication, role, rate limits, metrics and audit hooks
    still run around it."""
    if request.method != "GET" or not request.path.startswith("/api/v1/"):
        return None
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if view is None or not getattr(view, "_vigie_cached", False):
        return None
    raw = (request.path, request.query_string)
    canonical = _validated.get(raw)
    if canonical is None:
        schemas = query_schemas(view)
        if len(schemas) > 1:
            return None
        args: dict = {}
        if schemas:
            from apiflask.schema_adapters.marshmallow import parser

            try:
                args = parser.parse(schemas[0], request, location="query")
            except Exception:  # invalid: the view's own validation answers it
                return None
        canonical = _canonical(args)
        if len(request.query_string) <= _VALIDATED_QUERY_BYTES:
            if len(_validated) >= _VALIDATED_SIZE:
                _validated.clear()
            _validated[raw] = canonical
    st = state()
    caller = audience()
    key = (request.path, canonical, caller, st.freshness())
    hit = st.cache.get(key, count_miss=False)
    return _finish(hit, caller, key) if hit is not None else None


#: (path, raw query string) → its validated arguments' canonical form, for the fast path: a
#: query validates to the same arguments every time (the view's schema is fixed), so a repeated
#: query skips the validation (~1 ms of each cached answer, profiled). Bounded, cleared when
#: full; only queries that validated and are at most 512 bytes long are kept (at most ~5 MiB).
_validated: dict[tuple[str, bytes], Any] = {}
_VALIDATED_SIZE = 8192
_VALIDATED_QUERY_BYTES = 512


def _answer(response: Response, query: dict) -> CachedAnswer:
    """A rendered 200 answer as the cache keeps it: body, the headers it keeps (with the
    page headers of a paginated list), ETag, Last-Modified and provenance."""
    body = response.get_data()
    headers = {k: v for k, v in response.headers.items()
               if k in ("Content-Disposition", "X-Total-Count")}
    info = getattr(g, "page_info", None)
    if info is not None:
        headers["X-Total-Count"] = str(info["total"])
        link = link_header(info, query)
        if link:
            headers["Link"] = link
    return CachedAnswer(body, response.mimetype, headers,
                        hashlib.blake2b(body, digest_size=12).hexdigest(),
                        getattr(g, "last_modified", None),
                        dict(getattr(g, "provenance", None) or {}))


def cached(view: Callable) -> Callable:
    """Serve GET answers from the response cache, with ETag and Last-Modified (304s). The key
    is :func:`cache_key` of the view's validated ``query_data``."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        st = state()
        caller = audience()
        key = cache_key(kwargs.get("query_data"), caller, st.freshness())
        hit = st.cache.get(key)
        if hit is not None:
            return _finish(hit, caller, key)
        response = view(*args, **kwargs)
        if not isinstance(response, Response):
            response = current_app.make_response(response)
        if response.status_code != 200:
            return response
        answer = _answer(response, kwargs.get("query_data") or {})
        st.cache.put(key, answer)
        finished = _finish(answer, caller, key)
        request.environ.pop(CACHE_HIT, None)  # rendered now: the fast path learns from hits only
        return finished

    wrapper._vigie_cached = True  # read by serve_from_cache (copied up by outer decorators)
    return wrapper
