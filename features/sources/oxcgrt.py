"""Oxford COVID-19 Government Response Tracker (OxCGRT): France's daily policy indices.

The indices (0–100) describe national policy; the cube repeats France's value for every
territory (aggregation ``national``) so that territorial models can use it directly. Regional
measures (curfews by département…) are in ``scenarios``' table of French measures instead.

Reads the extract (``date, country_code, StringencyIndex, …``) and OxCGRT's official compact
national file (``CountryCode, Date`` as ``YYYYMMDD``, ``StringencyIndex_Average``, …).
"""

from __future__ import annotations

from pathlib import Path

from features.indicators import IndicatorSpec
from features.sources.checks import drop_duplicates, to_date, to_number
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import Collector, read_table
from features.territories import FRANCE

PUBLISHER = "Blavatnik School of Government, University of Oxford (OxCGRT)"
LICENCE = "CC BY 4.0"

INDEX_COLUMNS = {
    "stringency_index": ("StringencyIndex", "StringencyIndex_Average",
                         "containment and closure policies (stringency)"),
    "containment_health_index": ("ContainmentHealthIndex", "ContainmentHealthIndex_Average",
                                 "containment and health policies"),
    "government_response_index": ("GovernmentResponseIndex", "GovernmentResponseIndex_Average",
                                  "overall government response"),
    "economic_support_index": ("EconomicSupportIndex", "EconomicSupportIndex",
                               "economic support (income support, debt relief)"),
}

INDICATORS = tuple(
    IndicatorSpec(name, "daily", "index 0-100", f"OxCGRT {text} index for France", PUBLISHER,
                  LICENCE, "national")
    for name, (_, _, text) in INDEX_COLUMNS.items()
)


class Oxcgrt(Source):
    name = "oxcgrt"
    title = "France's daily government-response indices"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = ("https://raw.githubusercontent.com/OxCGRT/covid-policy-dataset/main/data/"
                    "OxCGRT_compact_national_v1.csv")
    file_patterns = ("fr_oxcgrt_indices_daily.csv", "OxCGRT_compact_national*.csv")
    indicators = INDICATORS
    required = False

    COLUMNS = {
        "date": ("date", "Date"),
        "country": ("country_code", "CountryCode"),
        **{name: (a, b) for name, (a, b, _) in INDEX_COLUMNS.items()},
    }

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check)
        frame = frame[frame["country"].eq("FRA")].copy()
        if frame.empty:
            check.fail("rows for France (country code 'FRA')", "none", column="country_code")
        compact = frame["date"].str.fullmatch(r"\d{8}").all()
        frame["date"] = to_date(frame, "date", check, ctx.today,
                                fmt="%Y%m%d" if compact else "%Y-%m-%d")
        for name in INDEX_COLUMNS:
            frame[name] = to_number(frame, name, check, allow_missing=True, minimum=0,
                                    maximum=100)
        check.raise_if_any()
        frame["territory"] = FRANCE
        frame = drop_duplicates(frame, ["territory", "date"], list(INDEX_COLUMNS), check)
        check.raise_if_any()
        tidy = to_tidy(frame, {name: name for name in INDEX_COLUMNS})
        return SourceResult(self.name, tidy, list(INDICATORS), warnings=check.warnings)


SOURCE = Oxcgrt()
