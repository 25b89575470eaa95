"""Santé publique France: 7-day incidence per 100,000 inhabitants of the 22 métropoles, all ages
and 65 and over (SI-DEP, "sg-metro-opendata"), served under the métropoles' SIREN codes.

Extract: ``fr_spf_incidence_metropoles_2020Q4.csv``, columns ``metropole`` (the name),
``age_class`` (``all`` or ``65+``), ``date`` (last day of the 7-day window: Dijon Métropole's
daily changes match Côte-d'Or's, dated by ``end_7d``, at lag 0 with r = 0.93 and at no other lag
above 0.52) and ``incidence_7d_per_100k``. Names are matched to SIREN codes with
:data:`METROPOLE_SIREN`, an explicit table (accents, case, apostrophes and hyphens do not
matter; anything else does): a name missing from it is an error naming the file, line, column
and name.

Official publication (data.gouv.fr, *Taux d'incidence de l'épidémie de COVID-19 par
métropole*): ``;``-separated, BOM allowed, columns ``epci2020`` (SIREN), ``semaine_glissante``
(``2020-10-06-2020-10-12``: dated by its last day), ``clage_65`` (``0`` all ages, ``65``) and
``ti``. SPF kept the Métropole européenne de Lille's pre-2020 SIREN ``245900410``: it is read as
the current ``200093201``.

The rates are SPF's published values (``aggregation = 'none'``): never averaged into a parent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from features.indicators import INCIDENCE_RATE_7D
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

PUBLISHER = "Santé publique France, SI-DEP (sg-metro)"
LICENCE = "Licence Ouverte 2.0"

#: The 22 métropoles as SPF names them → SIREN (INSEE COG 2022, ``fr_epci_communes.csv``).
METROPOLE_SIREN: dict[str, str] = {
    "Bordeaux Métropole": "243300316",
    "Brest Métropole": "242900314",
    "Clermont Auvergne Métropole": "246300701",
    "Dijon Métropole": "242100410",
    "Eurométropole de Strasbourg": "246700488",
    "Grenoble-Alpes-Métropole": "200040715",
    "Metz Métropole": "200039865",
    "Montpellier Méditerranée Métropole": "243400017",
    "Métropole Européenne de Lille": "200093201",
    "Métropole Nice Côte d'Azur": "200030195",
    "Métropole Rouen Normandie": "200023414",
    "Métropole Toulon-Provence-Méditerranée": "248300543",
    "Métropole d'Aix-Marseille-Provence": "200054807",
    "Métropole de Lyon": "200046977",
    "Métropole du Grand Nancy": "245400676",
    "Métropole du Grand Paris": "200054781",
    "Nantes Métropole": "244400404",
    "Orléans Métropole": "244500468",
    "Rennes Métropole": "243500139",
    "Saint-Etienne Métropole": "244200770",
    "Toulouse Métropole": "243100518",
    "Tours Métropole Val de Loire": "243700754",
}
#: SIREN codes SPF used that INSEE has since replaced (old → current).
RENUMBERED: dict[str, str] = {"245900410": "200093201"}  # Lille, renumbered in 2020

#: ``age_class`` (extract) or ``clage_65`` (official) → indicator.
AGE_CLASSES = {"all": "incidence_rate_7d", "0": "incidence_rate_7d",
               "65+": "incidence_rate_7d_65_plus", "65": "incidence_rate_7d_65_plus"}

INCIDENCE_RATE_7D_65_PLUS = dataclasses.replace(
    INCIDENCE_RATE_7D, name="incidence_rate_7d_65_plus",
    description="positive persons aged 65 or more over the 7 days ending that day per 100,000 "
                "inhabitants aged 65 or more (published by SPF where it publishes it)",
    source="Santé publique France, SI-DEP (published)")


_BY_KEY = {name_key(name): siren for name, siren in METROPOLE_SIREN.items()}


class SpfIncidenceMetropoles(Source):
    name = "spf_incidence_metropoles"
    title = "7-day incidence rate of the 22 métropoles, all ages and 65+"
    publisher = PUBLISHER
    licence = LICENCE
    official_url = "https://www.data.gouv.fr/fr/datasets/r/61533034-0f2f-4b16-9a6d-28ffabb33a02"
    file_patterns = ("fr_spf_incidence_metropoles_*.csv", "sg-metro-opendata*.csv")
    indicators = (INCIDENCE_RATE_7D, INCIDENCE_RATE_7D_65_PLUS)
    required = False

    EXTRACT = {
        "name": ("metropole", "nom_metropole"),
        "age": ("age_class",),
        "date": ("date", "jour"),
        "value": ("incidence_7d_per_100k",),
    }
    OFFICIAL = {
        "code": ("epci2020", "epci"),
        "week": ("semaine_glissante",),
        "age": ("clage_65",),
        "value": ("ti",),
    }

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        official = "semaine_glissante" in header_text(path)
        frame = read_table(path, self.OFFICIAL if official else self.EXTRACT, check)
        if official:
            frame["territory"] = self._codes(frame, check)
            frame["date"] = window_end(frame, "week", check, ctx.today)
        else:
            frame["territory"] = self._match_names(frame, check)
            frame["date"] = to_date(frame, "date", check, ctx.today)
        frame["age"] = frame["age"].str.strip()
        bad_age = ~frame["age"].isin(list(AGE_CLASSES))
        report_rows(check, frame, bad_age, "age", "an age class ('all' or '65+'; official "
                "clage_65 '0' or '65')")
        frame["value"] = to_number(frame, "value", check, minimum=0, maximum=100_000)
        self._check_registry(frame, check, ctx)
        check.raise_if_any()
        frame["indicator"] = frame["age"].map(AGE_CLASSES)
        frame.attrs["original_columns"].update({
            "territory": original_name(frame, "code" if official else "name"),
            "indicator": original_name(frame, "age")})
        frame = drop_duplicates(frame, ["territory", "date", "indicator"], ["value"], check)
        check.raise_if_any()
        parts = [to_tidy(rows, {"value": indicator})
                 for indicator, rows in frame.groupby("indicator", sort=True)]
        tidy = pd.concat(parts, ignore_index=True)
        return SourceResult(self.name, tidy, list(self.indicators), warnings=check.warnings)

    @staticmethod
    def _match_names(frame: pd.DataFrame, check: Collector) -> pd.Series:
        names = frame["name"].fillna("")
        codes = names.map(lambda n: _BY_KEY.get(name_key(n)))
        unmatched = codes.isna()
        label = original_name(frame, "name")
        seen: set[str] = set()
        for idx in unmatched[unmatched].index:
            name = names.at[idx]
            if name in seen:
                continue
            seen.add(name)
            if len(seen) > MAX_PROBLEMS_PER_CHECK:
                break
            check.add("a métropole name of the table METROPOLE_SIREN "
                      "(features/sources/spf_incidence_metropoles.py)",
                      "an empty cell" if not name else repr(name), line=int(idx) + 2,
                      column=label)
        return codes

    @staticmethod
    def _codes(frame: pd.DataFrame, check: Collector) -> pd.Series:
        codes = frame["code"].fillna("").str.strip()
        renamed = codes.isin(list(RENUMBERED))
        if renamed.any():
            check.warnings.append(
                f"{check.path.name}: SIREN {', '.join(sorted(set(codes[renamed])))} read as "
                f"{', '.join(sorted({RENUMBERED[c] for c in codes[renamed]}))} (renumbered)")
        return codes.replace(RENUMBERED)

    @staticmethod
    def _check_registry(frame: pd.DataFrame, check: Collector, ctx: ParseContext) -> None:
        """Every SIREN must be an EPCI of the registry (built from ``fr_epci_communes.csv``)."""
        table = ctx.territories.table
        epci = set(table.index[table["level"] == "epci"])
        codes = frame["territory"]
        column = original_name(frame, "code" if "code" in frame else "name")
        if not epci:
            check.add("the EPCI level in the territory registry (fr_epci_communes.csv in the "
                      "data folder)", "no EPCI registry", column=column)
            return
        report_codes(check, codes, codes.notna() & ~codes.isin(list(epci)), column,
                     "the SIREN code of an EPCI of the registry",
                     lambda code: repr(code) if code else "an empty cell")


SOURCE = SpfIncidenceMetropoles()
