"""Santé publique France SurSaUD: Covid-19 emergency-department visits (OSCOUR) and SOS Médecins
acts, weekly, by région and for France.

The extracts give SPF's weekly *rates* (per 100,000 emergency visits, or per 100,000 SOS
Médecins acts) by age class. The official daily files (``sursaud-corona-quot-reg-*.csv``,
``sursaud-corona-quot-fra-*.csv``: ``;``-separated, counts per day and age class ``0`` = all
ages) are read too: their counts are summed over each ISO week and turned into the same rates,
and the weekly counts themselves are kept (``er_visits_covid``, ``sos_medecins_covid``).

Weeks are ISO weeks (Monday–Sunday). The cube's weekly dataset labels weeks by the Saturday
that ends a Sunday–Saturday week; an ISO week is labelled by its own Saturday (``week_start +
5 days``), so the two calendars share six days out of seven. Rates are not aggregated across
territories (they need the denominators, which the extracts lack): régions and France are the
published values.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.indicators import IndicatorSpec
from features.sources.checks import (
    check_territories,
    dated_values,
    drop_duplicates,
    to_date,
    to_number,
)
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import Collector, read_table
from features.territories import FRANCE, region_code

PUBLISHER = "Santé publique France, SurSaUD (OSCOUR, SOS Médecins)"
LICENCE = "Licence Ouverte 2.0"
OFFICIAL_URL = "https://www.data.gouv.fr/fr/datasets/donnees-des-urgences-hospitalieres-et-de-sos-medecins-relatives-a-lepidemie-de-covid-19/"

AGE_SUFFIX = {
    "Tous âges": "",
    "00-04 ans": "_age_00_04",
    "05-14 ans": "_age_05_14",
    "15-64 ans": "_age_15_64",
    "65 ans ou plus": "_age_65_plus",
}
RATES = {
    "er_visits_covid_rate": "emergency-department visits for suspected Covid-19",
    "hosp_after_er_covid_rate": "hospitalisations after an emergency visit for suspected Covid-19",
    "sos_medecins_covid_rate": "SOS Médecins acts for suspected Covid-19",
}
RATE_UNITS = {
    "er_visits_covid_rate": "per 100,000 emergency visits",
    "hosp_after_er_covid_rate": "per 100,000 emergency visits",
    "sos_medecins_covid_rate": "per 100,000 SOS Médecins acts",
}


def _indicator_specs() -> tuple[IndicatorSpec, ...]:
    specs = []
    for rate, text in RATES.items():
        for age, suffix in AGE_SUFFIX.items():
            specs.append(IndicatorSpec(f"{rate}{suffix}", "weekly", RATE_UNITS[rate],
                                       f"{text}, {age}", PUBLISHER, LICENCE, "none"))
    specs.append(IndicatorSpec("er_visits_covid", "weekly", "visits/week",
                               "emergency visits for suspected Covid-19 (official daily files "
                               "only)", PUBLISHER, LICENCE, "sum", count=True))
    specs.append(IndicatorSpec("sos_medecins_covid", "weekly", "acts/week",
                               "SOS Médecins acts for suspected Covid-19 (official daily files "
                               "only)", PUBLISHER, LICENCE, "sum", count=True))
    return tuple(specs)


INDICATORS = _indicator_specs()


class _SursaudBase(Source):
    publisher = PUBLISHER
    licence = LICENCE
    official_url = OFFICIAL_URL
    indicators = INDICATORS
    required = False
    national = False

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        head = path.read_bytes()[:600].decode("utf-8", errors="replace").lower()
        if "date_de_passage" in head:
            return self._parse_official_daily(path, ctx, check)
        columns = {
            "week_start": ("week_start",),
            "age_class": ("age_class",),
            **{rate: (rate,) for rate in RATES},
        }
        if not self.national:
            columns["region"] = ("reg_code",)
        frame = read_table(path, columns, check, numeric=RATES)
        self._assign_territory(frame, "reg_code", check, ctx)
        unknown_age = ~frame["age_class"].isin(AGE_SUFFIX)
        for idx in frame.index[unknown_age][:10]:
            check.add(f"an age class among {', '.join(AGE_SUFFIX)}",
                      repr(frame.at[idx, "age_class"]), line=idx + 2, column="age_class")
        frame["week_start"] = to_date(frame, "week_start", check, ctx.today)
        bad_weekday = frame["week_start"].notna() & frame["week_start"].dt.dayofweek.ne(0)
        for idx in frame.index[bad_weekday][:10]:
            check.add("a Monday (start of an ISO week)",
                      f"{frame.at[idx, 'week_start'].date()} "
                      f"({frame.at[idx, 'week_start'].day_name()})", line=idx + 2,
                      column="week_start")
        for rate in RATES:
            frame[rate] = to_number(frame, rate, check, allow_missing=True, minimum=0,
                                    maximum=100_000)
        check.raise_if_any()
        frame = drop_duplicates(frame, ["territory", "week_start", "age_class"], list(RATES),
                                check)
        check.raise_if_any()
        frame["date"] = frame["week_start"] + pd.Timedelta(days=5)
        parts = []
        for age, suffix in AGE_SUFFIX.items():
            sub = frame[frame["age_class"] == age]
            parts.append(to_tidy(sub, {rate: f"{rate}{suffix}" for rate in RATES}))
        tidy = pd.concat(parts, ignore_index=True)
        return SourceResult(self.name, tidy, list(INDICATORS), warnings=check.warnings)

    def _assign_territory(self, frame: pd.DataFrame, region_column: str, check: Collector,
                          ctx: ParseContext) -> None:
        """``territory``: France, or the région of ``region_column`` (validated), in place."""
        if self.national:
            frame["territory"] = FRANCE
            return
        frame["territory"] = frame["region"].str.strip().map(region_code)
        frame.attrs["original_columns"]["territory"] = region_column
        check_territories(frame, "territory", check, ctx.territories)

    def _parse_official_daily(self, path: Path, ctx: ParseContext, check: Collector
                              ) -> SourceResult:
        counts = ("nbre_pass_corona", "nbre_pass_tot", "nbre_hospit_corona", "nbre_acte_corona",
                  "nbre_acte_tot")
        columns = {
            "date": ("date_de_passage",),
            "age_class": ("sursaud_cl_age_corona",),
            **{c: (c,) for c in counts},
        }
        if not self.national:
            columns["region"] = ("reg",)
        frame = read_table(path, columns, check)
        frame = frame[frame["age_class"].str.strip().eq("0")].copy()
        self._assign_territory(frame, "reg", check, ctx)
        frame = dated_values(frame, counts, check, ctx.today, count=True, allow_missing=True)
        week_start = frame["date"] - pd.to_timedelta(frame["date"].dt.dayofweek, unit="D")
        weekly = frame.assign(date=week_start + pd.Timedelta(days=5)).groupby(
            ["territory", "date"], as_index=False)[list(counts)].sum(min_count=1)
        weekly["er_visits_covid_rate"] = 1e5 * weekly["nbre_pass_corona"] / weekly["nbre_pass_tot"]
        weekly["hosp_after_er_covid_rate"] = (
            1e5 * weekly["nbre_hospit_corona"] / weekly["nbre_pass_tot"])
        weekly["sos_medecins_covid_rate"] = (
            1e5 * weekly["nbre_acte_corona"] / weekly["nbre_acte_tot"])
        tidy = to_tidy(weekly, {
            **{rate: rate for rate in RATES},
            "nbre_pass_corona": "er_visits_covid",
            "nbre_acte_corona": "sos_medecins_covid",
        })
        return SourceResult(self.name, tidy, list(INDICATORS), warnings=check.warnings)


class SursaudRegion(_SursaudBase):
    name = "sursaud_region"
    title = "Weekly emergency and SOS Médecins Covid-19 activity by région"
    file_patterns = ("fr_sursaud_er_sos_region_weekly.csv", "sursaud-corona-quot-reg-*.csv")


class SursaudFrance(_SursaudBase):
    name = "sursaud_france"
    title = "Weekly emergency and SOS Médecins Covid-19 activity, France"
    file_patterns = ("fr_sursaud_er_sos_france_weekly.csv", "sursaud-corona-quot-fra-*.csv")
    national = True


SOURCES = (SursaudRegion(), SursaudFrance())
