"""What every endpoint shares: the app's state, formats (JSON, CSV for French Excel),
pagination, small-count suppression, and the response cache behind ETag / Last-Modified.

Response cache
--------------
A GET answer depends only on its path and query, on whether the caller is public (suppressed)
or not, and on the data state: current cube vintage and forecast-store pointers. So rendered
answers are kept in an LRU keyed on exactly that, with a strong ETag (hash of the body) and a
Last-Modified (the vintage's issue time, or the forecast run's creation). The data state is read
at most once a second; vintages and forecast runs are immutable and switched atomically, so an
entry can only be stale for that second, never torn.

The query part of the key is the view's *validated* arguments (:func:`cache_key`): unknown,
reordered or repeated parameters map to the entry of the same validated query, never to new
entries. The LRU is capped in entries and in bytes (``RESPONSE_CACHE_SIZE``,
``RESPONSE_CACHE_BYTES``, 64 MiB by default).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from apiflask import Schema, fields
from apiflask.validators import OneOf, Range
from flask import Response, current_app, g, request

from features.settings import Settings
from service.audit import note, pinned
from service.auth import current_principal
from service.csv_safety import neutralise
from service.labels import indicator_fr

FRESHNESS_TTL = 1.0


# ---------------------------------------------------------------------------- app state
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
            value = (self._vintage_id(), _mtime(self.settings.forecasts_dir / "latest"),
                     _mtime(self.settings.models_dir), _mtime(self.settings.home / "scenario_runs"),
                     _mtime(self._thresholds_file()))
            self._fresh = (now, value)
            return value

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


def _mtime(path) -> int:
    """Newest mtime of a folder and its direct entries (atomic renames touch the folder), or
    of a file."""
    try:
        best = path.stat().st_mtime_ns
        if not path.is_dir():
            return best
        for child in path.iterdir():
            best = max(best, child.stat().st_mtime_ns)
        return best
    except OSError:
        return 0


# ---------------------------------------------------------------------------- query schemas
class FormatQuery(Schema):
    format = fields.String(load_default="json", validate=OneOf(["json", "csv"]),
                           metadata={"description": "json (default) or csv"})
    sep = fields.String(load_default=None, validate=OneOf([",", ";"]),
                        metadata={"description": "CSV separator; ';' (French Excel) also "
                                                 "switches the decimal mark to ','"})
    decimal = fields.String(load_default=None, validate=OneOf([".", ","]),
                            metadata={"description": "CSV decimal mark (default '.' with "
                                                     "sep=',' and ',' with sep=';')"})


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


CSV_CONTENT = {"text/csv": {"schema": {"type": "string"}}}


# ---------------------------------------------------------------------------- rendering
def clean(value: Any) -> Any:
    """JSON-safe scalars: NaN → None, numpy → Python, dates → ISO strings."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def json_response(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str,
                      allow_nan=False)
    return Response(body, status=status, mimetype="application/json")


def _csv_value(value: Any, decimal: str) -> str:
    value = clean(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        text = repr(round(value, 6))
        return text.replace(".", ",") if decimal == "," else text
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    # Text (a city's unit, a name…): never a formula in the reader's spreadsheet.
    return neutralise(str(value))


def csv_response(rows: Iterable[dict], columns: Sequence[str], filename: str,
                 sep: str | None = None, decimal: str | None = None) -> Response:
    """CSV of ``rows``; ``sep=';'`` gives French Excel's dialect (decimal comma, UTF-8 BOM).

    Text cells starting with ``= + - @``, tab or CR get a leading apostrophe
    (:mod:`service.csv_safety`); numbers, the exporter's own, stay numbers."""
    sep = sep or ","
    decimal = decimal or ("," if sep == ";" else ".")
    if sep == decimal:
        from service.errors import bad_request

        raise bad_request("the CSV separator and the decimal mark must differ",
                          sep=sep, decimal=decimal)
    out = io.StringIO()
    if sep == ";":
        out.write("\ufeff")  # Excel reads UTF-8 (accents) only with a byte-order mark
    writer = csv.writer(out, delimiter=sep, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(c), decimal) for c in columns])
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


