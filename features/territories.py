"""French territories: codes, names, populations and the two trees they form.

Codes are strings, never numbers (``'01'``, ``'2A'``, ``'971'``). Régions use ``'R'`` followed by
their INSEE code (``'R84'``) because INSEE région and département codes overlap (``'01'`` is both
Guadeloupe the région and Ain the département). France is ``'FR'``. Communes are 5-character
INSEE codes. Collectivités d'outre-mer (``'975'``, ``'977'``, ``'978'``…) hang directly under
France. EPCIs (métropoles, communautés…) are 9-digit SIREN codes (``'200046977'`` Métropole de
Lyon).

**Two trees.** A commune has two parents, in two trees that cross:

* the **administrative tree**, ``parent``: commune → département (or collectivité) → région →
  France. It is the only chain :func:`chain_to_root` walks, the one the hospital data, the
  région and France totals and the risk levels follow;
* the **groupement**, ``group``: commune → its EPCI (``''`` for the few communes in none: Île
  d'Yeu, Ouessant, the collectivités'). An EPCI is not inside one département (90 span two or
  more; the Métropole du Grand Paris six), so its own ``parent`` (the département holding most of
  its member communes' population, :mod:`features.sources.insee_epci`) is for navigation and
  display only: nothing is ever summed from an EPCI into a département, région or France.

A commune count is therefore summed twice, each time from the communes themselves: into its
EPCI (Σ its member communes) and into its département (Σ its communes), never département from
EPCI nor EPCI from département (:mod:`features.cube.totals`, docs/CUBE_CONTRACT.md).

Counts aggregate by sum, rates by population-weighted mean (INSEE legal population 2020; an
EPCI's population is the sum of its member communes' when the commune populations are known).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.errors import UnknownTerritoryError

FRANCE = "FR"
LEVELS = ("commune", "epci", "department", "collectivity", "region", "country")
#: Level of the groupement tree (commune → EPCI), beside the administrative one.
GROUP_LEVEL = "epci"
#: Levels a commune's value is summed into, each straight from the communes: its département
#: (or collectivité, through ``parent``) and its EPCI (through ``group``).
COMMUNE_TOTAL_LEVELS = ("department", "collectivity", "epci")

#: Codes that existed once and no longer do, with what replaced them. Reported by name when met.
RETIRED_CODES: dict[str, str] = {
    "20": "Corse, split into 2A and 2B in 1976",
    **{
        f"R{code}": f"former région {code}, merged in the 2016 reform"
        for code in ("21", "22", "23", "25", "26", "31", "41", "42", "43", "54", "72", "73",
                     "74", "82", "83", "91")
    },
}

#: ISO 3166-2 codes of metropolitan régions (Google mobility uses them) → Vigie région codes.
ISO_REGION_TO_CODE: dict[str, str] = {
    "FR-ARA": "R84", "FR-BFC": "R27", "FR-BRE": "R53", "FR-CVL": "R24", "FR-COR": "R94",
    "FR-GES": "R44", "FR-HDF": "R32", "FR-NOR": "R28", "FR-NAQ": "R75", "FR-OCC": "R76",
    "FR-PDL": "R52", "FR-PAC": "R93", "FR-IDF": "R11",
}


#: A territory code as a user types it (command line, scenario file): France, a région ``R84``,
#: a département ``69``, ``2A``, ``2B`` or overseas ``971``… (EPCI and communes are not taken).
USER_CODE_PATTERN = r"FR|R[0-9]{2,3}|[0-9]{2}|2A|2B|97[0-9]"
#: Codes below the département, as ``forecast`` and ``backtest`` take them (``--level epci`` or
#: ``commune``): an EPCI's 9-digit SIREN (``243500139``), a commune's INSEE code (``35238``,
#: ``2A004``). Scenarios do not project below the département, so they refuse them.
LOCAL_CODE_PATTERN = r"[0-9]{9}|[0-9]{5}|2[AB][0-9]{3}"
#: Groups a scenario accepts in place of codes (``forecast`` and ``backtest`` take none).
CODE_GROUPS = ("departments", "metro_departments", "regions")
#: How a message names a territory of each level.
LEVEL_WORDS = {"country": "France", "region": "a région", "department": "a département",
               "collectivity": "an overseas collectivité", "epci": "an EPCI",
               "commune": "a commune"}


def territory_code_errors(codes: Iterable[str], where: str = "territories",
                          groups: Iterable[str] = CODE_GROUPS, local: bool = False) -> list[str]:
    """Codes typed outside a file (``--territory``, ``territories=``) that are not territory
    codes, checked before any data is read: one message per code, naming it and what was
    expected. ``groups``: the group names also accepted (none for ``forecast``/``backtest``);
    ``local``: EPCI and commune codes accepted too (``forecast``/``backtest``, whose targets
    may be forecast at those levels). Used by ``scenario run/compare``, ``forecast``,
    ``backtest`` and the scenario schema."""
    groups = tuple(groups)
    accepted = (USER_CODE_PATTERN, LOCAL_CODE_PATTERN) if local else (USER_CODE_PATTERN,)
    pattern = re.compile(rf"^({'|'.join((*accepted, *groups))})$")
    expected = "FR, a région R84, a département 69, 2A, 971"
    if local:
        expected += ", an EPCI 243500139, a commune 35238"
    if groups:
        expected += ", or " + ", ".join(groups)
    return [f"{where}: {c!r} is not a territory code (expected {expected})"
            for c in codes if not pattern.match(str(c))]


def territory_level_errors(codes: Iterable[str], levels: Mapping[str, str],
                           allowed: Iterable[str], where: str = "territories",
                           hints: Mapping[str, str] | None = None,
                           context: str = "") -> list[str]:
    """Well-formed codes that are not in the cube read (``levels``: code → level of its
    territories) or not at one of the ``allowed`` levels: one message per code, naming it,
    what it is and what was expected (followed by ``context``, e.g. ``" (--level region)"``);
    ``hints`` (level → advice) ends the message of a code found at another level, e.g.
    ``{"department": "use --level department"}``."""
    allowed = tuple(allowed)
    expected = " or ".join(LEVEL_WORDS.get(a, a) for a in allowed) + context
    out = []
    for code in codes:
        level = levels.get(code)
        if level is None:
            retired = RETIRED_CODES.get(code)
            out.append(f"{where}: {code!r} is not a territory of the cube"
                       + (f" (retired: {retired})" if retired else "")
                       + f"; expected the code of {expected}")
        elif level not in allowed:
            hint = (hints or {}).get(level)
            out.append(f"{where}: {code!r} is {LEVEL_WORDS.get(level, level)}, not "
                       f"{expected}" + (f": {hint}" if hint else ""))
    return out


def chain_to_root(code: str, parent_of: Mapping[str, str]) -> list[str]:
    """``code``, its parent, its parent's parent… up to the root (France): ``'69'`` →
    ``['69', 'R84', 'FR']``, ``'975'`` → ``['975', 'FR']``.

    ``parent_of``: code → parent code (anything with ``.get``: a dict, or the registry's
    ``table["parent"]``, or one built from a cube's ``territory_parent`` coordinate); the walk
    ends at an empty or absent parent, or at a code already in the chain (a malformed loop never
    hangs). A parent that has no entry itself ends the chain after it.
    """
    chain = [code]
    parent = parent_of.get(code)
    while parent and parent not in chain:
        chain.append(parent)
        parent = parent_of.get(parent)
    return chain


def ancestor_at(code: str, level: str, parent_of: Mapping[str, str],
                level_of: Mapping[str, str]) -> str | None:
    """The first territory of :func:`chain_to_root` (``code`` itself included) whose level
    (``level_of``: code → level) is ``level``; None when the chain has none (a collectivité
    has no région, France no département)."""
    for candidate in chain_to_root(code, parent_of):
        if level_of.get(candidate) == level:
            return candidate
    return None


def region_code(insee_region: str) -> str:
    """Vigie code of a région from its INSEE code (``'84'`` → ``'R84'``)."""
    return f"R{str(insee_region).strip().zfill(2)}"


@dataclass
class Territories:
    """The territory registry.

    Attributes
    ----------
    table:
        One row per territory, indexed by ``code``, with columns ``name``, ``level``, ``parent``
        (the administrative tree; ``''`` for France), ``group`` (a commune's EPCI, ``''`` for
        every other row and for a commune in no EPCI) and ``population`` (inhabitants, INSEE
        legal population 2020; NaN when INSEE publishes none). An EPCI's population is the sum
        of its member communes' legal populations when the commune populations were read, else
        the total its file states.
    tables:
        Reference tables that are not time series, written with each vintage (``epci``: every
        EPCI with its type and parent share; ``epci_communes``: the commune → EPCI membership).
    """

    table: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def from_frames(cls, departements: pd.DataFrame, communes: pd.DataFrame | None = None,
                    epcis: pd.DataFrame | None = None, members: pd.DataFrame | None = None
                    ) -> Territories:
        """Build the registry from the parsed INSEE reference tables.

        ``departements`` has ``dep_code, dep_name, reg_code, reg_name, zone,
        population_legale_2020``; ``communes`` has ``commune_insee, commune_name, dep_code,
        population_legale_2020``; ``epcis`` has ``code, name, population, parent`` (the
        département, see :func:`features.sources.insee_epci.epci_parents`); ``members`` (the
        groupement) has ``epci_code, commune_code``: each commune's ``group``.
        """
        deps = departements
        is_com = deps["zone"].eq("com")
        dep_rows = pd.DataFrame({
            "code": deps["dep_code"],
            "name": deps["dep_name"],
            "level": np.where(is_com, "collectivity", "department"),
            "parent": np.where(is_com, FRANCE, deps["reg_code"].map(region_code)),
            "population": deps["population_legale_2020"].astype(float),
        })
        regions = deps[~is_com].groupby("reg_code", as_index=False).agg(
            name=("reg_name", "first"), population=("population_legale_2020", "sum"))
        reg_rows = pd.DataFrame({
            "code": regions["reg_code"].map(region_code),
            "name": regions["name"],
            "level": "region",
            "parent": FRANCE,
            "population": regions["population"].astype(float),
        })
        france = pd.DataFrame({
            "code": [FRANCE], "name": ["France"], "level": ["country"], "parent": [""],
            # France = every département and collectivity that has a population.
            "population": [float(dep_rows["population"].sum())],
        })
        parts = [france, reg_rows, dep_rows]
        if communes is not None and len(communes):
            parts.append(pd.DataFrame({
                "code": communes["commune_insee"],
                "name": communes["commune_name"],
                "level": "commune",
                "parent": communes["dep_code"],
                "population": communes["population_legale_2020"].astype(float),
            }))
        if epcis is not None and len(epcis):
            parts.append(pd.DataFrame({
                "code": epcis["code"], "name": epcis["name"], "level": "epci",
                "parent": epcis["parent"], "population": epcis["population"].astype(float),
            }))
        table = pd.concat(parts, ignore_index=True).set_index("code")
        table["group"] = ""
        if members is not None and len(members):
            group = members.drop_duplicates("commune_code").set_index("commune_code")["epci_code"]
            communes_rows = table["level"].eq("commune").to_numpy()
            table.loc[communes_rows, "group"] = table.index[communes_rows].map(group).fillna("")
        return cls(table=table)

    # ------------------------------------------------------------------ queries
    def __contains__(self, code: str) -> bool:
        return code in self.table.index

    def codes(self, level: str | None = None) -> list[str]:
        if level is None:
            return list(self.table.index)
        return list(self.table.index[self.table["level"] == level])

    def parent(self, code: str) -> str:
        return str(self.table.at[code, "parent"])

    def ancestors(self, code: str) -> list[str]:
        """Parents from the nearest up to France (``'69'`` → ``['R84', 'FR']``); KeyError for a
        code the registry lacks."""
        self.parent(code)
        return chain_to_root(code, self.table["parent"])[1:]

    def ancestor_at(self, code: str, level: str) -> str | None:
        """``code`` or its nearest ancestor at ``level`` (None: none), see :func:`ancestor_at`."""
        return ancestor_at(code, level, self.table["parent"], self.table["level"])

    def children(self, code: str) -> list[str]:
        """Territories whose ``parent`` is ``code``: a département's communes and, for
        navigation, the EPCIs it is the parent of. An EPCI has none (its communes are its
        :meth:`members`)."""
        return list(self.table.index[self.table["parent"] == code])

    def group(self, code: str) -> str:
        """A commune's EPCI (``''``: none, or not a commune)."""
        return str(self.table.at[code, "group"])

    def members(self, code: str) -> list[str]:
        """The communes of the registry an EPCI groups (the groupement tree's children)."""
        return list(self.table.index[self.table["group"] == code]) if code else []

    def unknown(self, codes: Iterable[str]) -> list[str]:
        """Codes absent from the registry, in first-seen order."""
        seen = pd.unique(pd.Series(list(codes), dtype=object))
        return [c for c in seen if c not in self.table.index]

    def check(self, codes: Iterable[str]) -> None:
        """Raise :class:`UnknownTerritoryError` naming every unknown or retired code."""
        bad = self.unknown(codes)
        if bad:
            raise UnknownTerritoryError([self.describe_unknown(c) for c in bad])

    @staticmethod
    def describe_unknown(code: str) -> str:
        reason = RETIRED_CODES.get(code)
        return f"'{code}' (retired: {reason})" if reason else f"'{code}'"

    def population(self, codes: Iterable[str]) -> pd.Series:
        return self.table["population"].reindex(list(codes))

    def closure(self, codes: Iterable[str]) -> list[str]:
        """The codes plus all their ancestors in both trees, ordered France, régions,
        départements…, EPCIs, communes: a commune brings its département (its région, France)
        and its EPCI, which its values are summed into; an EPCI brings its parent département
        (and its région and France), never the other EPCIs or communes of that département."""
        wanted = set()
        group = self.table["group"]
        for code in codes:
            wanted.add(code)
            wanted.update(self.ancestors(code))
            epci = group.get(code)
            if epci and epci in self.table.index:
                wanted.add(epci)
                wanted.update(self.ancestors(epci))
        order = {level: i for i, level in enumerate(reversed(LEVELS))}
        sub = self.table.loc[sorted(wanted)]
        rank = sub["level"].map(order)
        return list(sub.assign(rank=rank).sort_values(["rank"], kind="stable").index)

    def aggregate(self, frame: pd.DataFrame, how: str, target_level: str) -> pd.DataFrame:
        """Aggregate a tidy frame one level up the hierarchy.

        Parameters
        ----------
        frame:
            Tidy rows ``territory, date, indicator, value`` at the child level.
        how:
            ``sum`` or ``population_mean`` (weights: INSEE population of each child).
        target_level:
            ``region`` or ``country``: the départements' and collectivités' rows are grouped by
            their ancestor at that level; ``department``, ``collectivity`` or ``epci``: the
            communes' rows, by their département (collectivité) or their EPCI (``group``).

        Returns
        -------
        Tidy frame at ``target_level``. For ``sum``, a parent has a value on a date only if every
        child reporting the indicator reported that date (a partial sum would read as a fall).
        For ``population_mean``, the mean is over the children that reported. Rows at other
        levels are left out: an EPCI straddles départements and is never part of a parent's
        total, and a commune is summed into its département, never straight into a région.
        """
        from_level = ("commune",) if target_level in COMMUNE_TOTAL_LEVELS \
            else ("department", "collectivity")
        frame = frame[frame["territory"].map(self.table["level"]).isin(from_level).to_numpy()]
        if frame.empty:
            return frame.copy()
        if target_level == GROUP_LEVEL:
            parents = {code: self.group(code) or None for code in pd.unique(frame["territory"])}
        else:
            parents = {code: self.ancestor_at(code, target_level)
                       for code in pd.unique(frame["territory"])}
        population = self.table["population"].to_dict()
        mapped = frame.assign(parent=frame["territory"].map(parents)).dropna(subset=["parent"])
        keys = ["parent", "date", "indicator"]
        if how == "sum":
            grouped = mapped.groupby(keys, sort=False, observed=True)["value"]
            out = grouped.sum(min_count=1)
            # A partial sum is not a total: keep a parent's value only on dates when every
            # child that reports this indicator at all reported that day.
            expected = mapped.groupby(["parent", "indicator"], observed=True)["territory"].nunique()
            present = grouped.count()
            need = expected.reindex(pd.MultiIndex.from_arrays(
                [present.index.get_level_values("parent"),
                 present.index.get_level_values("indicator")])).to_numpy()
            out = out[present.to_numpy() == need]
        elif how == "population_mean":
            weights = mapped["territory"].map(population).astype(float)
            valid = mapped["value"].notna() & weights.notna()
            weighted = (mapped["value"] * weights).where(valid)
            tmp = mapped.assign(_wv=weighted, _w=weights.where(valid))
            grouped = tmp.groupby(keys, sort=False, observed=True)[["_wv", "_w"]].sum(min_count=1)
            out = grouped["_wv"] / grouped["_w"]
        else:
            raise ValueError(f"cannot aggregate with '{how}'")
        return out.rename("value").reset_index().rename(columns={"parent": "territory"})


def groupement_entries(epci: pd.DataFrame, members: pd.DataFrame) -> dict[str, dict]:
    """Every EPCI of a vintage's reference tables with its member communes, as plain rows:
    code → ``{code, name, level: 'epci', parent, population, communes: [{code, name, level:
    'commune', parent, population}, …]}`` (communes by code; NaN populations → None).

    ``epci``: the vintage table ``epci`` (``epci_code, name, population, parent``);
    ``members``: ``epci_communes`` (``epci_code, commune_code, commune_name, dep_code,
    commune_population``), see :mod:`features.sources.insee_epci`."""
    def number(value) -> float | None:
        return None if pd.isna(value) else float(value)

    by_epci: dict[str, list[dict]] = {}
    for row in members.sort_values("commune_code").itertuples(index=False):
        by_epci.setdefault(str(row.epci_code), []).append({
            "code": str(row.commune_code), "name": str(row.commune_name), "level": "commune",
            "parent": str(row.dep_code), "population": number(row.commune_population)})
    return {str(row.epci_code): {
        "code": str(row.epci_code), "name": str(row.name), "level": GROUP_LEVEL,
        "parent": str(row.parent), "population": number(row.population),
        "communes": by_epci.get(str(row.epci_code), [])}
        for row in epci.sort_values("epci_code").itertuples(index=False)}


def registry_populations(coordinates: Iterable[pd.DataFrame], epci: pd.DataFrame | None = None,
                         members: pd.DataFrame | None = None) -> pd.DataFrame:
    """The legal population (inhabitants) of every territory a vintage knows: index ``code``,
    columns ``name``, ``level``, ``population`` (NaN when unknown).

    ``coordinates``: one frame per cube dataset (``territory``, ``territory_name``,
    ``territory_level``, ``population``: the datasets' coordinates, which hold France, the
    régions, départements and collectivités, and the communes and EPCIs with data); ``epci``
    and ``members``: the vintage tables ``epci`` and ``epci_communes``, which add every EPCI of
    the registry (its population the sum of its member communes') and every member commune.
    A code found in several places keeps its first population: the datasets' first, so that
    what is exported is what the cube's rates divide by."""
    frames = [c.rename(columns={"territory": "code", "territory_name": "name",
                                "territory_level": "level"})[["code", "name", "level",
                                                               "population"]]
              for c in coordinates]
    if epci is not None:
        frames.append(pd.DataFrame({"code": epci["epci_code"], "name": epci["name"],
                                    "level": GROUP_LEVEL, "population": epci["population"]}))
    if members is not None:
        frames.append(pd.DataFrame({"code": members["commune_code"],
                                    "name": members["commune_name"], "level": "commune",
                                    "population": members["commune_population"]}))
    if not frames:
        return pd.DataFrame(columns=["name", "level", "population"],
                            index=pd.Index([], name="code"))
    table = pd.concat(frames, ignore_index=True)
    table["code"] = table["code"].astype(str)
    table["population"] = pd.to_numeric(table["population"], errors="coerce").astype(float)
    return table.drop_duplicates("code").set_index("code").sort_index()
