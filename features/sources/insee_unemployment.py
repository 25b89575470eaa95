"""INSEE localised unemployment rates (taux de chômage localisés), quarterly, seasonally
adjusted, by département, région and France.

The social-services demand signal: a rising rate announces food-aid and benefit requests.
Quarters are dated by their last day (``2021-T4`` → 2021-12-31): a rate is not known before
its quarter ends. The extract is long (``level, area_name, dep_code, quarter, …``); INSEE's
official download is an xlsx workbook that the publisher reshapes the same way.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.indicators import IndicatorSpec
from features.sources.checks import check_territories, drop_duplicates, to_number
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import Collector, read_table
from features.territories import FRANCE

PUBLISHER = "INSEE, taux de chômage localisés"
LICENCE = "Licence Ouverte 2.0"

INDICATORS = (
    IndicatorSpec("unemployment_rate", "quarterly", "% of the labour force",
                  "ILO unemployment rate, seasonally adjusted", PUBLISHER, LICENCE,
                  "population_mean"),
)

#: National series of the file: only the France-wide one maps to a territory of the cube.
NATIONAL_AREAS = {"France entière (hors Mayotte)": FRANCE, "France entière": FRANCE,
                  "France métropolitaine": None}


class InseeUnemployment(Source):
    name = "insee_unemployment"
    title = "Quarterly unemployment rate by département"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = "https://www.insee.fr/fr/statistiques/1893230"
    file_patterns = ("fr_unemployment_rate_quarterly_insee.csv", "chomage-localise*.csv")
    indicators = INDICATORS
    required = False

    COLUMNS = {
        "level": ("level",),
        "area_name": ("area_name", "libelle"),
        "dep_code": ("dep_code",),
        "quarter": ("quarter", "periode"),
        "rate": ("unemployment_rate_pct_sa", "taux"),
    }

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check)
        regions = ctx.territories.table
        region_by_name = {name: code for code, name in
                          regions.loc[regions["level"] == "region", "name"].items()}
        territory = pd.Series(pd.NA, index=frame.index, dtype=object)
        is_dep = frame["level"].eq("department")
        territory[is_dep] = frame.loc[is_dep, "dep_code"]
        is_reg = frame["level"].eq("region")
        territory[is_reg] = frame.loc[is_reg, "area_name"].map(region_by_name)
        is_nat = frame["level"].eq("national")
        territory[is_nat] = frame.loc[is_nat, "area_name"].map(NATIONAL_AREAS)
        unknown_reg = is_reg & territory.isna()
        for idx in frame.index[unknown_reg][:10]:
            check.add("the name of a région", repr(frame.at[idx, "area_name"]), line=idx + 2,
                      column="area_name")
        bad_level = ~frame["level"].isin(["department", "region", "national"])
        for idx in frame.index[bad_level][:10]:
            check.add("level 'department', 'region' or 'national'",
                      repr(frame.at[idx, "level"]), line=idx + 2, column="level")
        skipped = is_nat & territory.isna() & frame["area_name"].isin(NATIONAL_AREAS)
        frame = frame.assign(territory=territory)
        frame.attrs["original_columns"]["territory"] = "dep_code"
        frame = frame[~skipped]
        check_territories(frame[is_dep[~skipped]], "territory", check, ctx.territories)
        quarter = frame["quarter"].str.extract(r"^(\d{4})-T([1-4])$")
        bad_q = quarter[0].isna()
        for idx in frame.index[bad_q][:10]:
            check.add("a quarter like 2021-T4", repr(frame.at[idx, "quarter"]), line=idx + 2,
                      column="quarter")
        check.raise_if_any()
        period = pd.PeriodIndex.from_fields(year=quarter[0].astype(int),
                                            quarter=quarter[1].astype(int), freq="Q")
        frame["date"] = period.end_time.normalize()
        future = frame["date"] > pd.Timestamp(ctx.today)
        for idx in frame.index[future][:10]:
            check.add(f"a quarter ended by today ({ctx.today})", repr(frame.at[idx, "quarter"]),
                      line=idx + 2, column="quarter")
        # INSEE leaves cells empty before a series starts (DROM before 2014): not observed.
        frame["rate"] = to_number(frame, "rate", check, allow_missing=True, minimum=0,
                                  maximum=100)
        check.raise_if_any()
        frame = drop_duplicates(frame, ["territory", "date"], ["rate"], check)
        check.raise_if_any()
        tidy = to_tidy(frame, {"rate": "unemployment_rate"})
        warnings = list(check.warnings)
        if skipped.any():
            warnings.append(f"{path.name}: {int(skipped.sum())} rows for 'France métropolitaine' "
                            "kept out (not a territory of the cube)")
        return SourceResult(self.name, tidy, list(INDICATORS), warnings=warnings)


SOURCE = InseeUnemployment()
