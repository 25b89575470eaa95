"""What the city page shows (issue 16): an EPCI or a commune, its own indicators with their
forecasts, the incidence of its métropole, its département's hospital pressure and
unemployment.

* **Own indicators**: every indicator observed at the territory itself, except national
  broadcasts (the OxCGRT indices, aggregation ``national``), technical codes (unit ``code``,
  :mod:`service.labels`) and the métropoles' incidence (shown apart). For an EPCI they are the
  sums of its reporting communes (docs/CUBE_CONTRACT.md): each row carries its coverage, and a
  sum covering part of the EPCI's population is a *partial sum*
  (:func:`features.cube.is_partial`); counts carry ``per_100k``, per 100,000 inhabitants of
  the population the value covers. Everything comes from the read use cases
  (:func:`service.usecases.data_reads.series`, :func:`service.usecases.forecast_reads.forecast`,
  :func:`service.usecases.alerts.capacity_alerts`), with the caller's rights: the public does
  not read communes (403 ``aggregated_only``), small counts are hidden from it.
* **Forecasts**: the target listing (:mod:`service.usecases.targets`) says which indicators
  are forecast at the territory's level, and whether Vigie beats the naive baseline for them
  (``verdict``, from the retrospective track record).

A read use case (:mod:`service.usecases.reads`). A part that cannot be shown is ``{"available":
false, "status": …, "code": …, "details": …}`` (an API error's stable code, or one of
:data:`CODES`): the dashboard words it in French (:func:`service.dashboard.messages.reason_fr`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from features.cube import is_partial
from service.errors import ApiError
from service.labels import indicator_fr
from service.usecases.reads import ReadContext

#: Frequencies whose indicators a city page shows (yearly: populations and bed capacities).
FREQUENCIES = ("daily", "weekly", "quarterly")
#: Preferred frequency of an indicator present at several (the forecasts' and charts' own).
PREFERENCE = ("weekly", "daily", "quarterly")
#: The métropoles' published incidence (SPF SI-DEP), shown beside the own indicators.
INCIDENCE = ("incidence_rate_7d", "incidence_rate_7d_65_plus")
#: The département's hospital pressure: (target/indicator, frequency); ICU beds vs capacity.
PRESSURE = (("hosp", "daily"), ("icu", "daily"))
CAPACITY = "icu_beds_adult"
#: Social services: the département's unemployment rate and its forecast target.
UNEMPLOYMENT = ("unemployment_rate", "quarterly", "unemployment")
#: Quantile levels of a fan chart: 90 % band, 50 % band, median.
BANDS = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}
#: The page's own reasons (besides the API's error codes), worded by the dashboard.
CODES = ("unknown_city", "no_target", "no_incidence", "no_indicator", "no_departement")
#: How many places a search answers at most.
SEARCH_LIMIT = 40


# ---------------------------------------------------------------------------- the directory
def _vintage(ctx: ReadContext) -> str:
    try:
        return str(ctx.open_dataset("weekly").attrs.get("vintage_id", ""))
    except (KeyError, LookupError):
        return ""


def _own_names(ctx: ReadContext, frequency: str) -> dict[str, list[str]]:
    """Territory code → its own indicators at ``frequency`` (see the module docstring),
    memoised per vintage."""

    def build() -> dict[str, list[str]]:
        try:
            ds = ctx.open_dataset(frequency)
        except (KeyError, LookupError):
            return {}
        codes = ds["territory"].values
        out: dict[str, list[str]] = {}
        for name, var in ds.data_vars.items():
            name = str(name)
            if (var.attrs.get("aggregation") == "national" or name in INCIDENCE
                    or indicator_fr(name)[1] == "code"):
                continue
            seen = var.notnull().any("date").values
            for code in codes[seen]:
                out.setdefault(str(code), []).append(name)
        return out

    return ctx.memo(("city_own", _vintage(ctx), frequency), build)


def _incidence_codes(ctx: ReadContext) -> frozenset[str]:
    """The territories with a published incidence (:data:`INCIDENCE`), memoised per vintage."""

    def build() -> frozenset[str]:
        try:
            ds = ctx.open_dataset("daily")
        except (KeyError, LookupError):
            return frozenset()
        seen = np.zeros(ds.sizes["territory"], dtype=bool)
        for name in INCIDENCE:
            if name in ds:
                seen |= ds[name].notnull().any("date").values
        return frozenset(str(c) for c in ds["territory"].values[seen])

    return ctx.memo(("city_incidence", _vintage(ctx)), build)


def own_indicators(ctx: ReadContext, code: str) -> dict[str, str]:
    """Indicator → the frequency the page shows it at, for ``code``'s own indicators."""
    found: dict[str, list[str]] = {}
    for frequency in FREQUENCIES:
        for name in _own_names(ctx, frequency).get(code, []):
            found.setdefault(name, []).append(frequency)
    return {name: next(f for f in PREFERENCE if f in freqs)
            for name, freqs in sorted(found.items())}


