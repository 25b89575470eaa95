"""EPCI à fiscalité propre (métropoles, communautés urbaines, d'agglomération, de communes) and
their member communes: the ``epci`` level of the territory registry.

Extract: ``fr_epci_communes.csv`` (INSEE COG 2022 via ``@etalab/decoupage-administratif``
2.3.1, ``data/epci.json``), one row per member commune: ``epci_code`` (SIREN), ``epci_name``,
``epci_type`` (``CC``, ``CA``, ``CU``, ``METRO``, ``MET69``), ``epci_population`` (the EPCI's
total population), ``commune_code``, ``commune_name``. The official publication accepted too is
the DGCL's *Liste et composition des EPCI à fiscalité propre* (``epcicom<year>.csv``, saved as
UTF-8, ``;``-separated, BOM allowed): ``siren``, ``raison_sociale``, ``nature_juridique``,
``total_pop_tot``, ``insee`` (member commune), ``nom_membre``, ``dep_com``, ``ptot_<year>``.

Commune codes and populations are checked against ``fr_communes_population.csv`` (every current
commune, INSEE COG 2022) when it is in the data folder.

**Parent rule.** An EPCI is not nested in the département → région → France tree (Métropole du
Grand Paris spans four départements, 90 EPCIs straddle two or more). Its ``parent`` is the
département holding the largest share of its member communes' population (commune legal
population from ``fr_communes_population.csv``, else the file's ``ptot_<year>``; ties: more
member communes, then the smaller code). The parent is for navigation and display only: the
cube never aggregates EPCIs into départements, régions or France (sums start from départements,
:data:`features.cube.BASE_LEVELS`). The membership commune → EPCI is the registry's second tree
(``group``, :mod:`features.territories`): a commune's values are summed into its EPCI straight
from the communes. It is kept as the vintage table ``epci_communes``, and the EPCI list with
its parent share as ``epci``. An EPCI's population is the sum of its members' legal populations
when ``fr_communes_population.csv`` is read (the file's own total kept as ``population_total``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.sources.checks import drop_duplicates, original_name, report_rows, to_number
from features.sources.contract import Source
from features.sources.reading import MAX_PROBLEMS_PER_CHECK, Collector, read_table

LICENCE = "Licence Ouverte 2.0"
SIREN_PATTERN = r"^\d{9}$"
COMMUNE_PATTERN = r"^(?:\d{5}|2[AB]\d{3})$"
#: Legal forms of an EPCI à fiscalité propre (DGCL ``nature_juridique``).
EPCI_TYPES = {
    "CC": "communauté de communes",
    "CA": "communauté d'agglomération",
    "CU": "communauté urbaine",
    "METRO": "métropole",
    "MET69": "Métropole de Lyon (collectivité à statut particulier)",
}


def siren_is_valid(code: str) -> bool:
    """Luhn checksum of a 9-digit SIREN (every SIREN INSEE assigns passes it)."""
    total = 0
    for i, ch in enumerate(reversed(code)):
        digit = int(ch) * (2 if i % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def commune_departement(code: str) -> str:
    """Département of a commune from its INSEE code (``'97411'`` → ``'974'``, ``'2A004'`` →
    ``'2A'``): INSEE commune codes begin with their département's code."""
    return code[:3] if code.startswith("97") else code[:2]


class CommunesPopulationSource(Source):
    """Every current commune with its département and legal population (reference only)."""

    name = "insee_communes_all"
    title = "Every commune with its legal population"
    publisher = "INSEE (Code officiel géographique), via Etalab"
    licence = LICENCE
    official_url = ("https://unpkg.com/@etalab/decoupage-administratif@2.3.1/data/"
                    "communes.json")
    file_patterns = ("fr_communes_population.csv", "communes_population*.csv")
    required = False

    COLUMNS = {
        "commune_code": ("code", "commune_code", "code_commune", "com"),
        "commune_name": ("name", "nom", "commune_name", "libelle"),
        "dep_code": ("departement", "dep_code", "dep"),
        "population": ("population", "population_legale", "ptot"),
    }

    def read(self, path: Path, departements: pd.DataFrame) -> pd.DataFrame:
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check)
        bad = ~frame["commune_code"].fillna("").str.match(COMMUNE_PATTERN)
        report_rows(check, frame, bad, "commune_code", "a 5-character INSEE commune code")
        unknown = ~frame["dep_code"].isin(departements["dep_code"])
        report_rows(check, frame, unknown, "dep_code", "a known département code")
        # Six uninhabited communes (TAAF, Clipperton) have no population: kept, counted as 0.
        frame["population"] = to_number(frame, "population", check, count=True,
                                        allow_missing=True)
        frame = drop_duplicates(frame, ["commune_code"], ["commune_name", "dep_code"], check)
        check.raise_if_any()
        return frame


