"""Santé publique France: 7-day incidence per 100,000 inhabitants and test positivity (%) by
département (SI-DEP), as published.

Extract: ``fr_spf_incidence_positivity_bfc.csv`` (the 8 Bourgogne-Franche-Comté départements,
2020-05 to 2021-01), columns ``dep_code, dep_name, start_7d, end_7d, incidence_7d_per_100k,
positivity_7d_pct``; each row is dated by ``end_7d``, the last day of its 7-day window.

Official publication (data.gouv.fr, *sp-pos-7j-dep*: positives over 7 sliding days by
département): ``;``-separated, BOM allowed, columns ``dep``, ``semaine_glissante``
(``2020-05-13-2020-05-19``), ``P`` (positive persons), ``T`` (tests), ``pop`` and, when present,
``cl_age90`` (only ``0``, all ages, is kept). The rates are SPF's own definitions computed from
those published counts: ``100,000 × P / pop`` and ``100 × P / T``.

Published values win over the cube's derived ones: :func:`features.cube.derive_indicators`
fills only cells without a published value, and rates are never averaged into a région
(``aggregation = 'none'``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.indicators import INCIDENCE_RATE_7D, POSITIVITY_RATE_7D
from features.sources.checks import (
    drop_duplicates,
    name_key,
    original_name,
    report_codes,
    report_rows,
    to_date,
    to_number,
    window_end,
)
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import MAX_PROBLEMS_PER_CHECK, Collector, header_text, read_table

PUBLISHER = "Santé publique France, SI-DEP"
LICENCE = "Licence Ouverte 2.0"


class SpfIncidencePositivity(Source):
    name = "spf_incidence_positivity"
    title = "7-day incidence rate and test positivity by département"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = "https://www.data.gouv.fr/fr/datasets/r/d1c1846c-f2d1-43cb-ad84-b46c40d1bec8"
    file_patterns = ("fr_spf_incidence_positivity_*.csv", "sp-pos-7j-dep*.csv")
    indicators = (INCIDENCE_RATE_7D, POSITIVITY_RATE_7D)
    required = False

    EXTRACT = {
        "territory": ("dep_code", "dep"),
        "name": ("dep_name",),
        "start": ("start_7d",),
        "date": ("end_7d",),
        "incidence": ("incidence_7d_per_100k",),
        "positivity": ("positivity_7d_pct",),
    }
    OFFICIAL = {
        "territory": ("dep",),
        "week": ("semaine_glissante",),
        "positives": ("p",),
        "tests": ("t",),
        "pop": ("pop",),
    }

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        official = "semaine_glissante" in header_text(path)
        if official:
            frame = read_table(path, self.OFFICIAL, check, optional={"age": ("cl_age90",)})
            if "age" in frame:
                frame = frame[frame["age"].fillna("").str.strip().eq("0")].copy()
            frame["date"] = window_end(frame, "week", check, ctx.today)
            positives = to_number(frame, "positives", check, count=True)
            tests = to_number(frame, "tests", check, count=True)
            pop = to_number(frame, "pop", check, minimum=1)
            frame["incidence"] = 1e5 * positives / pop
            with np.errstate(invalid="ignore", divide="ignore"):
                frame["positivity"] = np.where(tests > 0, 100.0 * positives / tests, np.nan)
            more = (positives > tests) & tests.notna()
            report_rows(check, frame, more, "positives", "positives <= tests ('T')")
        else:
            frame = read_table(path, self.EXTRACT, check)
            frame["date"] = to_date(frame, "date", check, ctx.today)
            start = to_date(frame, "start", check, ctx.today)
            wrong = (frame["date"] - start).ne(pd.Timedelta(days=6)) & start.notna() \
                & frame["date"].notna()
            report_rows(check, frame, wrong, "start", "the first day of the 7-day window ending "
                    "on end_7d (end_7d - 6 days)")
            frame["incidence"] = to_number(frame, "incidence", check, minimum=0,
                                           maximum=100_000)
            frame["positivity"] = to_number(frame, "positivity", check, minimum=0,
                                            maximum=100)
            self._check_names(frame, check, ctx)
        frame["territory"] = frame["territory"].fillna("").str.strip()
        self._check_departements(frame, check, ctx)
        check.raise_if_any()
        frame = drop_duplicates(frame, ["territory", "date"], ["incidence", "positivity"], check)
        check.raise_if_any()
        tidy = to_tidy(frame, {"incidence": INCIDENCE_RATE_7D.name,
                               "positivity": POSITIVITY_RATE_7D.name})
        return SourceResult(self.name, tidy, list(self.indicators), warnings=check.warnings)

    @staticmethod
    def _check_departements(frame: pd.DataFrame, check: Collector, ctx: ParseContext) -> None:
        table = ctx.territories.table
        deps = set(table.index[table["level"] == "department"])
        codes = frame["territory"]
        report_codes(check, codes, ~codes.isin(list(deps)), original_name(frame, "territory"),
                     "a département code ('01'…'95', '2A', '2B', '971'…'976')",
                     lambda code: ctx.territories.describe_unknown(code) if code
                     else "an empty cell")

    @staticmethod
    def _check_names(frame: pd.DataFrame, check: Collector, ctx: ParseContext) -> None:
        """A département name that is not its code's (a shifted or mistyped row) is refused."""
        names = ctx.territories.table["name"]
        pairs = frame[["territory", "name"]].drop_duplicates()
        label = original_name(frame, "name")
        shown = 0
        for idx, code, name in pairs.itertuples():
            if code not in names.index or shown >= MAX_PROBLEMS_PER_CHECK:
                continue
            if name_key(names.at[code]) != name_key(name if isinstance(name, str) else ""):
                check.add(f"the name of département {code} ({names.at[code]!r})",
                          repr(name), line=int(idx) + 2, column=label)
                shown += 1


SOURCE = SpfIncidencePositivity()