def _commune_index(groups: dict[str, dict]) -> dict[str, tuple[dict, str]]:
    """Commune code → (its row, its EPCI's code), every commune of the registry."""
    return {c["code"]: (c, epci) for epci, g in groups.items() for c in g["communes"]}


def city_directory(ctx: ReadContext) -> dict:
    """The places a city page exists for: every EPCI of the registry (its département, its
    communes, its population, how many own indicators it has and whether an incidence is
    published for it) and the communes that have indicators of their own."""
    groups = ctx.groupements()
    table = ctx.territory_table()
    counts: dict[str, int] = {}
    for frequency in FREQUENCIES:
        for code, names in _own_names(ctx, frequency).items():
            counts[code] = counts.get(code, 0) + len(names)
    index = _commune_index(groups)
    incidence = _incidence_codes(ctx)
    epci = sorted(({"code": code, "name": g["name"], "parent": g["parent"],
                    "population": g["population"], "communes": len(g["communes"]),
                    "indicators": counts.get(code, 0), "incidence": code in incidence}
                   for code, g in groups.items()),
                  key=lambda r: r["name"].casefold())
    communes = sorted(({"code": code, "name": row["name"], "parent": row["parent"],
                        "epci": index.get(code, (None, None))[1],
                        "indicators": counts.get(code, 0)}
                       for code, row in table.items() if row["level"] == "commune"),
                      key=lambda r: r["name"].casefold())
    return {"epci": epci, "communes": communes}


_CODE_IN_TEXT = re.compile(r"\(?\b(\d{9}|\d{5}|2[AB]\d{3})\b\)?\s*$")


def find_cities(ctx: ReadContext, text: str) -> list[dict]:
    """The EPCIs and communes whose code is ``text`` (or ends it: "Rennes Métropole
    (243500139)"), else whose name contains it (case and accents as typed), EPCIs first, at
    most :data:`SEARCH_LIMIT`."""
    text = " ".join(str(text).split())[:100]
    if not text:
        return []
    groups = ctx.groupements()
    index = _commune_index(groups)

    def place(code: str) -> dict:
        if code in groups:
            g = groups[code]
            return {"code": code, "name": g["name"], "level": "epci", "parent": g["parent"]}
        row, epci = index[code]
        return {"code": code, "name": row["name"], "level": "commune",
                "parent": row["parent"], "epci": epci}

    m = _CODE_IN_TEXT.search(text)
    if m and (m.group(1) in groups or m.group(1) in index):
        return [place(m.group(1))]
    needle = text.casefold()
    names = [(code, g["name"]) for code, g in groups.items()]
    names += [(code, row["name"]) for code, (row, _) in index.items()]

    def rank(name: str) -> int:
        """0: the name itself, 1: its start, 2: a word's start, 3: inside a word."""
        name = name.casefold()
        if name == needle:
            return 0
        if name.startswith(needle):
            return 1
        return 2 if re.search(r"(^|[\s'’-])" + re.escape(needle), name) else 3

    hits = sorted(((rank(name), i, code) for i, (code, name) in enumerate(names)
                   if needle in name.casefold()))
    return [place(code) for _, _, code in hits[:SEARCH_LIMIT]]


# ---------------------------------------------------------------------------- the page
def _unavailable(exc: ApiError) -> dict:
    body = exc.extra_data or {}
    return {"available": False, "status": exc.status_code, "code": body.get("code"),
            "details": exc.detail if isinstance(exc.detail, dict) else {}}


def _missing(code: str, **details: Any) -> dict:
    return {"available": False, "status": 200, "code": code, "details": details}


def _place(ctx: ReadContext, code: str) -> dict:
    """The EPCI or commune ``code``: name, level, population, département(s), its EPCI or
    member communes; ApiError 404 ``unknown_city`` when the registry has neither."""
    groups = ctx.groupements()
    table = ctx.territory_table()
    if code in groups:
        g = groups[code]
        departements = sorted({c["parent"] for c in g["communes"]})
        return {"code": code, "name": g["name"], "level": "epci", "population": g["population"],
                "departement": g["parent"], "departements": departements,
                "communes": len(g["communes"]), "epci": None}
    found = _commune_index(groups).get(code)
    if found is None and table.get(code, {}).get("level") == "commune":
        found = (table[code], None)
    if found is None:
        raise ApiError(404, "unknown_city", f"no EPCI or commune {code!r}", {"code": code})
    row, epci = found
    return {"code": code, "name": row["name"], "level": "commune",
            "population": table.get(code, row).get("population"), "departement": row["parent"],
            "departements": [row["parent"]], "communes": None,
            "epci": {"code": epci, "name": groups[epci]["name"]} if epci else None}


