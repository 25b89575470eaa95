"""Pages of a list answer: the query schema (``page``, ``per_page``), one page of a list
(:func:`paginate`; an answer with one page of its rows, :func:`paged`; a list rendered as JSON or
CSV, :func:`render_page`), the page of a list a database pages itself (:func:`stored_page`, from
:func:`page_window` and :func:`page_info`), and the ``Link`` header of the neighbouring pages
(:func:`link_header`)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from apiflask import Schema, fields
from apiflask.validators import Range
from flask import Response, current_app, g, request

from service.api.formats import FormatQuery, clean, render


class PageQuery(Schema):
    page = fields.Integer(load_default=1, validate=Range(min=1, max=1_000_000),
                          metadata={"description": "page number, from 1"})
    per_page = fields.Integer(load_default=100, validate=Range(min=1, max=1000),
                              metadata={"description": "items per page (max 1000)"})


class ListQuery(FormatQuery, PageQuery):
    pass


class PageInfo(Schema):
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True)
    pages = fields.Integer(required=True)


def page_info(query: dict, total: int) -> dict:
    """``{page, per_page, total, pages}`` of the requested page of ``total`` items."""
    page, per_page = query.get("page", 1), query.get("per_page", 100)
    return {"page": page, "per_page": per_page, "total": total,
            "pages": max(1, math.ceil(total / per_page))}


def page_window(query: dict) -> tuple[int, int]:
    """(limit, offset) of the requested page, for a store that pages itself (a database)."""
    page, per_page = query.get("page", 1), query.get("per_page", 100)
    return per_page, (page - 1) * per_page


def paginate(items: Sequence, query: dict) -> tuple[list, dict]:
    """One page of ``items`` and the page info; CSV exports are not paginated. The info is
    kept for the ``X-Total-Count`` and ``Link`` headers of a cached answer."""
    total = len(items)
    if query.get("format") == "csv":
        return list(items), {"page": 1, "per_page": max(total, 1), "total": total, "pages": 1}
    info = page_info(query, total)
    limit, start = page_window(query)
    g.page_info = info
    g.page_query = query
    return list(items[start:start + limit]), info


def paged(answer: dict, query: dict) -> dict:
    """``answer`` with one page of its ``rows`` as ``items`` (every row for CSV), followed by
    the page info as ``pagination``."""
    items, info = paginate(answer.pop("rows"), query)
    return {**answer, "items": items, "pagination": info}


def render_page(rows: Sequence, query: dict, *, columns: Sequence[str] | None = None,
                filename: str = "vigie") -> Response:
    """A list answer ``{items, pagination}`` of one page of ``rows`` as JSON, or every row as
    CSV (``columns`` only)."""
    return render(paged({"rows": rows}, query), query, columns=columns, filename=filename)


def stored_page(query: dict, fetch: Callable[..., tuple[list, int]]) -> dict:
    """``{items, pagination}`` of the requested page of a list a store pages itself:
    ``fetch(limit=…, offset=…)`` gives that page's rows and the total."""
    limit, offset = page_window(query)
    rows, total = fetch(limit=limit, offset=offset)
    return {"items": rows, "pagination": page_info(query, total)}


def query_schemas(view: Callable | None) -> list:
    """The marshmallow schemas a view validates its query string with (``@bp.input(...,
    location="query")``), read from apiflask's annotations."""
    spec = getattr(view, "_spec", None) or {}
    return [schema for schema, location in spec.get("args") or ()
            if location in ("query", "querystring")]


def link_header(info: dict, query: dict | None = None) -> str | None:
    """RFC 8288 ``Link`` of the first/prev/next/last pages, built from the *validated* query
    (``query``, else ``g.page_query``): unknown parameters are dropped, values equal to the
    schema's default left out, everything percent-encoded (a value can never break out of
    the header)."""
    query = query if query is not None else (getattr(g, "page_query", None) or {})
    defaults = {}
    for schema in query_schemas(current_app.view_functions.get(request.endpoint)):
        for name, fld in schema.fields.items():
            defaults[name] = fld.load_default
    args: dict[str, Any] = {}
    for key, value in query.items():
        if key == "page" or value is None or (key in defaults and defaults[key] == value):
            continue
        if isinstance(value, dt.date | dt.datetime):
            value = value.isoformat()
        args[key] = [clean(v) for v in value] if isinstance(value, list | tuple) else value
    path = quote(request.path, safe="/")
    links = []
    for rel, page in (("first", 1), ("prev", info["page"] - 1), ("next", info["page"] + 1),
                      ("last", info["pages"])):
        if 1 <= page <= info["pages"] and (rel in ("first", "last") or page != info["page"]):
            encoded = urlencode({**args, "page": page}, doseq=True)
            links.append(f'<{path}?{encoded}>; rel="{rel}"')
    return ", ".join(links) or None
