"""City indicators in Vigie's shared format (``features/schemas/city_indicators.schema.json``).

Any city publishes its own aggregated indicators (food-aid requests, 115 emergency-housing calls,
school absences…) as a tidy CSV following the Table Schema; every file named
``city_indicators*.csv`` or ``*.vigie.csv`` in the data directory is ingested. Validation is
driven by the schema itself (required fields, types, patterns, enums, primary key) plus the rules
the schema's descriptions state (counts >= 0, one unit / frequency / aggregation per indicator,
weekly dates on Saturdays, names that do not shadow Vigie's own indicators).

Text cells are checked too, because they reach every export (``/indicators`` in JSON and CSV,
the dashboard): a control character (C0 — tab, CR and LF inside a quoted cell included —, DEL,
C1) in any text field refuses the file, with its line as an editor shows it; so does a free-text
field (``unit``, ``source``, ``licence``: text without a pattern or a list of values in the
schema) starting with ``=``, ``+``, ``-`` or ``@``, which a spreadsheet runs as a formula
(CSV injection). Refused at ingest *and* neutralised at export: vintages ingested before this
rule, and text from other sources, are made harmless by the CSV writers
(:mod:`service.csv_safety`).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from features.indicators import IndicatorSpec
from features.sources.checks import (
    as_text,
    check_control_characters,
    check_formula_starts,
    check_territories,
    drop_duplicates,
    original_name,
    to_date,
    to_number,
)
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import MAX_PROBLEMS_PER_CHECK, Collector, read_table

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "city_indicators.schema.json"
DEFAULTS = {"frequency": "daily", "aggregation": "sum", "licence": "Licence Ouverte 2.0"}


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_with_schema(frame: pd.DataFrame, schema: dict, check: Collector,
                         today) -> pd.DataFrame:
    """Check a frame of strings against a Table Schema; convert numbers and dates.

    Returns the frame with ``number`` fields as float64 and ``date`` fields as datetime64.
    """
    for spec in schema["fields"]:
        name, constraints = spec["name"], spec.get("constraints", {})
        if name not in frame.columns:
            continue
        required = constraints.get("required", False)
        if spec["type"] == "number":
            frame[name] = to_number(frame, name, check, allow_missing=not required)
            continue
        if spec["type"] == "date":
            raw = frame[name]
            frame[name] = to_date(frame, name, check, today)
            if "minimum" in constraints:  # one old date would stretch the cube's date axis
                early = frame[name] < pd.Timestamp(constraints["minimum"])
                for idx in frame.index[early][:10]:
                    check.add(f"a date not before {constraints['minimum']}", repr(raw.at[idx]),
                              line=idx + 2, column=name)
            continue
        values = frame[name]
        present = values.notna() & values.str.strip().ne("")
        if required:
            for idx in frame.index[~present][:10]:
                check.add(f"a value ({spec.get('title', name)})", "an empty cell", line=idx + 2,
                          column=name)
        if "pattern" in constraints:
            regex = re.compile(constraints["pattern"])
            bad = present & ~values.fillna("").map(lambda v, r=regex: bool(r.fullmatch(v)))
            for idx in frame.index[bad][:10]:
                check.add(f"a value matching {constraints['pattern']} ({spec['description']})",
                          repr(values.at[idx]), line=idx + 2, column=name)
        if "enum" in constraints:
            bad = present & ~values.isin(constraints["enum"])
            for idx in frame.index[bad][:10]:
                check.add(f"one of {', '.join(constraints['enum'])}", repr(values.at[idx]),
                          line=idx + 2, column=name)
    return frame


def check_writable(frame: pd.DataFrame, check: Collector,
                   writable: Callable[[str], bool]) -> None:
    """Report each territory code the sender may not write (outside its token's territories)
    once, on the first line it appears on, with how many rows carry it."""
    codes = frame["territory"]
    present = codes.dropna()
    refused = [c for c in pd.unique(present) if not writable(c)]
    for code in refused[:MAX_PROBLEMS_PER_CHECK]:
        rows = codes.index[codes.eq(code)]
        check.add("a territory of this token's scope (its communes and EPCIs)",
                  f"'{code}', outside it ({len(rows)} row(s), first on this line)",
                  line=int(rows[0]) + 2, column=original_name(frame, "territory"))
    if len(refused) > MAX_PROBLEMS_PER_CHECK:
        check.add("a territory of this token's scope",
                  f"{len(refused) - MAX_PROBLEMS_PER_CHECK} more territories outside it",
                  column=original_name(frame, "territory"))


def free_text_fields(schema: dict) -> list[str]:
    """String fields whose values the schema does not constrain (no pattern, no list)."""
    return [f["name"] for f in schema["fields"] if f["type"] == "string"
            and not {"pattern", "enum"} & set(f.get("constraints", {}))]


class CityIndicators(Source):
    name = "city_indicators"
    title = "City indicators in Vigie's shared format"
    publisher = "the publishing city (see each row's 'source')"
    licence = "as declared per row (default Licence Ouverte 2.0)"
    file_patterns = ("city_indicators*.csv", "*.vigie.csv")
    required = False
    multiple = True
    #: Names of Vigie's own indicators, which a city file may not redefine.
    reserved: frozenset[str] = frozenset()

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        return self.parse_checked(path, ctx)

    def parse_checked(self, path: Path, ctx: ParseContext,
                      writable: Callable[[str], bool] | None = None) -> SourceResult:
        """:meth:`parse`, and (``writable``: whether the sender may write a territory code)
        every territory the sender may not write reported on the first line it appears on,
        with the other problems of the file (an upload, :mod:`features.uploads`)."""
        schema = load_schema()
        check = Collector(self.name, path)
        fields = {f["name"]: (f["name"],) for f in schema["fields"]
                  if f.get("constraints", {}).get("required")}
        optional = {f["name"]: (f["name"],) for f in schema["fields"]
                    if not f.get("constraints", {}).get("required")}
        try:
            frame = read_table(path, fields, check, optional=optional)
        except csv.Error as exc:  # e.g. a cell over the csv module's 131,072 characters
            check.fail("delimited text (CSV) whose cells hold at most 131,072 characters",
                       f"text the CSV reader refuses ({exc})")
        text_fields = [f["name"] for f in schema["fields"] if f["type"] == "string"]
        check_control_characters(path, check, text_fields)
        check.raise_if_any()  # a cell broken over lines shifts every line number after it
        check_formula_starts(frame, free_text_fields(schema), check)
        for column, default in DEFAULTS.items():
            if column not in frame.columns:
                frame[column] = default
            frame[column] = frame[column].fillna(default)
        frame = validate_with_schema(frame, schema, check, ctx.today)
        frame = frame.rename(columns={"territory_code": "territory"})
        frame.attrs["original_columns"] = {"territory": "territory_code"}
        check_territories(frame, "territory", check, ctx.territories)
        if writable is not None:
            check_writable(frame, check, writable)
        if frame["value"].dtype != "float64" or frame["date"].dtype != "datetime64[ns]":
            check.raise_if_any()  # the rules below need parsed numbers and dates

        shadowing = frame["indicator"].isin(self.reserved)
        for idx in frame.index[shadowing][:10]:
            check.add("an indicator name not used by Vigie's own sources",
                      repr(frame.at[idx, "indicator"]), line=idx + 2, column="indicator")
        negative = frame["aggregation"].eq("sum") & (frame["value"] < 0)
        for idx in frame.index[negative][:10]:
            check.add("a count >= 0 (aggregation 'sum')", repr(as_text(frame.at[idx, "value"])),
                      line=idx + 2, column="value")
        weekly_bad = frame["frequency"].eq("weekly") & frame["date"].dt.dayofweek.ne(5)
        for idx in frame.index[weekly_bad][:10]:
            check.add("a Saturday (weekly values are dated by the Saturday ending the week)",
                      f"{frame.at[idx, 'date'].date()} ({frame.at[idx, 'date'].day_name()})",
                      line=idx + 2, column="date")
        for attribute in ("unit", "frequency", "aggregation"):
            per_indicator = frame.groupby("indicator")[attribute].nunique()
            for indicator in per_indicator[per_indicator > 1].index[:10]:
                seen = sorted(frame.loc[frame["indicator"] == indicator, attribute].unique())
                first = int(frame.index[frame["indicator"] == indicator][0]) + 2
                check.add(f"one {attribute} per indicator",
                          f"{', '.join(map(repr, seen))} for '{indicator}'", line=first,
                          column=attribute)
        check.raise_if_any()
        frame = drop_duplicates(frame, ["territory", "date", "indicator"], ["value"], check)
        check.raise_if_any()

        specs = []
        for indicator, rows in frame.groupby("indicator", sort=True):
            first = rows.iloc[0]
            specs.append(IndicatorSpec(
                indicator, first["frequency"], first["unit"],
                f"city indicator published by {', '.join(sorted(rows['source'].unique()))}",
                first["source"], first["licence"], first["aggregation"],
                count=first["aggregation"] == "sum"))
        tidy = pd.concat([
            to_tidy(rows, {"value": "value"}).assign(indicator=indicator)
            for indicator, rows in frame.groupby("indicator", sort=True)
        ], ignore_index=True)
        return SourceResult(self.name, tidy, specs, warnings=check.warnings)


SOURCE = CityIndicators()
