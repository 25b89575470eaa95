"""Lookups in the served cube vintage, shared by the endpoints: the vintage itself, its
datasets, territories and indicators (memoised per vintage: vintages are immutable)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from service.api.cache import set_last_modified
from service.api.formats import clean
from service.api.state import state
from service.audit import note, pinned
from service.errors import ApiError
from service.labels import indicator_fr

FREQUENCIES = ("daily", "weekly", "quarterly", "yearly")


def current_vintage() -> dict:
    """The served vintage, or a 503 when nothing was ever ingested."""
    try:
        row = state().store.current_vintage()
    except LookupError as exc:
        raise ApiError(503, "no_data", "no cube vintage yet: run 'python -m service ingest'",
                       {"reason": str(exc)}) from exc
    note(vintage_id=row["id"])
    if not pinned("vintage_id"):  # else the answer is not of the current vintage (a forecast)
        set_last_modified(row["issued_at"])
    return row


def memo(key: tuple, build: Callable[[], Any]) -> Any:
    """Per-vintage memo: vintages are immutable, so derived tables are computed once."""
    table = state().extra.setdefault("memo", {})
    if key not in table:
        if len(table) > 64:
            table.clear()
        table[key] = build()
    return table[key]


def open_dataset(frequency: str, as_of: Any = None):
    """A cube dataset of the served vintage (``as_of``: as known on that date)."""
    st = state()
    if as_of is not None:
        ds = st.store.open(frequency, as_of=as_of)
        note(vintage_id=ds.attrs.get("vintage_id"))
        return ds
    row = current_vintage()
    return st.store.open(frequency, vintage_id=row["id"])


def _datasets(vintage_id: str):
    """(frequency, dataset) of every frequency the vintage has."""
    for frequency in FREQUENCIES:
        try:
            ds = state().store.open(frequency, vintage_id=vintage_id)
        except KeyError:
            continue
        yield frequency, ds


def territory_table() -> dict[str, dict]:
    """Code → {code, name, level, parent, population} of the served vintage (all datasets)."""
    row = current_vintage()

    def build() -> dict[str, dict]:
        out: dict[str, dict] = {}
        for _, ds in _datasets(row["id"]):
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

    return memo(("territories", row["id"]), build)


def groupements() -> dict[str, dict]:
    """Every EPCI of the served vintage's registry with its member communes
    (:func:`features.territories.groupement_entries`; {} when the vintage has no EPCI
    tables)."""
    from features.territories import groupement_entries

    row = current_vintage()

    def build() -> dict[str, dict]:
        try:
            return groupement_entries(state().store.open_table("epci"),
                                      state().store.open_table("epci_communes"))
        except KeyError:
            return {}

    return memo(("groupements", row["id"]), build)


def _indicator_entry(name: str, var, frequency: str, ds) -> dict:
    import pandas as pd

    observed = var.notnull()
    dates = ds["date"].values[observed.any("territory").values]
    label, units_fr = indicator_fr(str(name), str(var.attrs.get("description", "")),
                                   str(var.attrs.get("units", "")))
    return {
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
    }


def indicator_entries() -> list[dict]:
    """Every (indicator, frequency) with metadata and observed date range, of the served
    vintage. A name can exist at several frequencies (``inc_hosp`` daily and weekly)."""
    row = current_vintage()

    def build() -> list[dict]:
        return [_indicator_entry(name, var, frequency, ds)
                for frequency, ds in _datasets(row["id"]) for name, var in ds.data_vars.items()]

    return memo(("indicators", row["id"]), build)


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

    return set(memo(("observed", row["id"], frequency, tuple(names)), build))


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
