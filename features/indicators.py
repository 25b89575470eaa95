"""Indicator metadata: stable names, units, frequency and how they aggregate across territories."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Frequency = Literal["daily", "weekly", "quarterly", "yearly"]
FREQUENCIES: tuple[str, ...] = ("daily", "weekly", "quarterly", "yearly")

#: How an indicator combines over child territories.
#: ``sum`` for counts, ``population_mean`` for rates and percentages (weighted by INSEE
#: population), ``national`` for values defined once for France and repeated for every territory,
#: ``none`` when no aggregate makes sense (only published values are kept).
Aggregation = Literal["sum", "population_mean", "national", "none"]


@dataclass(frozen=True)
class IndicatorSpec:
    """What one indicator means.

    Attributes
    ----------
    name:
        Stable identifier used in the cube, the API and the CLI (e.g. ``inc_hosp``).
    frequency:
        Which cube dataset holds it.
    units:
        Physical units, e.g. ``admissions/day``, ``beds``, ``%``.
    aggregation:
        See :data:`Aggregation`.
    count:
        True for counts of people (subject to small-count suppression, must be >= 0).
    stock:
        True for a level observed at a date rather than a flow over that day: beds occupied,
        cumulative persons vaccinated, a count or rate over the 7-day window ending that day.
        Never summed over time: the weekly cube takes the Saturday's value.
    """

    name: str
    frequency: Frequency
    units: str
    description: str
    source: str
    licence: str
    aggregation: Aggregation = "sum"
    count: bool = False
    stock: bool = False

    def attrs(self) -> dict[str, str]:
        d = asdict(self)
        d["count"] = int(self.count)
        d["stock"] = int(self.stock)  # NetCDF attributes hold no booleans
        return {k: (str(v) if not isinstance(v, int) else v) for k, v in d.items() if k != "name"}


# ====================================================================== derived in the cube
#: Screened mutations of SPF's variant screening, by the suffix of their Vigie names.
#: ``a0c0`` is "neither E484K nor L452R" among tests screened for both (the Omicron proxy).
MUTATIONS: dict[str, str] = {
    "e484k": "E484K",
    "e484q": "E484Q",
    "l452r": "L452R (Delta marker)",
    "a0c0": "neither E484K nor L452R (Omicron proxy)",
    "d": "the third mutation of the November 2021 scheme (D)",
}


def screened_present(mutation: str) -> str:
    """Count indicator: screened positive tests where the mutation was found."""
    return f"screened_{mutation}_present"


def screened_absent(mutation: str) -> str:
    """Count indicator: screened positive tests where the mutation was looked for, not found."""
    return f"screened_{mutation}_absent"


def variant_share(mutation: str) -> str:
    return f"variant_share_{mutation}"


_SIDEP = "Santé publique France, SI-DEP"
_DERIVED_SIDEP = (f"{_SIDEP} (published by SPF, or derived by Vigie from inc_cases, inc_tests "
                  "and the INSEE population where not published)")
_LO = "Licence Ouverte 2.0"

#: Indicators the cube computes from others (features.cube.derive_indicators) wherever their
#: inputs exist, filling only cells without a published value. Sources that publish the same
#: indicator (métropoles, BFC départements) use these specs so published and derived agree.
#: Rates never aggregate over territories ("none"): a parent's rate is derived from its own
#: counts, never averaged from a partial set of children.
INCIDENCE_RATE_7D = IndicatorSpec(
    "incidence_rate_7d", "daily", "positives/100,000 inhabitants/7 days",
    "positive persons over the 7 days ending that day per 100,000 inhabitants (all 7 days "
    "reported; population: the cube's INSEE legal population 2020)", _DERIVED_SIDEP, _LO,
    "none", stock=True)
POSITIVITY_RATE_7D = IndicatorSpec(
    "positivity_rate_7d", "daily", "%",
    "test positivity: 100 × positive persons / tests over the 7 days ending that day",
    _DERIVED_SIDEP, _LO, "none", stock=True)
VACCINATION_COVERAGE_DOSE1 = IndicatorSpec(
    "vaccination_coverage_dose1", "daily", "% of population",
    "100 × persons with at least a first vaccine dose / INSEE legal population 2020",
    "Santé publique France, VAC-SI (derived by Vigie)", _LO, "none", stock=True)
#: Départements have no daily cases: their 7-day incidence is estimated from the screening
#: file's positive tests, scaled by their région's persons-per-test ratio
#: (:mod:`features.incidence_estimate`).
INCIDENCE_RATE_7D_ESTIMATED = IndicatorSpec(
    "incidence_rate_7d_estimated", "daily", "positives/100,000 inhabitants/7 days",
    "ESTIMATE of the positive persons over the 7 days ending that day per 100,000 "
    "inhabitants, for territories without incidence_rate_7d: screened_positive_tests "
    "(positive tests over the window) x the région's inc_cases / screened_positive_tests over "
    "the same window (positive persons per positive test) / population x 100,000; not derived "
    "where the région has fewer than 20 positive tests in the window or no 7-day positive "
    "persons. The région's départements add up exactly to its incidence_rate_7d; the ratio "
    "varies between régions (means 0.72 to 0.89 over 2021-06..2021-12), and a département's "
    "own ratio, unobserved, may differ from its région's",
    "Vigie, estimated from SPF screening and SI-DEP", _LO, "none", stock=True)
VARIANT_SHARES: dict[str, IndicatorSpec] = {
    variant_share(m): IndicatorSpec(
        variant_share(m), "daily", "%",
        f"share of screened positive tests with {label}, 7-day window ending that day: "
        f"100 × {screened_present(m)} / ({screened_present(m)} + {screened_absent(m)})",
        "Santé publique France, SI-DEP variant screening (derived by Vigie)", _LO, "none",
        stock=True)
    for m, label in MUTATIONS.items()
}
DERIVED: dict[str, IndicatorSpec] = {
    spec.name: spec
    for spec in (INCIDENCE_RATE_7D, POSITIVITY_RATE_7D, VACCINATION_COVERAGE_DOSE1,
                 INCIDENCE_RATE_7D_ESTIMATED, *VARIANT_SHARES.values())
}