def render(payload: dict, query: dict, *, rows_key: str = "items",
           columns: Sequence[str] | None = None, filename: str = "vigie") -> Response:
    """JSON of ``payload``, or CSV of ``payload[rows_key]`` when ``format=csv``."""
    if query.get("format") == "csv":
        rows = payload.get(rows_key) or []
        columns = columns or (list(rows[0]) if rows else [])
        return csv_response(rows, columns, filename, query.get("sep"), query.get("decimal"))
    return json_response(payload)


def paginate(items: Sequence, query: dict) -> tuple[list, dict]:
    """One page of ``items`` and the page info; CSV exports are not paginated."""
    total = len(items)
    if query.get("format") == "csv":
        return list(items), {"page": 1, "per_page": max(total, 1), "total": total, "pages": 1}
    page, per_page = query.get("page", 1), query.get("per_page", 100)
    pages = max(1, math.ceil(total / per_page))
    start = (page - 1) * per_page
    info = {"page": page, "per_page": per_page, "total": total, "pages": pages}
    g.page_info = info
    g.page_query = query
    return list(items[start:start + per_page]), info


def _link_header(info: dict, query: dict | None = None) -> str | None:
    """RFC 8288 ``Link`` of the first/prev/next/last pages, built from the *validated* query
    (``query``, else ``g.page_query``): unknown parameters are dropped, values equal to the
    schema's default left out, everything percent-encoded (a value can never break out of
    the header)."""
    from urllib.parse import quote, urlencode

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


# ---------------------------------------------------------------------------- suppression
def is_public() -> bool:
    return not current_principal().authenticated


def public_masks(vintage_id: str | None = None):
    """The cells of a vintage (default: the served one) hidden from the public:
    :func:`features.disclosure.public_masks` (small counts, complementary cells, derived
    values; docs/DISCLOSURE.md), computed once per vintage and threshold for the process
    (vintages are immutable; the first public request of a vintage pays a few seconds)."""
    from features import disclosure

    st = state()
    vintage_id = vintage_id or st.freshness()[0]  # the served vintage, read at most once a second
    if not vintage_id:
        raise LookupError("no vintage yet")
    # Protected against the vintages served before it too (their records, docs/DISCLOSURE.md).
    return disclosure.store_masks(st.store, vintage_id, st.settings.small_count_threshold)


def hidden_cells(frequency: str, name: str, codes: Sequence[str], dates: Any,
                 vintage_id: str | None = None) -> np.ndarray | None:
    """For a public caller, the (codes × dates) mask of ``name`` hidden by disclosure
    control; None for an authenticated caller or an indicator never hidden."""
    if not is_public():
        return None
    return public_masks(vintage_id or None).select(frequency, name, codes, dates)


# ---------------------------------------------------------------------------- caching
@dataclass
class CachedAnswer:
    body: bytes
    mimetype: str
    headers: dict[str, str]
    etag: str
    last_modified: dt.datetime | None
    provenance: dict


