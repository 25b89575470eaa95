"""INSEE population estimates by département, sex and 5-year age group (1 January of each year;
2021 onwards provisional).

Gives the yearly indicators ``population_estimate`` and ``population_65_plus`` (date = 1 January
of the year) and the full age × sex table (``tables['population_by_age']``) for age-structured
models.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.indicators import IndicatorSpec
from features.sources.checks import check_territories, drop_duplicates, to_number
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import Collector, read_table

PUBLISHER = "INSEE, estimations de population"
LICENCE = "Licence Ouverte 2.0"

AGE_GROUPS = ("0-4", "5-9", "10-14", "15-19", "20-24", "25-29", "30-34", "35-39", "40-44",
              "45-49", "50-54", "55-59", "60-64", "65-69", "70-74", "75-79", "80-84", "85-89",
              "90-94", "95+", "total")
OLD_AGE = ("65-69", "70-74", "75-79", "80-84", "85-89", "90-94", "95+")

INDICATORS = (
    IndicatorSpec("population_estimate", "yearly", "inhabitants",
                  "estimated population on 1 January", PUBLISHER, LICENCE, "sum", count=True),
    IndicatorSpec("population_65_plus", "yearly", "inhabitants",
                  "estimated population aged 65 or more on 1 January", PUBLISHER, LICENCE,
                  "sum", count=True),
)


class InseePopulation(Source):
    name = "insee_population"
    title = "Population by département, sex and age group"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = "https://www.insee.fr/fr/statistiques/1893198"
    file_patterns = ("fr_population_dep_sex_age_insee.csv", "estim-pop-dep-sexe-aq*.csv")
    indicators = INDICATORS
    required = False

    COLUMNS = {
        "year": ("year", "annee"),
        "territory": ("dep_code", "dep"),
        "sex": ("sex", "sexe"),
        "age_group": ("age_group", "age"),
        "population": ("population",),
    }

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check, numeric=("population",))
        check_territories(frame, "territory", check, ctx.territories)
        for column, allowed in (("sex", ("all", "male", "female")), ("age_group", AGE_GROUPS)):
            bad = ~frame[column].isin(allowed)
            for idx in frame.index[bad][:10]:
                check.add(f"one of {', '.join(allowed)}", repr(frame.at[idx, column]),
                          line=idx + 2, column=column)
        year = to_number(frame, "year", check, count=True, minimum=1900, maximum=ctx.today.year)
        frame["population"] = to_number(frame, "population", check, count=True)
        check.raise_if_any()
        frame["date"] = pd.to_datetime(year.astype(int).astype(str) + "-01-01")
        keys = ["territory", "date", "sex", "age_group"]
        frame = drop_duplicates(frame, keys, ["population"], check)
        check.raise_if_any()
        both = frame[frame["sex"] == "all"]
        total = both[both["age_group"] == "total"]
        old = (both[both["age_group"].isin(OLD_AGE)]
               .groupby(["territory", "date"], as_index=False)["population"].sum())
        tidy = pd.concat([
            to_tidy(total, {"population": "population_estimate"}),
            to_tidy(old, {"population": "population_65_plus"}),
        ], ignore_index=True)
        by_age = frame[keys + ["population"]].reset_index(drop=True)
        return SourceResult(self.name, tidy, list(INDICATORS), warnings=check.warnings,
                            tables={"population_by_age": by_age})


SOURCE = InseePopulation()