class EpciSource(Source):
    name = "insee_epci"
    title = "EPCI à fiscalité propre and their member communes"
    publisher = "INSEE (Code officiel géographique) and DGCL, via Etalab"
    licence = LICENCE
    official_url = ("https://www.collectivites-locales.gouv.fr/institutions/"
                    "liste-et-composition-des-epci-fiscalite-propre")
    file_patterns = ("fr_epci_communes.csv", "epcicom*.csv")
    required = False

    COLUMNS = {
        "epci_code": ("epci_code", "siren", "siren_epci", "epci"),
        "epci_name": ("epci_name", "raison_sociale", "nom_epci", "libepci"),
        "epci_type": ("epci_type", "nature_juridique", "nature_epci"),
        "epci_population": ("epci_population", "total_pop_tot", "population_epci"),
        "commune_code": ("commune_code", "insee", "codgeo", "code_commune"),
    }
    OPTIONAL = {
        "commune_name": ("commune_name", "nom_membre", "libgeo", "nom_commune"),
        "commune_dep": ("dep_com", "commune_dep"),
        "commune_population": tuple(f"ptot_{year}" for year in range(2030, 2014, -1)),
    }

    def read(self, path: Path, departements: pd.DataFrame,
             communes: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """Validate the file and derive each EPCI's parent département.

        Returns ``(epcis, members, warnings)``: ``epcis`` has ``code, name, type, population,
        population_total, parent, parent_share, n_communes, departements``; ``members`` has
        ``epci_code, commune_code, commune_name, dep_code, commune_population``.
        ``population``: the sum of the member communes' legal populations when ``communes``
        (``fr_communes_population.csv``) is given, the base of every commune, département and
        région population, so that an EPCI's per-100,000 rate and its communes' add up; else
        the file's own total. ``population_total``: the file's total as stated (INSEE's
        *population totale*, which also counts the persons counted apart, about 1 % more).
        """
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check, optional=self.OPTIONAL)
        frame["epci_code"] = frame["epci_code"].str.strip()
        frame["commune_code"] = frame["commune_code"].str.strip()
        frame["epci_type"] = frame["epci_type"].str.strip()

        code = frame["epci_code"].fillna("")
        # One row per member commune, ~30 per EPCI: check each distinct code once.
        distinct = pd.Series(pd.unique(code))
        well_formed = distinct.str.match(SIREN_PATTERN)
        bad_code = ~code.isin(distinct[well_formed])
        report_rows(check, frame, bad_code, "epci_code", "a 9-digit SIREN code")
        bad_luhn = code.isin([c for c in distinct[well_formed] if not siren_is_valid(c)])
        report_rows(check, frame, bad_luhn, "epci_code",
                     "a SIREN code with a valid check digit (Luhn)")
        empty_name = frame["epci_name"].fillna("").str.strip().eq("")
        report_rows(check, frame, empty_name, "epci_name", "an EPCI name",
                     found=lambda v: "an empty cell")
        bad_type = ~frame["epci_type"].isin(list(EPCI_TYPES))
        report_rows(check, frame, bad_type, "epci_type",
                     f"an EPCI type ({', '.join(EPCI_TYPES)})")
        frame["epci_population"] = to_number(frame, "epci_population", check, count=True)

        commune = frame["commune_code"].fillna("")
        bad_commune = ~commune.str.match(COMMUNE_PATTERN)
        report_rows(check, frame, bad_commune, "commune_code",
                     "a 5-character INSEE commune code")
        if communes is not None:
            unknown = ~bad_commune & ~commune.isin(communes["commune_code"])
            report_rows(check, frame, unknown, "commune_code",
                         "a current INSEE commune code (fr_communes_population.csv)")
        if "commune_population" in frame:
            frame["commune_population"] = to_number(frame, "commune_population", check,
                                                    count=True, allow_missing=True)

        # One EPCI = one name, type and population; one commune = one EPCI.
        _check_consistent(frame, "epci_code", ["epci_name", "epci_type", "epci_population"],
                          check)
        _check_consistent(frame, "commune_code", ["epci_code"], check,
                          expected="each commune in one EPCI only")
        frame = drop_duplicates(frame, ["epci_code", "commune_code"], [], check)
        check.raise_if_any()

        members = self._members(frame, communes, departements, check)
        check.raise_if_any()
        epcis = frame.drop_duplicates("epci_code").set_index("epci_code")
        parents = epci_parents(members)
        stated = epcis["epci_population"].astype(float)
        population = stated
        if communes is not None:
            population = members.groupby("epci_code")["commune_population"].sum(
                min_count=1).reindex(epcis.index).fillna(stated)
        out = pd.DataFrame({
            "code": epcis.index,
            "name": epcis["epci_name"].str.strip().to_numpy(),
            "type": epcis["epci_type"].to_numpy(),
            "population": population.astype(float).to_numpy(),
            "population_total": stated.to_numpy(),
        }).merge(parents, left_on="code", right_index=True, how="left")
        return out.reset_index(drop=True), members, check.warnings

    @staticmethod
    def _members(frame: pd.DataFrame, communes: pd.DataFrame | None,
                 departements: pd.DataFrame, check: Collector) -> pd.DataFrame:
        """Member communes with the département and population the parent rule weighs."""
        members = pd.DataFrame({
            "epci_code": frame["epci_code"].to_numpy(),
            "commune_code": frame["commune_code"].to_numpy(),
            "commune_name": (frame["commune_name"] if "commune_name" in frame
                             else pd.Series("", index=frame.index)).fillna("").to_numpy(),
        }, index=frame.index)
        if communes is not None:
            ref = communes.set_index("commune_code")
            members["dep_code"] = members["commune_code"].map(ref["dep_code"])
            members["commune_population"] = members["commune_code"].map(ref["population"])
            no_name = members["commune_name"].eq("")
            members.loc[no_name, "commune_name"] = members.loc[no_name, "commune_code"].map(
                ref["commune_name"])
        else:
            dep = (frame["commune_dep"] if "commune_dep" in frame
                   else pd.Series(np.nan, index=frame.index))
            members["dep_code"] = dep.fillna(frame["commune_code"].map(commune_departement))
            if "commune_population" in frame:
                members["commune_population"] = frame["commune_population"]
            else:
                members["commune_population"] = np.nan
                check.warnings.append(
                    f"{check.path.name}: no commune populations (fr_communes_population.csv "
                    "absent): each EPCI's parent is the département holding most of its "
                    "member communes")
        unknown = ~members["dep_code"].isin(departements["dep_code"])
        report_rows(check, frame, unknown, "commune_code",
                     "a commune of a known département", found=lambda v: repr(v))
        return members.reset_index(drop=True)