def _observed(ctx: ReadContext, indicator: str, frequency: str, code: str) -> dict:
    """One series of ``code`` as parallel lists, with per_100k and its latest coverage."""
    from service.usecases.data_reads import series

    try:
        answer = series(ctx, indicator=indicator, frequency=frequency, territory=code,
                        start=None, end=None, as_of=None)
    except ApiError as exc:
        return _unavailable(exc)
    rows = [r for r in answer["rows"] if r["territory"] == code]
    if not rows:
        return _missing("no_indicator", indicator=indicator)
    shown = [r for r in rows if r["value"] is not None]
    last = shown[-1] if shown else rows[-1]
    coverage = last.get("coverage") or None
    if coverage and "population_share" in coverage:
        coverage = {**coverage, "partial": is_partial(coverage)}
    return {"available": True, "dates": [r["date"] for r in rows],
            "values": [r["value"] for r in rows], "per_100k": [r["per_100k"] for r in rows],
            "suppressed": sum(bool(r["suppressed"]) for r in rows),
            "threshold": answer["suppression_threshold"], "units": answer["units"],
            "source": answer["source"], "licence": answer["licence"],
            "vintage_id": answer["vintage_id"], "coverage": coverage,
            "last": {"date": last["date"], "value": last["value"],
                     "per_100k": last["per_100k"]}}


def _fan(answer: dict) -> dict:
    """A forecast answer (:func:`service.usecases.forecast_reads.forecast`) as a fan chart's
    parallel lists."""
    items = sorted(answer["items"], key=lambda i: i["target_end_date"])
    out: dict[str, Any] = {"available": bool(items), "dates": [i["target_end_date"]
                                                              for i in items],
                           "horizons": [i["horizon"] for i in items],
                           "suppressed": sum(bool(i.get("suppressed")) for i in items)}
    for key, level in BANDS.items():
        out[key] = [next((q["value"] for q in i["quantiles"]
                          if abs(q["quantile"] - level) < 1e-9), None) for i in items]
    meta = answer["meta"]
    out.update(run_id=meta["run_id"], model=meta["model"], model_version=meta["model_version"],
               vintage_id=meta["vintage_id"], forecast_date=answer["forecast_date"],
               created_at=meta["created_at"])
    return out


def _forecast(ctx: ReadContext, target: dict | None, level: str, code: str) -> dict:
    """The latest forecast of ``target`` (a target-listing entry) for ``code``."""
    from service.usecases.forecast_reads import forecast

    if target is None:
        return _missing("no_target")
    try:
        answer = forecast(ctx, target=target["name"], frequency=target["frequency"],
                          level=level, model=None, run_id=None, codes=[code], horizon=None)
    except ApiError as exc:
        return _unavailable(exc)
    fan = _fan(answer)
    return fan if fan["available"] else _missing("no_forecast", target=target["name"],
                                                 level=level)


def targets_at(ctx: ReadContext, level: str) -> dict[tuple[str, str], dict]:
    """(indicator, frequency) → the target forecasting it at ``level`` (the target listing)."""
    from service.usecases.targets import list_targets

    return {(t["variable"], t["frequency"]): t for t in list_targets(ctx)
            if level in (t.get("levels") or [])}


def place_level(ctx: ReadContext, code: str) -> str | None:
    """The forecast level of a cube territory (None outside the forecast levels)."""
    from service.usecases.forecast_reads import LEVEL_OF

    level = ctx.territory_table().get(code, {}).get("level")
    return {**LEVEL_OF, "epci": "epci", "commune": "commune"}.get(level or "")


def _verdict(target: dict | None) -> dict | None:
    verdict = (target or {}).get("verdict")
    if not verdict:
        return None
    return {"status": verdict.get("status"), "text": verdict.get("text_fr"),
            "period": verdict.get("period")}


def indicator_view(ctx: ReadContext, name: str, frequency: str, code: str,
                   targets: dict[tuple[str, str], dict], level: str | None) -> dict:
    """One indicator of ``code`` as a page draws it: words, observations, forecast (of the
    target forecasting it at ``level``, from ``targets``: :func:`targets_at`) and verdict."""
    entry = ctx.find_indicator(name, frequency) or {}
    label, units = indicator_fr(name, "", entry.get("units", ""))
    target = targets.get((name, frequency))
    return {"indicator": name, "frequency": frequency, "label": label, "unit": units,
            "count": bool(entry.get("count")), "aggregation": entry.get("aggregation"),
            "observed": _observed(ctx, name, frequency, code),
            "forecast": _forecast(ctx, target, level, code) if level else
            _missing("no_target"),
            "target": target["name"] if target else None,
            "horizons": target.get("horizons_fr") if target else None,
            "verdict": _verdict(target)}


