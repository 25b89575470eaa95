"""One module per source: fetch → parse → validate → tidy frame.

``SOURCES`` lists every source in ingest order. Territories (``insee_territories``) are not in
the list: they are read first because every other source's codes are checked against them.
"""

from __future__ import annotations

from features.sources import (
    city_indicators,
    drees_capacity,
    google_mobility,
    insee_population,
    insee_unemployment,
    oxcgrt,
    spf_bed_occupancy,
    spf_hospital_flows,
    spf_incidence_metropoles,
    spf_incidence_positivity,
    spf_screening,
    spf_sidep,
    spf_vacsi,
    sursaud,
)
from features.sources.contract import Source

SOURCES: tuple[Source, ...] = (
    spf_hospital_flows.SOURCE,
    *spf_bed_occupancy.SOURCES,
    *sursaud.SOURCES,
    *spf_sidep.SOURCES,
    spf_vacsi.SOURCE,
    *spf_screening.SOURCES,
    google_mobility.SOURCE,
    oxcgrt.SOURCE,
    insee_unemployment.SOURCE,
    insee_population.SOURCE,
    drees_capacity.SOURCE,
    spf_incidence_metropoles.SOURCE,
    spf_incidence_positivity.SOURCE,
    city_indicators.SOURCE,
)

BY_NAME: dict[str, Source] = {source.name: source for source in SOURCES}

#: Every indicator a built-in source can produce, by name.
BUILTIN_INDICATORS = {spec.name: spec for source in SOURCES for spec in source.indicators}
city_indicators.CityIndicators.reserved = frozenset(BUILTIN_INDICATORS)
