"""The risk level of territories (``/api/v1/risk``): one day for many territories, or one
territory over time, with the criteria evaluated and the inputs that were missing.

The levels, their criteria and thresholds are the domain's (:mod:`features.risk`, thresholds
from :func:`features.risk.load_thresholds`); this use case assesses the served cube (as known
on ``as_of``, once per vintage and thresholds), picks the territories and days asked for, and
hides from the public the inputs whose cube cell disclosure control hides (docs/DISCLOSURE.md).

A read use case (:mod:`service.usecases.reads`): it reads through the context it is given.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from features.storage.jsonsafe import scalar as clean
from service.errors import ApiError, bad_request, not_found
from service.usecases.reads import ReadContext, check_readable, parse_codes, window_positions

#: API level names → territory levels of the cube.
LEVELS = {"national": "country", "region": "region", "department": "department", "epci": "epci"}


def assessment(ctx: ReadContext, as_of: dt.date | None):
    """``features.risk.assess`` of the served cube (as known on ``as_of``), once per vintage."""
    from features import risk

    try:
        daily = ctx.open_dataset("daily", as_of)
    except LookupError as exc:
        raise ApiError(503, "no_data", str(exc)) from exc
    try:
        yearly = ctx.open_dataset("yearly", as_of)
    except KeyError:
        yearly = None
    settings = ctx.settings
    thresholds = risk.load_thresholds(settings)
    vintage = str(daily.attrs.get("vintage_id", ""))
    if as_of is not None:
        ctx.set_last_modified(daily.attrs.get("issued_at"))
    # The thresholds in force are part of the key: a changed file is a new assessment.
    key = ("risk", vintage, str(as_of), thresholds.path, thresholds.name, thresholds.criteria,
           tuple((k, i.scope) for k, i in thresholds.inputs.items()))
    assessed = ctx.memo(key, lambda: risk.assess(daily, yearly, thresholds))
    return assessed, thresholds, vintage, _hidden_inputs(ctx, assessed, vintage)


def _hidden_inputs(ctx: ReadContext, ds, vintage: str) -> dict[str, np.ndarray]:
    """Per input of the assessment ``ds``, its (territory, date) values hidden from the
    public: hidden where the cube cell it was taken from is (the région's for a regional
    input, the estimate's where estimated; ICU occupancy = ICU patients / beds is hidden with
    the patients), docs/DISCLOSURE.md. Empty for an authenticated caller."""
    from features import risk

    if not ctx.is_public():
        return {}
    codes = ds["territory"].values.tolist()
    dates = ds["date"].values
    inputs = [n for n in ds.data_vars if f"{n}_from" in ds.data_vars]
    out = {}
    for name in [*inputs, "icu"]:
        if name not in ds.data_vars:
            continue
        source = "icu" if name in ("icu", risk.ICU_OCCUPANCY) else name
        taken = f"{name}_from" if f"{name}_from" in ds.data_vars else \
            f"{risk.ICU_OCCUPANCY}_from"
        where = ds[taken].values.tolist() if taken in ds.data_vars else codes
        mask = ctx.hidden_cells("daily", source, where, dates, vintage or None)
        estimate = risk.ESTIMATES.get(name)
        if estimate and f"{name}_origin" in ds.data_vars:
            guess = ctx.hidden_cells("daily", estimate, where, dates, vintage or None)
            if guess is not None:
                origin = ds[f"{name}_origin"].transpose("territory", "date").values
                mask = np.where(origin == risk.ORIGIN_ESTIMATED, guess,
                                mask if mask is not None else False)
        if mask is not None:
            out[name] = mask
    return out


def _rows(ds, thresholds, codes: list[str], date_idx: list[int] | None,
          hidden: dict[str, np.ndarray], keep_unknown: bool, table: dict[str, dict]
          ) -> list[dict]:
    """One row per (territory, date) of the assessment ``ds`` (``keep_unknown``: also the
    days with no evaluable criterion); inputs whose cube cell is hidden from the public
    (``hidden``, :func:`_hidden_inputs`) are null."""
    from features import risk

    index = {c: i for i, c in enumerate(ds["territory"].values.tolist())}
    dates = pd.DatetimeIndex(ds["date"].values).strftime("%Y-%m-%d")
    criteria = [n for n in ds.data_vars if str(n).startswith("criterion_")]
    inputs = [n for n in ds.data_vars if f"{n}_from" in ds.data_vars]
    extra = [n for n in ("icu", "icu_beds_adult") if n in ds.data_vars and n not in inputs]
    level = ds["risk_level"].transpose("territory", "date").values
    level_max = ds["risk_level_max"].transpose("territory", "date").values
    complete = ds["risk_complete"].transpose("territory", "date").values
    evaluated = ds["criteria_evaluated"].transpose("territory", "date").values
    missing = ds["inputs_missing"].transpose("territory", "date").values
    arrays = {n: ds[n].transpose("territory", "date").values for n in (*criteria, *inputs, *extra)}
    origins = {n: ds[f"{n}_origin"].transpose("territory", "date").values for n in inputs
               if f"{n}_origin" in ds.data_vars}
    rows = []
    for code in codes:
        i = index[code]
        origin = {n: str(ds[f"{n}_from"].values[i]) for n in inputs}
        for j in (date_idx if date_idx is not None else range(len(dates))):
            lv = int(level[i, j])
            if lv < 0 and not keep_unknown:
                continue
            values = {n: clean(float(arrays[n][i, j])) for n in (*inputs, *extra)}
            origin_of = {n: risk.ORIGIN_NAMES.get(int(o[i, j])) for n, o in origins.items()}
            estimated = [n for n, o in origins.items() if o[i, j] == risk.ORIGIN_ESTIMATED]
            for n, mask in hidden.items():  # public answers only (docs/DISCLOSURE.md)
                if n in values and mask[i, j]:
                    values[n] = None
            rows.append({
                "territory": code, "name": table.get(code, {}).get("name", code),
                "date": dates[j], "level": lv, "level_max": int(level_max[i, j]),
                "complete": bool(complete[i, j]),
                "label": risk.label(lv, int(level_max[i, j])),
                "criteria_evaluated": int(evaluated[i, j]),
                "criteria": [_criterion(ds[n], arrays[n][i, j], values, thresholds, estimated)
                             for n in criteria],
                "inputs": values, "inputs_from": origin,
                "missing": [m for m in str(missing[i, j]).split(",") if m],
                "inputs_origin": origin_of, "estimated": estimated,
            })
    return rows


def _criterion(var, state_value: float, values: dict, thresholds, estimated: list[str]
               ) -> dict:
    name = str(var.attrs["input"])
    met = None if np.isnan(state_value) else bool(state_value)
    spec = thresholds.inputs.get(name)
    return {"name": str(var.name), "level": int(var.attrs["level"]), "input": name,
            "label": spec.label if spec else name,
            "threshold": float(var.attrs["threshold"]), "units": str(var.attrs.get("units", "")),
            "value": values.get(name), "met": met, "estimated": name in estimated}


def _answer(ctx: ReadContext, ds, thresholds, vintage: str, as_of, day: str | None,
            rows: list[dict]) -> dict:
    """The answer's fields, its ``rows`` last (one per territory and day)."""
    from features import risk

    dates = pd.DatetimeIndex(ds["date"].values)
    return {"thresholds": thresholds.name, "source": thresholds.citation,
            "levels": {str(k): v for k, v in risk.LEVEL_LABELS.items()},
            "vintage_id": vintage, "as_of": str(as_of) if as_of else None, "date": day,
            "first_date": str(dates[0].date()) if len(dates) else None,
            "last_date": str(dates[-1].date()) if len(dates) else None,
            "suppression_threshold": ctx.settings.small_count_threshold if ctx.is_public()
            else None,
            "rows": rows}


