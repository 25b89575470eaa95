"""One indicator's series for territories × a date range, as known on a date
(``/api/v1/data``).

``as_of`` reads the cube as it was known then (the latest vintage issued on or before it,
observations dated before it), so an answer can be reproduced for an audit. For the public,
commune-level series are refused and the cells disclosure control hides (small counts, the
cells that would give them back by differencing, rates computed from hidden counts:
docs/DISCLOSURE.md) are ``value: null, suppressed: true``. A région or France total that Vigie
computes from its children (none is published) is served only on dates when all of them
report; otherwise the row says why: ``value: null, reason: "incomplete", coverage:
{reporting: n, children: m}`` (:func:`features.cube.totals_coverage`). A département's or
EPCI's sum of its communes says how much of it is covered (``coverage.members``,
``coverage.population_share``: below 1, the sum over the reporting communes, not the
territory's total). Counts that add up carry ``per_100k``, per 100,000 inhabitants of the
population the value covers (:func:`features.cube.rate_population`; null where hidden or
unknown).

A read use case (:mod:`service.usecases.reads`): it reads through the context it is given.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from features.cube import rate_population, totals_coverage
from features.storage.jsonsafe import scalar as clean
from service.errors import ApiError, bad_request
from service.usecases.reads import (
    PUBLIC_LEVELS,
    ReadContext,
    check_readable,
    parse_codes,
    window_positions,
)


def _indicator(ctx: ReadContext, name: str, frequency: str | None) -> dict:
    """The indicator's entry at ``frequency`` (default: the finest); 400 when there is none."""
    meta = ctx.find_indicator(name, frequency)
    if meta is None:
        known = ctx.find_indicator(name)
        if known is not None:
            raise bad_request(f"{name} has no {frequency} series",
                              frequency=known["frequency"])
        raise bad_request(f"unknown indicator {name!r}", known=sorted(ctx.indicator_catalog()))
    return meta


def _dataset(ctx: ReadContext, frequency: str, as_of: dt.date | None):
    try:
        ds = ctx.open_dataset(frequency, as_of)
    except LookupError as exc:
        raise ApiError(503, "no_data", str(exc)) from exc
    if as_of is not None:
        ctx.set_last_modified(ds.attrs.get("issued_at"))
    return ds


def _window(var, start: dt.date | None, end: dt.date | None):
    """``var`` from ``start`` to ``end`` (inclusive)."""
    return var.isel(date=window_positions(var["date"].values, start, end))


def _coverage(reporting: int, need: int, communes: dict | None) -> dict:
    """A computed total's coverage; for a sum of communes, how much of the territory."""
    out = {"reporting": reporting, "children": need}
    if communes:
        out.update(members=communes["members"], population_share=communes["population_share"])
    return out


def _rows(codes: list[str], values: np.ndarray, date_labels: list[str], mask, totals: dict,
          computed: dict[str, int], population: np.ndarray | None = None) -> list[dict]:
    """One row per observed (territory, date), and per date a computed total is withheld;
    ``population``: what a per-100,000 rate divides by, per territory (None: no rate)."""
    labels = np.array(date_labels, dtype=object)
    communes = totals.get("communes", {})
    rows = []
    for i, code in enumerate(codes):
        series = values[i]
        need = computed.get(code)
        gaps = totals["incomplete"].get(code, {}) if need else {}
        shown = ~np.isnan(series)
        if gaps:
            shown |= np.isin(labels, list(gaps))
        for j in np.flatnonzero(shown):
            if np.isnan(series[j]):
                rows.append({"territory": code, "date": date_labels[j], "value": None,
                             "per_100k": None, "suppressed": False, "reason": "incomplete",
                             "coverage": _coverage(int(gaps[date_labels[j]]), need,
                                                   communes.get(code))})
                continue
            value = float(series[j])
            hidden = bool(mask is not None and mask[i, j])
            rate = None if hidden or population is None else \
                clean(value / population[i] * 100_000.0)
            rows.append({"territory": code, "date": date_labels[j],
                         "value": None if hidden else clean(value), "per_100k": rate,
                         "suppressed": hidden, "reason": None,
                         "coverage": _coverage(need, need, communes.get(code)) if need
                         else None})
    return rows


def series(ctx: ReadContext, *, indicator: str, frequency: str | None, territory: str | None,
           start: dt.date | None, end: dt.date | None, as_of: dt.date | None) -> dict:
    """The series of ``indicator`` (at ``frequency``, default the finest) for the ``territory``
    codes (comma-separated; default: every territory served to the caller), from ``start`` to
    ``end``, as known on ``as_of``.

    Returns
    -------
    The indicator's metadata (``indicator``, ``frequency``, ``label``, ``units``, ``units_fr``,
    ``count``, ``source``, ``licence``), ``vintage_id``, ``as_of``, ``suppression_threshold``
    (None when nothing is suppressed for this caller), ``computed_totals`` and ``rows`` last.
    """
    meta = _indicator(ctx, indicator, frequency)
    if start and end and start > end:
        raise bad_request("start is after end", start=str(start), end=str(end))
    table = ctx.territory_table()
    codes = parse_codes(territory)
    public = ctx.is_public()
    if codes:
        check_readable(ctx, codes, table)
    ds = _dataset(ctx, meta["frequency"], as_of)
    var = ds[indicator]
    available = set(var["territory"].values.tolist())
    if codes is None:
        codes = [c for c in var["territory"].values.tolist()
                 if not public or table.get(c, {}).get("level") in PUBLIC_LEVELS
                 or ctx.reads_unsuppressed(c)]
    codes = [c for c in codes if c in available]
    var = _window(var.sel(territory=codes), start, end)
    # docs/DISCLOSURE.md: small counts, the cells that would give them back, derived values.
    mask = ctx.hidden_cells(meta["frequency"], indicator, codes, var["date"].values,
                        str(ds.attrs.get("vintage_id", "")) or None) if public else None
    totals = totals_coverage(ds[indicator]) or {"children": {}, "incomplete": {}}
    computed = {c: int(totals["children"][c]) for c in codes if c in totals["children"]}
    adds_up = bool(meta["count"]) and meta.get("aggregation") == "sum"
    rows = _rows(codes, var.transpose("territory", "date").values,
                 pd.DatetimeIndex(var["date"].values).strftime("%Y-%m-%d").tolist(), mask,
                 totals, computed, rate_population(var) if adds_up else None)
    incomplete = sum(1 for row in rows if row["reason"] == "incomplete")
    return {
        "indicator": indicator, "frequency": meta["frequency"], "label": meta["label"],
        "units": meta["units"], "units_fr": meta["units_fr"], "count": meta["count"],
        "source": meta["source"], "licence": meta["licence"],
        "vintage_id": str(ds.attrs.get("vintage_id", "")),
        "as_of": str(as_of) if as_of else None,
        "suppression_threshold": ctx.settings.small_count_threshold
        if mask is not None else None,
        "computed_totals": {"territories": computed, "incomplete": incomplete},
        "rows": rows,
    }
