"""Santé publique France, VAC-SI: cumulative persons with at least a first vaccine dose, by
département ("vacsi-dep").

* ``fr_spf_vacsi_dep_dose1_cumul_daily.csv`` (``dep,jour,n_dose1_cumsum``): all ages, all
  vaccines, cumulated upstream from SPF's daily first doses (re-published by CovidTracker).
* The official publication on data.gouv.fr (``vacsi-dep-*.csv``, ``;``-separated): ``dep;jour;
  n_dose1;n_complet;…;n_cum_dose1;…``; the per-vaccine file (``vacsi-v-dep``) adds a ``vaccin``
  column where ``0`` means all vaccines, and the per-age file a ``clage_vacsi`` column where ``0``
  means all ages: only those total rows are kept.

``vaccinated_dose1`` is a stock (persons vaccinated so far): summed over départements into
régions and France on the days every reporting département reports, never summed over a week
(the weekly cube takes the Saturday's value). The cube derives ``vaccination_coverage_dose1``.
"""

from __future__ import annotations

from pathlib import Path

from features.indicators import IndicatorSpec
from features.sources.checks import (
    check_territories,
    dated_values,
    original_name,
    to_number,
)
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import Collector, read_table

PUBLISHER = "Santé publique France, VAC-SI"
LICENCE = "Licence Ouverte 2.0"

INDICATORS = (
    IndicatorSpec("vaccinated_dose1", "daily", "persons",
                  "cumulative persons with at least a first Covid-19 vaccine dose, all ages, by "
                  "département of residence", PUBLISHER, LICENCE, "sum", count=True, stock=True),
)

#: Columns that select one class of a breakdown; the total rows carry this value.
TOTAL_ROWS = {"vaccine": ("vaccin", "0"), "age": ("clage_vacsi", "0")}


class SpfVacsi(Source):
    name = "spf_vacsi"
    title = "Cumulative persons with a first vaccine dose per département (VAC-SI)"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = "https://www.data.gouv.fr/fr/datasets/r/4f39ec91-80d7-4602-befb-4b522804c0af"
    file_patterns = ("fr_spf_vacsi_dep_dose1_cumul_daily.csv", "vacsi-dep-*.csv",
                     "vacsi-v-dep-*.csv", "vacsi-a-dep-*.csv")
    indicators = INDICATORS
    required = False

    COLUMNS = {
        "territory": ("dep", "dep_code"),
        "date": ("jour", "date"),
        "dose1": ("n_dose1_cumsum", "n_cum_dose1"),
    }
    OPTIONAL = {key: (column,) for key, (column, _) in TOTAL_ROWS.items()}

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check, optional=self.OPTIONAL, numeric=("dose1",))
        for key, (_, total) in TOTAL_ROWS.items():
            if key in frame.columns:
                classes = to_number(frame, key, check)
                check.raise_if_any()
                frame = frame[classes.eq(float(total))].copy()
                if frame.empty:
                    check.fail(f"rows with {original_name(frame, key)} = {total} (the total)",
                               "none")
        check_territories(frame, "territory", check, ctx.territories)
        frame = dated_values(frame, ["dose1"], check, ctx.today, count=True, allow_missing=True)
        ordered = frame.sort_values(["territory", "date"])
        falls = ordered.groupby("territory")["dose1"].diff().lt(0)
        if falls.any():
            check.warnings.append(
                f"{path.name}: the cumulative count falls on {int(falls.sum())} day(s) "
                f"(revisions; kept as published), e.g. {original_name(frame, 'territory')}="
                f"{ordered.loc[falls, 'territory'].iloc[0]} on "
                f"{ordered.loc[falls, 'date'].iloc[0].date().isoformat()}")
        tidy = to_tidy(frame, {"dose1": "vaccinated_dose1"})
        return SourceResult(self.name, tidy, list(self.indicators), warnings=check.warnings)


SOURCE = SpfVacsi()