def _day_index(ds, codes: list[str], position: dict[str, int], day: dt.date | None) -> int:
    """The column of ``day`` in the assessment (400 when it has none), else of the latest day
    on which at least one of ``codes`` has a known level."""
    dates = pd.DatetimeIndex(ds["date"].values)
    if day is not None:
        j = dates.get_indexer([pd.Timestamp(day)])[0]
        if j < 0:
            raise bad_request("no assessment on that date: give a date of the cube",
                              date=str(day), first=str(dates[0].date()) if len(dates) else None,
                              last=str(dates[-1].date()) if len(dates) else None)
        return j
    rows = [position[c] for c in codes]
    known = (ds["risk_level"].transpose("territory", "date").values[rows] >= 0).any(axis=0) \
        if rows else np.zeros(len(dates), dtype=bool)
    return int(np.flatnonzero(known)[-1]) if known.any() else len(dates) - 1


def risk_on_day(ctx: ReadContext, *, territory: str | None, level: str, day: dt.date | None,
                as_of: dt.date | None) -> dict:
    """The risk of the ``territory`` codes (comma-separated; default: every territory of the
    API ``level``) on ``day`` (default: the latest day with a known level), the cube as known
    on ``as_of``: one row per territory, unknown levels included."""
    table = ctx.territory_table()
    codes = parse_codes(territory)
    if codes:
        check_readable(ctx, codes, table)
    ds, thresholds, vintage, hidden = assessment(ctx, as_of)
    position = {c: i for i, c in enumerate(ds["territory"].values.tolist())}
    if codes:
        codes = [c for c in codes if c in position]
    else:
        codes = [c for c in position if table.get(c, {}).get("level") == LEVELS[level]]
    dates = pd.DatetimeIndex(ds["date"].values)
    j = _day_index(ds, codes, position, day)
    label = str(dates[j].date()) if len(dates) else None
    rows = _rows(ds, thresholds, codes, [j] if len(dates) else [], hidden, True,
                 ctx.territory_table())
    return _answer(ctx, ds, thresholds, vintage, as_of, label, rows)


def risk_series(ctx: ReadContext, *, code: str, start: dt.date | None, end: dt.date | None,
                as_of: dt.date | None) -> dict:
    """The risk of territory ``code`` on every day from ``start`` to ``end`` on which at least
    one criterion could be evaluated, the cube as known on ``as_of``."""
    table = ctx.territory_table()
    if code not in table:
        raise not_found(f"no territory with code {code!r}", code=code)
    check_readable(ctx, [code], table)
    if start and end and start > end:
        raise bad_request("start is after end", start=str(start), end=str(end))
    ds, thresholds, vintage, hidden = assessment(ctx, as_of)
    codes = [code] if code in set(ds["territory"].values.tolist()) else []
    rows = _rows(ds, thresholds, codes, window_positions(ds["date"].values, start, end).tolist(),
                 hidden, False, ctx.territory_table())
    return _answer(ctx, ds, thresholds, vintage, as_of, None, rows)
