"""The cube as a user asks for it: what the served vintage holds (``cube info``), one
indicator as tidy rows (``cube export``), the list of vintages (``cube vintages``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


class UnknownIndicator(KeyError):
    """No dataset of the cube has that indicator."""


class UnknownTerritories(KeyError):
    """Codes the cube does not know (``codes``)."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__(codes)
        self.codes = codes


@dataclass
class IndicatorExport:
    """One indicator as ``territory,date,indicator,value`` rows (``frame``), its dataset's
    ``frequency``, the asked codes with no value (``empty``: code and name) and the name of
    an estimate of the indicator when the cube has one (``estimate``)."""

    frame: pd.DataFrame
    frequency: str
    empty: list[tuple[str, str]] = field(default_factory=list)
    estimate: str | None = None


def describe(settings: Any, as_of: str | None = None) -> dict:
    """The vintage served on ``as_of`` (default: the latest, all dates): its datasets, their
    territories by level, and each indicator's units, source, date range and territories.

    Raises
    ------
    features.errors.NoVintageError
        Nothing ingested (by that date).
    """
    from features.indicators import FREQUENCIES
    from features.store import CubeStore

    store = CubeStore(settings)
    row = store.vintage_at(as_of)
    out = {"vintage_id": row["id"], "issued_at": row["issued_at"].isoformat(),
           "as_of": as_of, "issued_after_as_of": row["issued_after_as_of"], "datasets": {}}
    for frequency in FREQUENCIES:
        try:
            ds = store.open(frequency, as_of=as_of, vintage_id=row["id"]) if not as_of else \
                store.open(frequency, as_of=as_of)
        except KeyError:
            continue
        out["datasets"][frequency] = _dataset_summary(ds)
    return out


def _dataset_summary(ds: Any) -> dict:
    levels = pd.Series(ds["territory_level"].values).value_counts().to_dict()
    indicators = {}
    for name, var in ds.data_vars.items():
        observed = var.notnull()
        dates = ds["date"].values[observed.any("territory").values]
        indicators[name] = {
            "units": var.attrs.get("units", ""),
            "source": var.attrs.get("source", ""),
            "first_date": str(pd.Timestamp(dates[0]).date()) if len(dates) else None,
            "last_date": str(pd.Timestamp(dates[-1]).date()) if len(dates) else None,
            "territories": int(observed.any("date").sum()),
        }
    return {"territories": int(ds.sizes["territory"]), "dates": int(ds.sizes["date"]),
            "levels": levels, "indicators": indicators}


def export_indicator(settings: Any, indicator: str, territories: list[str] | None = None,
                     as_of: str | None = None) -> IndicatorExport:
    """One indicator of the cube as known on ``as_of``, as tidy rows (only these codes).

    Raises
    ------
    features.errors.NoVintageError
        Nothing ingested (by that date).
    UnknownIndicator, UnknownTerritories
        The cube has no such indicator, or does not know some of the codes.
    """
    from features.indicators import FREQUENCIES
    from features.store import CubeStore

    store = CubeStore(settings)
    for frequency in FREQUENCIES:
        try:
            ds = store.open(frequency, as_of=as_of)
        except KeyError:
            continue
        if indicator in ds.data_vars:
            break
    else:
        if indicator == POPULATION:
            return export_population(settings, territories, as_of)
        raise UnknownIndicator(indicator)
    var = ds[indicator]
    if territories:
        unknown = [c for c in territories if c not in ds.indexes["territory"]]
        if unknown:
            raise UnknownTerritories(unknown)
        var = var.sel(territory=territories)
    frame = var.to_dataframe(name="value")[["value"]].reset_index().dropna(subset=["value"])
    frame["indicator"] = indicator
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    result = IndicatorExport(frame[["territory", "date", "indicator", "value"]], frequency)
    if territories:
        # A code the cube knows but without this indicator is not an error (no département
        # publishes daily cases), yet an empty block in the file must not pass unnoticed.
        empty = [c for c in territories if c not in set(frame["territory"])]
        if empty:
            names = ds["territory_name"].sel(territory=empty).values
            result.empty = list(zip(empty, map(str, names), strict=True))
            estimate = f"{indicator}_estimated"
            result.estimate = estimate if estimate in ds.data_vars else None
    return result


#: The name under which ``cube export`` gives the territories' legal populations.
POPULATION = "population"


def export_population(settings: Any, territories: list[str] | None = None,
                      as_of: str | None = None) -> IndicatorExport:
    """The legal population (inhabitants) of every territory of the vintage served on
    ``as_of`` (only these codes), as ``territory,level,name,indicator,value`` rows: France,
    régions, départements, collectivités, every EPCI of the registry (the sum of its member
    communes) and every commune of an EPCI. Populations are not dated in the cube (the
    INSEE legal populations the rates divide by), so the rows have no ``date`` and the
    frequency is ``reference``.

    Raises
    ------
    features.errors.NoVintageError
        Nothing ingested (by that date).
    UnknownTerritories
        Codes the vintage does not know.
    """
    from features.indicators import FREQUENCIES
    from features.store import CubeStore
    from features.territories import registry_populations

    store = CubeStore(settings)
    vintage = store.vintage_at(as_of)["id"]
    coordinates = []
    for frequency in FREQUENCIES:
        try:
            ds = store.open(frequency, vintage_id=vintage)
        except KeyError:
            continue
        coordinates.append(ds[["territory_name", "territory_level", "population"]]
                           .coords.to_dataset().drop_vars("date", errors="ignore")
                           .to_dataframe().reset_index())
    tables = []
    for name in ("epci", "epci_communes"):
        try:
            tables.append(store.open_table(name, as_of=as_of))
        except KeyError:
            tables.append(None)
    table = registry_populations(coordinates, *tables)
    if territories:
        unknown = [c for c in territories if c not in table.index]
        if unknown:
            raise UnknownTerritories(unknown)
        table = table.loc[list(dict.fromkeys(territories))]
    frame = table.reset_index().rename(columns={"code": "territory", "population": "value"})
    frame["indicator"] = POPULATION
    return IndicatorExport(frame[["territory", "level", "name", "indicator", "value"]],
                           "reference")


def list_vintages(settings: Any) -> list[dict]:
    """Every vintage: id, issue time, input files."""
    from features.store import CubeStore

    return CubeStore(settings).list_vintages()
