"""DREES, Statistique annuelle des établissements de santé (SAE): critical-care beds by
département, sector and unit type, at 31 December of each year.

Yearly values are dated 1 January of the following year (the state of the stock on that day),
matching the INSEE population estimates of the yearly dataset.

Units (SAE codes): ``REAADU`` adult intensive care (réanimation adulte), ``REAENF`` paediatric
intensive care, ``USIC`` cardiology intensive care, ``SIUNV`` neuro-vascular intensive care,
``AUTSI`` other intensive-care units, ``SURVADU``/``SURVENF`` continuous care (surveillance
continue) for adults/children.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.indicators import IndicatorSpec
from features.sources.checks import check_territories, drop_duplicates, to_number
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import Collector, read_table
from features.territories import FRANCE

PUBLISHER = "DREES, Statistique annuelle des établissements de santé (SAE)"
LICENCE = "Licence Ouverte 2.0"

UNIT_GROUPS = {
    "icu_beds_adult": (("REAADU",), "adult intensive-care (réanimation) beds"),
    "icu_beds_paediatric": (("REAENF",), "paediatric intensive-care beds"),
    "intensive_care_beds": (("USIC", "SIUNV", "AUTSI"), "single-organ intensive-care (USI) beds"),
    "continuous_care_beds": (("SURVADU", "SURVENF"),
                             "continuous-care (surveillance continue) beds"),
    "critical_care_beds": (("REAADU", "REAENF", "USIC", "SIUNV", "AUTSI", "SURVADU", "SURVENF"),
                           "all critical-care beds"),
}
KNOWN_UNITS = {"REAADU", "REAENF", "USIC", "SIUNV", "AUTSI", "SURVADU", "SURVENF"}

INDICATORS = tuple(
    IndicatorSpec(name, "yearly", "beds", f"{text}, all sectors, at 31 December of the previous "
                  "year", PUBLISHER, LICENCE, "sum", count=True)
    for name, (_, text) in UNIT_GROUPS.items()
)


class DreesCapacity(Source):
    name = "drees_capacity"
    title = "Critical-care bed capacity by département"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = "https://data.drees.solidarites-sante.gouv.fr/explore/dataset/708_bases-statistiques-sae/"
    file_patterns = ("fr_drees_critical_care_beds.csv", "lits_soins_critiques*.csv")
    indicators = INDICATORS
    required = False

    COLUMNS = {
        "geo_level": ("geo_level",),
        "geo_code": ("geo_code",),
        "geo_name": ("geo_name",),
        "year": ("year", "an"),
        "status": ("status",),
        "unit": ("unit",),
        "beds": ("beds", "lits"),
    }

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check, numeric=("beds",))
        national = frame["geo_level"].eq("national")
        # The national rows come twice: France ('FR') and metropolitan France ('MET'); the
        # latter is not a territory of the cube.
        frame = frame[~national | frame["geo_name"].eq("FR")].copy()
        frame["territory"] = frame["geo_code"].where(~frame["geo_level"].eq("national"), FRANCE)
        frame.attrs["original_columns"]["territory"] = "geo_code"
        check_territories(frame, "territory", check, ctx.territories)
        unknown_unit = ~frame["unit"].isin(KNOWN_UNITS)
        for idx in frame.index[unknown_unit][:10]:
            check.add(f"a unit among {', '.join(sorted(KNOWN_UNITS))}",
                      repr(frame.at[idx, "unit"]), line=idx + 2, column="unit")
        year = to_number(frame, "year", check, count=True, minimum=1990,
                         maximum=ctx.today.year - 1)
        frame["beds"] = to_number(frame, "beds", check, count=True)
        check.raise_if_any()
        frame["date"] = pd.to_datetime((year.astype(int) + 1).astype(str) + "-01-01")
        frame = drop_duplicates(frame, ["territory", "date", "status", "unit"], ["beds"], check)
        check.raise_if_any()
        parts = []
        for name, (units, _) in UNIT_GROUPS.items():
            sub = (frame[frame["unit"].isin(units)]
                   .groupby(["territory", "date"], as_index=False)["beds"].sum())
            parts.append(to_tidy(sub, {"beds": name}))
        tidy = pd.concat(parts, ignore_index=True)
        return SourceResult(self.name, tidy, list(INDICATORS), warnings=check.warnings)


SOURCE = DreesCapacity()