class ResponseCache:
    """A thread-safe LRU of rendered GET answers (see the module docstring), bounded both in
    entries (``size``) and in bytes (``max_bytes``: bodies, stored headers and keys). An answer
    larger than a quarter of ``max_bytes`` is not kept (it would flush everything else)."""

    def __init__(self, size: int = 2048, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[CachedAnswer, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple, count_miss: bool = True) -> CachedAnswer | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return entry[0]
            if count_miss:
                self.misses += 1
            return None

    @staticmethod
    def weight(key: tuple, item: CachedAnswer) -> int:
        """Bytes an entry holds, roughly: body, stored headers, key and a fixed overhead."""
        return (len(item.body) + sum(len(k) + len(v) for k, v in item.headers.items())
                + len(repr(key)) + 512)

    def put(self, key: tuple, item: CachedAnswer) -> None:
        if self.size <= 0 or self.max_bytes <= 0:
            return
        weight = self.weight(key, item)
        if weight > self.max_bytes // 4:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._items[key] = (item, weight)
            self.bytes += weight
            while len(self._items) > self.size or self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0


def _canonical(value: Any) -> Any:
    """A hashable, order-independent form of validated arguments (dates as ISO text)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def cache_key(args: dict | None, public: bool, freshness: tuple) -> tuple:
    """The response cache's key: path, the view's *validated* query arguments (defaults
    filled in, unknown parameters dropped, order and duplicates irrelevant), audience, data
    state. Never the raw query string."""
    return (request.path, _canonical(args or {}), public, freshness)


def query_schemas(view: Callable | None) -> list:
    """The marshmallow schemas a view validates its query string with (``@bp.input(...,
    location="query")``), read from apiflask's annotations."""
    spec = getattr(view, "_spec", None) or {}
    return [schema for schema, location in spec.get("args") or ()
            if location in ("query", "querystring")]


def set_last_modified(value: dt.datetime | str | None) -> None:
    """Name the time the answer's data last changed (becomes the Last-Modified header)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    g.last_modified = value


def _finish(answer: CachedAnswer, public: bool) -> Response:
    response = Response(answer.body, mimetype=answer.mimetype, headers=answer.headers)
    response.set_etag(answer.etag)
    if answer.last_modified is not None:
        response.last_modified = answer.last_modified
    response.headers["Cache-Control"] = ("public, max-age=60" if public
                                         else "private, max-age=0, must-revalidate")
    response.vary.add("Authorization")
    note(**answer.provenance)
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
    st = state()
    public = is_public()
    hit = st.cache.get(cache_key(args, public, st.freshness()), count_miss=False)
    return _finish(hit, public) if hit is not None else None


def cached(view: Callable) -> Callable:
    """Serve GET answers from the response cache, with ETag and Last-Modified (304s). The key
    is :func:`cache_key` of the view's validated ``query_data``."""
    import functools

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        st = state()
        public = is_public()
        key = cache_key(kwargs.get("query_data"), public, st.freshness())
        hit = st.cache.get(key)
        if hit is not None:
            return _finish(hit, public)
        response = view(*args, **kwargs)
        if not isinstance(response, Response):
            response = current_app.make_response(response)
        if response.status_code != 200:
            return response
        body = response.get_data()
        headers = {k: v for k, v in response.headers.items()
                   if k in ("Content-Disposition", "X-Total-Count")}
        info = getattr(g, "page_info", None)
        if info is not None:
            headers["X-Total-Count"] = str(info["total"])
            link = _link_header(info, kwargs.get("query_data") or {})
            if link:
                headers["Link"] = link
        answer = CachedAnswer(body, response.mimetype, headers,
                              hashlib.blake2b(body, digest_size=12).hexdigest(),
                              getattr(g, "last_modified", None),
                              dict(getattr(g, "provenance", None) or {}))
        st.cache.put(key, answer)
        return _finish(answer, public)

    wrapper._vigie_cached = True  # read by serve_from_cache (copied up by outer decorators)
    return wrapper


# ---------------------------------------------------------------------------- cube lookups
FREQUENCIES = ("daily", "weekly", "quarterly", "yearly")


def current_vintage() -> dict:
    """The served vintage, or a 503 when nothing was ever ingested."""
    from service.errors import ApiError

    try:
        row = state().store.current_vintage()
    except LookupError as exc:
        raise ApiError(503, "no_data", "no cube vintage yet: run 'python -m service ingest'",
                       {"reason": str(exc)}) from exc
    note(vintage_id=row["id"])
    if not pinned("vintage_id"):  # else the answer is not of the current vintage (a forecast)
        set_last_modified(row["issued_at"])
    return row


def _memo(key: tuple, build: Callable[[], Any]) -> Any:
    """Per-vintage memo: vintages are immutable, so derived tables are computed once."""
    memo = state().extra.setdefault("memo", {})
    if key not in memo:
        if len(memo) > 64:
            memo.clear()
        memo[key] = build()
    return memo[key]


def open_dataset(frequency: str, as_of: Any = None):
    """A cube dataset of the served vintage (``as_of``: as known on that date)."""
    st = state()
    if as_of is not None:
        ds = st.store.open(frequency, as_of=as_of)
        note(vintage_id=ds.attrs.get("vintage_id"))
        return ds
    row = current_vintage()
    return st.store.open(frequency, vintage_id=row["id"])


def territory_table() -> dict[str, dict]:
    """Code → {code, name, level, parent, population} of the served vintage (all datasets)."""
    row = current_vintage()

    def build() -> dict[str, dict]:
        out: dict[str, dict] = {}
        for frequency in FREQUENCIES:
            try:
                ds = state().store.open(frequency, vintage_id=row["id"])
            except KeyError:
                continue
            codes = ds["territory"].values
            for i, code in enumerate(codes):
                if code in out:
                    continue
                pop = ds["population"].values[i] if "population" in ds.coords else np.nan
                out[str(code)] = {
                    "code": str(code), "name": str(ds["territory_name"].values[i]),
                    "level": str(ds["territory_level"].values[i]),
                    "parent": str(ds["territory_parent"].values[i]),
                    "population": clean(float(pop)),
                }
        return out

    return _memo(("territories", row["id"]), build)


def indicator_entries() -> list[dict]:
    """Every (indicator, frequency) with metadata and observed date range, of the served
    vintage. A name can exist at several frequencies (``inc_hosp`` daily and weekly)."""
    import pandas as pd

    row = current_vintage()

    def build() -> list[dict]:
        out = []
        for frequency in FREQUENCIES:
            try:
                ds = state().store.open(frequency, vintage_id=row["id"])
            except KeyError:
                continue
            for name, var in ds.data_vars.items():
                observed = var.notnull()
                dates = ds["date"].values[observed.any("territory").values]
                label, units_fr = indicator_fr(str(name), str(var.attrs.get("description", "")),
                                               str(var.attrs.get("units", "")))
                out.append({
                    "name": str(name), "frequency": frequency,
                    "label": label, "units_fr": units_fr,
                    "units": str(var.attrs.get("units", "")),
                    "description": str(var.attrs.get("description", "")),
                    "source": str(var.attrs.get("source", "")),
                    "licence": str(var.attrs.get("licence", "")),
                    "aggregation": str(var.attrs.get("aggregation", "")),
                    "count": bool(int(var.attrs.get("count", 0) or 0)),
                    "first_date": str(pd.Timestamp(dates[0]).date()) if len(dates) else None,
                    "last_date": str(pd.Timestamp(dates[-1]).date()) if len(dates) else None,
                    "territories": int(observed.any("date").sum()),
                })
        return out

    return _memo(("indicators", row["id"]), build)


def observed_territories(frequency: str, names: Sequence[str]) -> set[str]:
    """Codes with at least one observation of any of ``names`` in the served vintage."""
    row = current_vintage()

    def build() -> frozenset[str]:
        try:
            ds = state().store.open(frequency, vintage_id=row["id"])
        except KeyError:
            return frozenset()
        present = [n for n in names if n in ds]
        if not present:
            return frozenset()
        seen = np.zeros(ds.sizes["territory"], dtype=bool)
        for name in present:
            seen |= ds[name].notnull().any("date").values
        return frozenset(ds["territory"].values[seen].tolist())

    return set(_memo(("observed", row["id"], frequency, tuple(names)), build))


def indicator_catalog() -> dict[str, dict]:
    """Indicator name → its entry at the finest frequency (daily before weekly…)."""
    out: dict[str, dict] = {}
    for entry in indicator_entries():
        out.setdefault(entry["name"], entry)
    return out


def find_indicator(name: str, frequency: str | None = None) -> dict | None:
    for entry in indicator_entries():
        if entry["name"] == name and frequency in (None, entry["frequency"]):
            return entry
    return None


#: Levels the public may read data for: aggregates only (no commune-level counts). EPCI are
#: groupings of communes (the 22 métropoles: 200,000 to 2 million inhabitants).
PUBLIC_LEVELS = ("department", "region", "country", "collectivity", "epci")
