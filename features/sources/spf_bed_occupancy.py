"""Santé publique France: beds occupied by Covid-19 patients (``hosp``) and ICU beds occupied
(``rea`` → ``icu``) per département, where published.

Two files carry published stocks:

* ``fr_spf_hosp_rea_stock_dep_2020H2.csv`` (100 départements, 2020-08-01..2021-01-13), an extract
  of SPF "donnees-hospitalieres-covid19" (``sexe = 0``). The official file (``;``-separated,
  columns ``dep;sexe;jour;hosp;rea;…``) is read too: only the all-sexes rows (``sexe = 0``) count.
* ``fr_spf_hosp_bfc_daily.csv`` (the 8 Bourgogne-Franche-Comté départements, 2020-03-18..
  2021-02-01), stocks and flows. Only its stocks are used: the national flows file is the
  reference for flows.

Occupancy for the days and départements without a published stock is rebuilt in
:mod:`features.occupancy` when the cube is built.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.indicators import IndicatorSpec
from features.sources.checks import (
    check_territories,
    dated_values,
)
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import Collector, read_table

PUBLISHER = "Santé publique France, SI-VIC"
LICENCE = "Licence Ouverte 2.0"

#: Columns of the stock files (shared extract and official SPF file alike), with aliases.
STOCK_COLUMNS = {
    "territory": ("dep_code", "dep"),
    "date": ("date", "jour"),
    "hosp": ("hosp",),
    "rea": ("rea",),
}

INDICATORS = (
    IndicatorSpec("hosp", "daily", "beds", "hospital beds occupied by Covid-19 patients "
                  "(published by SPF; rebuilt from flows where not published)", PUBLISHER,
                  LICENCE, "sum", count=True, stock=True),
    IndicatorSpec("icu", "daily", "beds", "intensive-care (réanimation) beds occupied by Covid-19 "
                  "patients (published by SPF; rebuilt from flows where not published)",
                  PUBLISHER, LICENCE, "sum", count=True, stock=True),
)


def _parse_stocks(source: Source, path: Path, ctx: ParseContext, columns: dict,
                  optional: dict | None = None) -> SourceResult:
    check = Collector(source.name, path)
    frame = read_table(path, columns, check, optional=optional,
                       numeric=("hosp", "rea"))
    if "sex" in frame.columns:
        # Official file: one row per sex (0 = all, 1 = men, 2 = women); keep the totals.
        frame = frame[frame["sex"].str.strip().eq("0")]
    check_territories(frame, "territory", check, ctx.territories)
    frame = dated_values(frame, ["hosp", "rea"], check, ctx.today, count=True,
                         allow_missing=True)
    tidy = to_tidy(frame, {"hosp": "hosp", "rea": "icu"})
    return SourceResult(source.name, tidy, list(INDICATORS), warnings=check.warnings)


class SpfBedOccupancy(Source):
    name = "spf_bed_occupancy"
    title = "Daily beds and ICU beds occupied per département"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = "https://www.data.gouv.fr/fr/datasets/r/63352e38-d353-4b54-bfd1-f1b3ee1cabd7"
    file_patterns = ("fr_spf_hosp_rea_stock_dep_*.csv", "donnees-hospitalieres-covid19-*.csv")
    indicators = INDICATORS
    COLUMNS = STOCK_COLUMNS

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        return _parse_stocks(self, path, ctx, self.COLUMNS, optional={"sex": ("sexe",)})


class SpfBedOccupancyBfc(Source):
    name = "spf_bed_occupancy_bfc"
    title = "Daily occupancy in Bourgogne-Franche-Comté départements"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = "https://github.com/mattifaye/covid19bfc"
    file_patterns = ("fr_spf_hosp_bfc_daily.csv",)
    indicators = INDICATORS
    required = False
    COLUMNS = STOCK_COLUMNS

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        return _parse_stocks(self, path, ctx, self.COLUMNS)


def published_stock_frame(results: list[SourceResult]) -> pd.DataFrame:
    """Union of published stocks, the first source winning where two publish the same day."""
    frames = [r.frame for r in results if len(r.frame)]
    if not frames:
        return pd.DataFrame(columns=["territory", "date", "indicator", "value"])
    merged = pd.concat(frames, ignore_index=True)
    return merged.drop_duplicates(["territory", "date", "indicator"], keep="first")


SOURCES = (SpfBedOccupancy(), SpfBedOccupancyBfc())