def epci_parents(members: pd.DataFrame) -> pd.DataFrame:
    """Parent département of each EPCI: the one holding most of its members' population.

    Ties (or no populations at all) go to the département with more member communes, then to
    the smaller code. Returns a frame indexed by EPCI code with ``parent``, ``parent_share``
    (share of the members' population in it; NaN without populations), ``n_communes`` and
    ``departements`` (every département met, ``;``-separated).
    """
    m = members.assign(pop=members["commune_population"].fillna(0.0).astype(float))
    by_dep = m.groupby(["epci_code", "dep_code"], sort=True).agg(
        pop=("pop", "sum"), n=("commune_code", "size")).reset_index()
    ranked = by_dep.sort_values(["epci_code", "pop", "n", "dep_code"],
                                ascending=[True, False, False, True], kind="stable")
    best = ranked.drop_duplicates("epci_code").set_index("epci_code")
    total = by_dep.groupby("epci_code")["pop"].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        share = best["pop"] / total.reindex(best.index)
    deps = by_dep.groupby("epci_code")["dep_code"].agg(lambda s: ";".join(sorted(s)))
    return pd.DataFrame({
        "parent": best["dep_code"],
        "parent_share": share.where(total.reindex(best.index) > 0),
        "n_communes": by_dep.groupby("epci_code")["n"].sum().reindex(best.index),
        "departements": deps.reindex(best.index),
    })


def _check_consistent(frame: pd.DataFrame, key: str, values: list[str], check: Collector,
                      expected: str | None = None) -> None:
    """Report every key whose rows disagree on ``values`` (naming the lines and the values)."""
    varying = frame.groupby(key, sort=False)[values].nunique(dropna=False).gt(1).any(axis=1)
    keys = list(varying[varying].index)
    label = original_name(frame, key)
    for value in keys[:MAX_PROBLEMS_PER_CHECK]:
        rows = frame[frame[key] == value]
        first = rows.drop_duplicates(values)
        shown = "; ".join(
            f"line {int(i) + 2}: " + ", ".join(
                f"{original_name(frame, c)}={_text(first.at[i, c])}" for c in values)
            for i in first.index[:3])
        check.add(expected or f"one {', '.join(original_name(frame, c) for c in values)} "
                  f"per {label}", f"{label}={value} with conflicting rows ({shown})",
                  line=int(first.index[1]) + 2, column=original_name(frame, values[0]))
    if len(keys) > MAX_PROBLEMS_PER_CHECK:
        check.add(expected or f"consistent rows per {label}",
                  f"{len(keys) - MAX_PROBLEMS_PER_CHECK} more conflicting {label} values")


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(str(int(value)))
    return repr(value)
