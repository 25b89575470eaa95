"""Santé publique France, SI-DEP: daily positive persons (``P``) and tests (``T``), France and
régions ("sp-pos-quot-fra", "sp-pos-quot-reg").

* ``fr_spf_sidep_fra_daily.csv`` (``fra,jour,cl_age90,pop,P,T,Ti,Tp,Td``): France.
* ``fr_spf_sidep_reg_daily.csv`` (``reg,jour,…``): régions by their INSEE code as SPF publishes
  it, including SPF's own codes for the small overseas collectivities (see
  :data:`SIDEP_REGION_CODES`).

Official publication on data.gouv.fr: ``;``-separated, sometimes with a UTF-8 BOM, decimal commas
in the rate and population columns, extra columns by sex (``P_f``, ``P_h``, ``T_f``…). Only the
all-ages rows (``cl_age90 = 0``) are kept; the age classes are not ingested. SPF's own rates
(``Ti``, ``Tp``) use SPF's population, not Vigie's: the cube derives ``incidence_rate_7d`` and
``positivity_rate_7d`` from ``P`` and ``T`` instead (:mod:`features.cube`).

Both sources are optional: the régional file stopped in 2022 while the national one goes on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.indicators import IndicatorSpec
from features.sources.checks import dated_values, original_name, to_number
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import MAX_PROBLEMS_PER_CHECK, Collector, read_table
from features.territories import FRANCE, region_code

PUBLISHER = "Santé publique France, SI-DEP"
LICENCE = "Licence Ouverte 2.0"

INDICATORS = (
    IndicatorSpec("inc_cases", "daily", "persons/day",
                  "positive persons (first positive test in 60 days), by test date, all ages",
                  PUBLISHER, LICENCE, "sum", count=True),
    IndicatorSpec("inc_tests", "daily", "tests/day",
                  "tests (PCR and antigenic) by sampling date, all ages", PUBLISHER, LICENCE,
                  "sum", count=True),
)
VALUE_COLUMNS = {"positives": "inc_cases", "tests": "inc_tests"}

#: SPF's ``reg`` codes that are not INSEE région codes → Vigie codes. INSEE régions 01–06
#: (overseas) and 11–94 map to ``'R' + code``; SPF also publishes three collectivités d'outre-mer
#: under codes of its own (identified by their population in the file: 5,997, 9,961 and 35,334).
SIDEP_REGION_CODES: dict[str, str] = {
    "05": "975",  # Saint-Pierre-et-Miquelon
    "07": "977",  # Saint-Barthélemy
    "08": "978",  # Saint-Martin
}


class _Sidep(Source):
    publisher = PUBLISHER
    licence = LICENCE
    indicators = INDICATORS
    required = False
    territory_aliases: tuple[str, ...] = ()
    territory_optional = False

    def columns(self) -> dict[str, tuple[str, ...]]:
        cols = {
            "date": ("jour",),
            "age": ("cl_age90",),
            "positives": ("P",),
            "tests": ("T",),
        }
        if not self.territory_optional:
            cols = {"territory": self.territory_aliases, **cols}
        return cols

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        optional = {"territory": self.territory_aliases} if self.territory_optional else None
        frame = read_table(path, self.columns(), check, optional=optional,
                           numeric=("age", "positives", "tests"))
        age = to_number(frame, "age", check)
        check.raise_if_any()
        frame = frame[age.eq(0)].copy()
        if frame.empty:
            check.fail("rows for all ages (cl_age90 = 0)",
                       f"only age classes {sorted(pd.unique(age.dropna()).tolist())[:10]}",
                       column=original_name(frame, "age"))
        frame["territory"] = self.territories(frame, check, ctx)
        frame = dated_values(frame, VALUE_COLUMNS, check, ctx.today, count=True,
                             allow_missing=True)
        tidy = to_tidy(frame, VALUE_COLUMNS)
        return SourceResult(self.name, tidy, list(self.indicators), warnings=check.warnings)

    def territories(self, frame: pd.DataFrame, check: Collector,
                    ctx: ParseContext) -> pd.Series:  # pragma: no cover
        raise NotImplementedError


class SpfSidepFrance(_Sidep):
    name = "spf_sidep_france"
    title = "Daily positive persons and tests, France (SI-DEP)"
    official_url = "https://www.data.gouv.fr/fr/datasets/r/dd0de5d9-b5a5-4503-930a-7b08dc0adc7c"
    file_patterns = ("fr_spf_sidep_fra_daily.csv", "sp-pos-quot-fra-*.csv")
    territory_aliases = ("fra", "pays")
    territory_optional = True

    def territories(self, frame: pd.DataFrame, check: Collector,
                    ctx: ParseContext) -> pd.Series:
        if "territory" not in frame.columns:
            return pd.Series(FRANCE, index=frame.index)
        raw = frame["territory"].fillna("").str.strip()
        bad = ~raw.str.upper().isin([FRANCE, "FRANCE"])
        column = original_name(frame, "territory")
        for idx in bad[bad].index[:MAX_PROBLEMS_PER_CHECK]:
            check.add("'FR' (the national file holds France only)", repr(raw.at[idx]),
                      line=int(idx) + 2, column=column)
        return pd.Series(FRANCE, index=frame.index)


class SpfSidepRegion(_Sidep):
    name = "spf_sidep_region"
    title = "Daily positive persons and tests by région (SI-DEP)"
    official_url = "https://www.data.gouv.fr/fr/datasets/r/001aca18-df6a-45c8-89e6-f82d689e6c01"
    file_patterns = ("fr_spf_sidep_reg_daily.csv", "sp-pos-quot-reg-*.csv")
    territory_aliases = ("reg",)

    def territories(self, frame: pd.DataFrame, check: Collector,
                    ctx: ParseContext) -> pd.Series:
        return map_region_codes(frame, "territory", check, ctx)


def map_region_codes(frame: pd.DataFrame, column: str, check: Collector,
                     ctx: ParseContext) -> pd.Series:
    """SPF ``reg`` codes → Vigie codes, reporting each unknown code with its first line."""
    raw = frame[column].fillna("").str.strip()
    codes, uniques = pd.factorize(raw)
    label = original_name(frame, column)
    mapped_uniques = []
    unknown = []
    for code in uniques:
        padded = code.zfill(2) if code.isdigit() else code
        vigie = SIDEP_REGION_CODES.get(padded, region_code(padded) if padded.isdigit() else None)
        if vigie is None or vigie not in ctx.territories:
            unknown.append(code)
            vigie = None
        mapped_uniques.append(vigie)
    for code in unknown[:MAX_PROBLEMS_PER_CHECK]:
        first = int(raw.index[raw.eq(code)][0]) + 2
        found = "an empty cell" if code == "" else repr(code)
        check.add("an INSEE région code (01–06, 11–94) or SPF's 05, 07, 08 (Saint-Pierre-et-"
                  "Miquelon, Saint-Barthélemy, Saint-Martin)", found, line=first, column=label)
    return pd.Series(pd.Series(mapped_uniques, dtype=object).to_numpy()[codes],
                     index=frame.index, dtype=object)


SOURCES = (SpfSidepFrance(), SpfSidepRegion())
