"""Santé publique France: daily new hospital admissions, ICU admissions, deaths and discharges per
département (SI-VIC, "donnees-hospitalieres-nouveaux-covid19").

Official publication: ``;``-separated UTF-8 (with BOM) file on data.gouv.fr, columns
``dep;jour;incid_hosp;incid_rea;incid_dc;incid_rad``. The extract in the shared data folder has
the same columns, comma-separated.
"""

from __future__ import annotations

from pathlib import Path

from features.indicators import IndicatorSpec
from features.sources.checks import (
    check_territories,
    dated_values,
)
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import Collector, read_table

PUBLISHER = "Santé publique France, SI-VIC"
LICENCE = "Licence Ouverte 2.0"

VALUE_COLUMNS = {
    "incid_hosp": ("inc_hosp", "new hospital admissions with Covid-19", "admissions/day"),
    "incid_rea": ("inc_icu", "new admissions to intensive care (réanimation)", "admissions/day"),
    "incid_dc": ("inc_death", "new deaths in hospital", "deaths/day"),
    "incid_rad": ("inc_discharge", "new discharges home (retours à domicile)", "discharges/day"),
}


class SpfHospitalFlows(Source):
    name = "spf_hospital_flows"
    title = "Daily hospital flows per département"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = "https://www.data.gouv.fr/fr/datasets/r/6fadff46-9efd-4c53-942a-54aca783c30c"
    file_patterns = ("fr_spf_hosp_incid_dep_daily.csv",
                     "donnees-hospitalieres-nouveaux-covid19*.csv")
    indicators = tuple(
        IndicatorSpec(name, "daily", units, description, PUBLISHER, LICENCE, "sum", count=True)
        for name, description, units in VALUE_COLUMNS.values()
    )

    COLUMNS = {
        "territory": ("dep", "dep_code"),
        "date": ("jour", "date"),
        **{col: (col,) for col in VALUE_COLUMNS},
    }

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check, numeric=VALUE_COLUMNS)
        check_territories(frame, "territory", check, ctx.territories)
        frame = dated_values(frame, VALUE_COLUMNS, check, ctx.today, count=True)
        tidy = to_tidy(frame, {col: spec[0] for col, spec in VALUE_COLUMNS.items()})
        return SourceResult(self.name, tidy, list(self.indicators), warnings=check.warnings)


SOURCE = SpfHospitalFlows()
