"""Santé publique France, SI-DEP variant screening ("criblage") by département: sliding 7-day
windows of positive **tests** (not persons) and of screened tests with each mutation found
(``…1``) or looked for and not found (``…0``).

Two schemes, two files:

* old (``fr_spf_criblage_dep_7j_old.csv``, windows ending 2021-06-06..2021-12-30): A = E484K,
  B = E484Q, C = L452R;
* new (``fr_spf_criblage_dep_7j_new.csv``, from the window ending 2021-11-07): A = E484K,
  C = L452R, D = a third mutation, ``A0C0`` = neither E484K nor L452R among ``A01C01`` tests
  screened for both (the Omicron proxy). It also has an unknown département (``NA``, or an
  empty code in the extract, named "Inconnu"): those rows are dropped with a warning that counts
  them, so France's sums leave out the tests of unknown département.

Columns ``dep, semaine, date_debut, date_fin, nb_pos, nb_crib, nb_A0, nb_A1, tx_A1, …``; the
official publication (``;``-separated) has ``semaine`` = ``"YYYY-MM-DD-YYYY-MM-DD"`` and may lack
``date_fin``, which is then read from ``semaine``; a ``cl_age90`` column keeps only ``0``.

Each window is dated by its last day (``date_fin``). Window counts are stocks in the cube's sense
(``IndicatorSpec.stock``): never summed over a week, the weekly cube takes the Saturday's window,
which is that week's total. They are summed over départements into régions and France.

Where the two schemes overlap (windows ending 2021-11-07..2021-12-30), :func:`combine_schemes`
decides per indicator:

* ``screened_positive_tests``: the new file (the publication that continues; the two extracts
  differ by about 1 % on the same window);
* E484K and L452R counts, and ``screened_tests``: the **sum** of both schemes. A screened test is
  read with one kit or the other, so the two are disjoint samples: their sum stays a steady 55 %
  of positive tests across the switch while each scheme alone swings from 98 % to 2 % of it;
* E484Q: old scheme only; D and ``A0C0``: new scheme only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.indicators import IndicatorSpec, screened_absent, screened_present
from features.sources.checks import (
    check_territories,
    drop_duplicates,
    original_name,
    to_date,
    to_number,
)
from features.sources.contract import ParseContext, Source, SourceResult, to_tidy
from features.sources.reading import MAX_PROBLEMS_PER_CHECK, Collector, read_table

PUBLISHER = "Santé publique France, SI-DEP (variant screening)"
LICENCE = "Licence Ouverte 2.0"
WINDOW = "over the 7-day window ending that day"

#: Indicators of the screening files (window counts: count, sum over territories, stock).
_BASE = {
    "screened_positive_tests": ("tests/7 days",
                                f"positive tests (not persons) {WINDOW}, by département"),
    "screened_tests": ("tests/7 days", f"positive tests screened for mutations {WINDOW} "
                       "(both schemes summed where they overlap)"),
}
_MUTATION_LABELS = {"e484k": "E484K", "e484q": "E484Q", "l452r": "L452R",
                    "d": "mutation D (November 2021 scheme)",
                    "a0c0": "neither E484K nor L452R (Omicron proxy)"}


def _specs() -> dict[str, IndicatorSpec]:
    specs = {name: IndicatorSpec(name, "daily", units, description, PUBLISHER, LICENCE, "sum",
                                 count=True, stock=True)
             for name, (units, description) in _BASE.items()}
    for m, label in _MUTATION_LABELS.items():
        found = "with" if m != "a0c0" else "showing"
        specs[screened_present(m)] = IndicatorSpec(
            screened_present(m), "daily", "tests/7 days",
            f"screened positive tests {found} {label} {WINDOW}", PUBLISHER, LICENCE, "sum",
            count=True, stock=True)
        specs[screened_absent(m)] = IndicatorSpec(
            screened_absent(m), "daily", "tests/7 days",
            f"screened positive tests without {label} (looked for, not found) {WINDOW}"
            if m != "a0c0" else
            f"screened positive tests read for both E484K and L452R showing either {WINDOW}",
            PUBLISHER, LICENCE, "sum", count=True, stock=True)
    return specs


SPECS = _specs()

#: Indicator → how its two schemes combine where both publish a window.
OVERLAP_RULE: dict[str, str] = {
    "screened_positive_tests": "new",
    "screened_tests": "sum",
    **{f(m): "sum" for m in ("e484k", "l452r") for f in (screened_present, screened_absent)},
}

#: Codes that stand for "département unknown" in the new file.
UNKNOWN_DEPARTMENT = {"", "NA"}


class _Screening(Source):
    publisher = PUBLISHER
    licence = LICENCE
    required = False
    scheme = ""
    #: File column → Vigie indicator (present/absent counts); derived columns in ``derived``.
    counts: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        """A scheme's indicators: the screened positive tests and screened tests, then its
        present/absent counts."""
        super().__init_subclass__(**kwargs)
        cls.indicators = tuple(SPECS[n] for n in ("screened_positive_tests", "screened_tests",
                                                  *cls.counts.values()))

    def columns(self) -> dict[str, tuple[str, ...]]:
        return {"territory": ("dep",), "window": ("semaine",), "positives": ("nb_pos",),
                "screened": ("nb_crib",), **{c: (c,) for c in self.counts}}

    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:
        check = Collector(self.name, path)
        value_columns = ["positives", "screened", *self.counts]
        frame = read_table(path, self.columns(), check,
                           optional={"date": ("date_fin",), "age": ("cl_age90",)},
                           numeric=value_columns)
        if "age" in frame.columns:
            age = to_number(frame, "age", check)
            check.raise_if_any()
            frame = frame[age.eq(0)].copy()
        code = frame["territory"].fillna("").str.strip()
        unknown = code.str.upper().isin(UNKNOWN_DEPARTMENT)
        if unknown.any():
            check.warnings.append(
                f"{path.name}: dropped {int(unknown.sum())} rows of unknown département "
                f"({original_name(frame, 'territory')} = 'NA' or empty, first on line "
                f"{int(unknown[unknown].index[0]) + 2})")
            frame = frame[~unknown].copy()
        check_territories(frame, "territory", check, ctx.territories)
        if "date" not in frame.columns:
            frame["date"] = self._end_of_window(frame, check)
            frame.attrs["original_columns"]["date"] = original_name(frame, "window")
            check.raise_if_any()
        frame["date"] = to_date(frame, "date", check, ctx.today)
        for col in value_columns:
            frame[col] = to_number(frame, col, check, count=True)
        self._check_totals(frame, check)
        check.raise_if_any()
        frame = drop_duplicates(frame, ["territory", "date"], value_columns, check)
        check.raise_if_any()
        mapping = {"positives": "screened_positive_tests", "screened": "screened_tests",
                   **self.counts}
        frame = self.derive(frame, mapping)
        tidy = to_tidy(frame, mapping)
        indicators = [SPECS[name] for name in dict.fromkeys(mapping.values())]
        return SourceResult(self.name, tidy, indicators, warnings=check.warnings)

    def derive(self, frame: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
        return frame

    @staticmethod
    def _end_of_window(frame: pd.DataFrame, check: Collector) -> pd.Series:
        """``semaine`` = ``'2021-11-01-2021-11-07'`` → its last day, as text."""
        window = frame["window"].fillna("").str.strip()
        bad = ~window.str.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}")
        for idx in bad[bad].index[:MAX_PROBLEMS_PER_CHECK]:
            check.add("a 7-day window like 2021-11-01-2021-11-07 (no date_fin column)",
                      repr(window.at[idx]), line=int(idx) + 2,
                      column=original_name(frame, "window"))
        return window.str[-10:]

    def _check_totals(self, frame: pd.DataFrame, check: Collector) -> None:
        """A mutation's 0 + 1 never exceeds the screened tests. (Screened tests may exceed
        positive tests on small windows: SPF counts them on different days; not checked.)"""
        pairs = [
            (f"{c[:-1]}0+{c[:-1]}1", "screened") for c in self.counts
            if c.endswith("1") and f"{c[:-1]}0" in self.counts]
        for part, whole in pairs:
            if "+" in part:
                zero, one = part.split("+")
                values = frame[zero] + frame[one]
            else:
                values = frame[part]
            over = values > frame[whole]
            label = " + ".join(original_name(frame, c) for c in part.split("+"))
            for idx in over[over].index[:MAX_PROBLEMS_PER_CHECK]:
                check.add(f"{label} <= {original_name(frame, whole)}",
                          f"{values.at[idx]:g} > {frame.at[idx, whole]:g}",
                          line=int(idx) + 2, column=original_name(frame, part.split("+")[0]))


class SpfScreeningOld(_Screening):
    name = "spf_screening_old"
    title = "Variant screening by département, scheme of June 2021 (E484K, E484Q, L452R)"
    official_url = "https://www.data.gouv.fr/fr/datasets/r/4d3e5a8b-9649-4c41-86ec-5420eb6b530c"
    file_patterns = ("fr_spf_criblage_dep_7j_old.csv", "sp-variant-7j-dep-old-*.csv")
    scheme = "old"
    counts = {
        "nb_A1": screened_present("e484k"), "nb_A0": screened_absent("e484k"),
        "nb_B1": screened_present("e484q"), "nb_B0": screened_absent("e484q"),
        "nb_C1": screened_present("l452r"), "nb_C0": screened_absent("l452r"),
    }


class SpfScreeningNew(_Screening):
    name = "spf_screening_new"
    title = "Variant screening by département, scheme of November 2021 (E484K, L452R, D, A0C0)"
    official_url = "https://www.data.gouv.fr/fr/datasets/r/ba8219dc-948c-418a-9116-f792c79c54b8"
    file_patterns = ("fr_spf_criblage_dep_7j_new.csv", "sp-variant-7j-dep-20*.csv")
    scheme = "new"
    counts = {
        "nb_A1": screened_present("e484k"), "nb_A0": screened_absent("e484k"),
        "nb_C1": screened_present("l452r"), "nb_C0": screened_absent("l452r"),
        "nb_D1": screened_present("d"), "nb_D0": screened_absent("d"),
        "nb_A0C0": screened_present("a0c0"), "nb_A01C01": screened_absent("a0c0"),
    }

    def derive(self, frame: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
        # nb_A01C01 counts tests read for both mutations; "absent" is those showing either.
        both, neither = frame["nb_A01C01"], frame["nb_A0C0"]
        frame["nb_A01C01"] = both - neither
        return frame

    def _check_totals(self, frame: pd.DataFrame, check: Collector) -> None:
        super()._check_totals(frame, check)
        over = frame["nb_A0C0"] > frame["nb_A01C01"]
        for idx in over[over].index[:MAX_PROBLEMS_PER_CHECK]:
            check.add("nb_A0C0 <= nb_A01C01",
                      f"{frame.at[idx, 'nb_A0C0']:g} > {frame.at[idx, 'nb_A01C01']:g}",
                      line=int(idx) + 2, column="nb_A0C0")


SOURCES = (SpfScreeningNew(), SpfScreeningOld())
_NAMES = {source.name: source.scheme for source in SOURCES}


def combine_schemes(results: list[SourceResult]) -> list[SourceResult]:
    """Apply :data:`OVERLAP_RULE` to the two schemes' results (see the module docstring).

    Rows of indicators combined by ``sum`` are replaced by one result holding, per (territory,
    date), the sum of what the two schemes publish; everything else is left to the cube's
    first-source-wins merge, where the new scheme is listed first.
    """
    schemes = [r for r in results if r.source in _NAMES]
    if len(schemes) < 2:
        return results
    summed = {name for name, rule in OVERLAP_RULE.items() if rule == "sum"}
    parts = [r.frame[r.frame["indicator"].isin(summed)] for r in schemes]
    total = (pd.concat(parts, ignore_index=True)
             .groupby(["territory", "date", "indicator"], as_index=False, sort=False)["value"]
             .sum())
    out = []
    for r in results:
        if r.source in _NAMES:
            r = SourceResult(r.source, r.frame[~r.frame["indicator"].isin(summed)],
                             r.indicators, r.files, r.warnings, r.tables)
        out.append(r)
    specs = [SPECS[name] for name in sorted(summed)]
    out.append(SourceResult("spf_screening_combined", total[["territory", "date", "indicator",
                                                             "value"]], specs))
    return out