def _incidence(ctx: ReadContext, place: dict) -> dict:
    """The incidence published for the place's métropole (the EPCI itself, or the commune's)."""
    epci = place["code"] if place["level"] == "epci" else (place["epci"] or {}).get("code")
    table = ctx.territory_table()
    if not epci or epci not in table:
        return _missing("no_incidence")
    series = []
    for name in INCIDENCE:
        observed = _observed(ctx, name, "daily", epci)
        if observed["available"]:
            series.append({"indicator": name, "label": indicator_fr(name)[0], **observed})
    if not series:
        return _missing("no_incidence")
    return {"available": True, "territory": epci, "name": table[epci]["name"],
            "unit": indicator_fr(INCIDENCE[0])[1], "series": series}


def _capacity(ctx: ReadContext, code: str, on: str | None) -> dict | None:
    """The département's adult ICU beds on ``on`` (else the earliest known), or None."""
    observed = _observed(ctx, CAPACITY, "yearly", code)
    if not observed["available"]:
        return None
    known = [(d, v) for d, v in zip(observed["dates"], observed["values"], strict=True)
             if v is not None]
    before = [dv for dv in known if on is None or dv[0] <= on]
    if not known:
        return None
    date, value = before[-1] if before else known[0]
    return {"value": value, "date": date, "label": indicator_fr(CAPACITY)[0]}


def _alert(ctx: ReadContext, code: str) -> dict:
    from service.usecases.alerts import capacity_alerts

    try:
        answer = capacity_alerts(ctx, source="forecast", level="department", territory=code)
    except ApiError as exc:
        return _unavailable(exc)
    row = answer["rows"][0]
    return {"available": True, "forecast_date": answer["forecast_date"],
            **{k: row[k] for k in ("level", "message", "p_exceed_7d", "p_exceed_14d",
                                   "capacity", "median_7d", "median_14d")}}


def _pressure(ctx: ReadContext, code: str) -> dict:
    """The département's beds and ICU beds (observed, forecast, capacity) and its alert."""
    table = ctx.territory_table()
    if code not in table:
        return _missing("no_departement", departement=code)
    panels = []
    for name, frequency in PRESSURE:
        label, unit = indicator_fr(name)
        observed = _observed(ctx, name, frequency, code)
        fan = _forecast(ctx, {"name": name, "frequency": frequency}, "department", code)
        # The capacity in force on the forecast date (the alert's own), else when data end.
        on = (fan.get("forecast_date") if fan.get("available") else None) or (
            observed["dates"][-1] if observed["available"] else None)
        panels.append({"key": name, "label": label, "unit": unit, "observed": observed,
                       "forecast": fan,
                       "capacity": _capacity(ctx, code, on) if name == "icu" else None})
    return {"available": True, "territory": code, "name": table[code]["name"],
            "panels": panels, "alert": _alert(ctx, code)}


def _unemployment(ctx: ReadContext, code: str) -> dict:
    """The département's unemployment rate, its forecast and whether Vigie beats the baseline
    for it."""
    indicator, frequency, name = UNEMPLOYMENT
    table = ctx.territory_table()
    if code not in table:
        return _missing("no_departement", departement=code)
    targets = targets_at(ctx, "department")
    target = targets.get((indicator, frequency)) or {"name": name, "frequency": frequency}
    label, unit = indicator_fr(indicator)
    return {"available": True, "territory": code, "name": table[code]["name"],
            "label": label, "unit": unit,
            "observed": _observed(ctx, indicator, frequency, code),
            "forecast": _forecast(ctx, target, "department", code),
            "horizons": target.get("horizons_fr"), "verdict": _verdict(target)}


def city_page(ctx: ReadContext, code: str) -> dict:
    """Everything the city page of the EPCI or commune ``code`` shows (ApiError 404
    ``unknown_city`` when the registry has neither).

    Returns
    -------
    ``territory`` (:func:`_place`), ``indicators`` (one per own indicator: words,
    ``observed`` with ``per_100k`` and ``coverage``, ``forecast``, ``verdict``),
    ``incidence`` (its métropole's), ``pressure`` (its département's beds, ICU beds against
    capacity, alert) and ``unemployment`` (its département's, with forecast and verdict).
    """
    place = _place(ctx, code)
    level = place_level(ctx, code)
    targets = targets_at(ctx, level) if level else {}
    indicators = [indicator_view(ctx, name, frequency, code, targets, level)
                  for name, frequency in own_indicators(ctx, code).items()]
    return {"territory": place, "indicators": indicators,
            "incidence": _incidence(ctx, place),
            "pressure": _pressure(ctx, place["departement"]),
            "unemployment": _unemployment(ctx, place["departement"])}

