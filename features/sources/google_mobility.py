"""Google COVID-19 Community Mobility Reports: daily % change in visits against the Jan–Feb 2020
baseline, for France, its 13 metropolitan régions and 96 metropolitan départements.

Reads the extract (``level, dep_code, iso_3166_2_code, …``) and Google's official report files
(``Global_Mobility_Report.csv`` or ``2020_FR_Region_Mobility_Report.csv``, with columns like
``retail_and_recreation_percent_change_from_baseline``). Blank cells are Google's privacy
threshold, not errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.indicators import IndicatorSpec
from features.sources.checks import (
    check_territories,
    dated_values,
)
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import Collector, read_table
from features.territories import FRANCE, ISO_REGION_TO_CODE

PUBLISHER = "Google LLC, COVID-19 Community Mobility Reports"
LICENCE = "Google terms of service (free reuse with attribution)"

PLACES = {
    "retail_recreation": ("retail_and_recreation_percent_change_from_baseline",
                          "retail and recreation"),
    "grocery_pharmacy": ("grocery_and_pharmacy_percent_change_from_baseline",
                         "grocery and pharmacy"),
    "parks": ("parks_percent_change_from_baseline", "parks"),
    "transit_stations": ("transit_stations_percent_change_from_baseline", "transit stations"),
    "workplaces": ("workplaces_percent_change_from_baseline", "workplaces"),
    "residential": ("residential_percent_change_from_baseline", "time at home (residential)"),
}

INDICATORS = tuple(
    IndicatorSpec(f"mobility_{place}", "daily", "% change vs Jan-Feb 2020 baseline",
                  f"visits to {text}, % change from the day-of-week baseline", PUBLISHER,
                  LICENCE, "population_mean")
    for place, (_, text) in PLACES.items()
)


class GoogleMobility(Source):
    name = "google_mobility"
    title = "Daily mobility by country, région and département"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = "https://www.gstatic.com/covid19/mobility/Global_Mobility_Report.csv"
    file_patterns = ("fr_google_mobility_daily.csv", "2020_FR_Region_Mobility_Report*.csv",
                     "Global_Mobility_Report*.csv")
    indicators = INDICATORS
    required = False

    COLUMNS = {
        "date": ("date",),
        "iso": ("iso_3166_2_code",),
        "sub_region_1": ("sub_region_1",),
        **{place: (place, official) for place, (official, _) in PLACES.items()},
    }
    OPTIONAL = {"country": ("country_region_code",), "dep_code": ("dep_code",),
                "level": ("level",), "sub_region_2": ("sub_region_2",),
                "metro_area": ("metro_area",)}

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check, optional=self.OPTIONAL,
                           numeric=PLACES)
        if "country" in frame.columns:
            frame = frame[frame["country"].eq("FR")]
        if "metro_area" in frame.columns:
            frame = frame[frame["metro_area"].isna()]
        iso = frame["iso"].fillna("")
        is_region = iso.isin(ISO_REGION_TO_CODE)
        is_country = iso.eq("") & frame["sub_region_1"].isna()
        dep = iso.str.slice(3).where(iso.str.startswith("FR-"), iso)
        if "dep_code" in frame.columns:
            dep = frame["dep_code"].fillna(dep)
        frame["territory"] = np.where(is_country, FRANCE,
                                      np.where(is_region, iso.map(ISO_REGION_TO_CODE), dep))
        frame.attrs["original_columns"]["territory"] = "iso_3166_2_code"
        check_territories(frame, "territory", check, ctx.territories)
        frame = dated_values(frame, PLACES, check, ctx.today, allow_missing=True, minimum=-100)
        tidy = to_tidy(frame, {place: f"mobility_{place}" for place in PLACES})
        return SourceResult(self.name, tidy, list(INDICATORS), warnings=check.warnings)


SOURCE = GoogleMobility()
