"""French names and units of the cube's indicators, for the API listing and the dashboard.

The cube's own metadata (``units``, ``description``) is technical English; what a crisis cell
reads is French. This is vocabulary only: what an indicator *is* stays in the cube's attrs.
An indicator without an entry here (a city's own indicator) falls back to its description.
"""

from __future__ import annotations

import re

#: Indicator name → (French label, French unit).
INDICATORS_FR: dict[str, tuple[str, str]] = {
    # Hospital flows and beds (SPF)
    "inc_hosp": ("Nouvelles hospitalisations", "patients"),
    "inc_icu": ("Nouvelles admissions en réanimation", "patients"),
    "inc_death": ("Décès à l'hôpital", "décès"),
    "inc_discharge": ("Retours à domicile après hospitalisation", "patients"),
    "hosp": ("Lits d'hospitalisation occupés", "lits occupés"),
    "icu": ("Lits de réanimation occupés", "lits occupés"),
    "hosp_origin": ("Origine de la série des lits d'hospitalisation (1 publiée, 2 reconstituée)",
                    "code"),
    "icu_origin": ("Origine de la série des lits de réanimation (1 publiée, 2 reconstituée)",
                   "code"),
    # Leading signals (SPF SI-DEP, VAC-SI, criblage)
    "inc_cases": ("Personnes testées positives", "personnes"),
    "inc_tests": ("Tests réalisés", "tests"),
    "incidence_rate_7d": ("Taux d'incidence sur 7 jours", "cas pour 100 000 habitants"),
    "incidence_rate_7d_65_plus": ("Taux d'incidence sur 7 jours chez les 65 ans et plus",
                                  "cas pour 100 000 habitants de 65 ans et plus"),
    "incidence_rate_7d_estimated": ("Taux d'incidence sur 7 jours estimé à partir des tests "
                                    "positifs du criblage", "cas pour 100 000 habitants"),
    "positivity_rate_7d": ("Taux de positivité des tests sur 7 jours", "%"),
    "vaccinated_dose1": ("Personnes ayant reçu au moins une dose de vaccin", "personnes"),
    "vaccination_coverage_dose1": ("Couverture vaccinale (au moins une dose)",
                                   "% de la population"),
    "screened_positive_tests": ("Tests positifs sur 7 jours (fichier du criblage)", "tests"),
    "screened_tests": ("Tests positifs criblés sur 7 jours", "tests"),
    "screened_a0c0_present": ("Tests positifs criblés sur 7 jours sans E484K ni L452R "
                              "(indicateur du variant Omicron)", "tests"),
    "screened_a0c0_absent": ("Tests positifs criblés sur 7 jours avec E484K ou L452R", "tests"),
    # Epidemic indicators (features.epidemic)
    "rt": ("Nombre de reproduction effectif R(t)", "sans unité"),
    "rt_lower": ("R(t) : borne basse de l'intervalle de crédibilité à 95 %", "sans unité"),
    "rt_upper": ("R(t) : borne haute de l'intervalle de crédibilité à 95 %", "sans unité"),
    "growth_rate": ("Taux de croissance quotidien", "par jour"),
    "doubling_time": ("Temps de doublement (négatif : temps de division par deux)", "jours"),
    "icu_occupancy": ("Part des lits de réanimation occupés par des patients Covid-19", "%"),
    "epidemic_basis": ("Base de l'estimation de R(t) (0 aucune, 1 cas confirmés, "
                       "2 hospitalisations)", "code"),
    # SurSaUD
    "er_visits_covid_rate": ("Passages aux urgences pour Covid-19", "pour 100 000 passages"),
    "hosp_after_er_covid_rate": ("Hospitalisations après passage aux urgences pour Covid-19",
                                 "pour 100 000 passages"),
    "sos_medecins_covid_rate": ("Actes SOS Médecins pour Covid-19", "pour 100 000 actes"),
    "er_visits_covid": ("Passages aux urgences pour Covid-19", "passages"),
    "sos_medecins_covid": ("Actes SOS Médecins pour Covid-19", "actes"),
    # Mobility and measures
    "mobility_retail_recreation": ("Mobilité : commerces et loisirs",
                                   "% d'écart à janv.–févr. 2020"),
    "mobility_grocery_pharmacy": ("Mobilité : alimentation et pharmacies",
                                  "% d'écart à janv.–févr. 2020"),
    "mobility_parks": ("Mobilité : parcs", "% d'écart à janv.–févr. 2020"),
    "mobility_transit_stations": ("Mobilité : transports en commun",
                                  "% d'écart à janv.–févr. 2020"),
    "mobility_workplaces": ("Mobilité : lieux de travail", "% d'écart à janv.–févr. 2020"),
    "mobility_residential": ("Mobilité : domicile", "% d'écart à janv.–févr. 2020"),
    "stringency_index": ("Indice de sévérité des mesures (OxCGRT)", "indice 0–100"),
    "containment_health_index": ("Indice confinement et santé (OxCGRT)", "indice 0–100"),
    "government_response_index": ("Indice de réponse gouvernementale (OxCGRT)", "indice 0–100"),
    "economic_support_index": ("Indice de soutien économique (OxCGRT)", "indice 0–100"),
    # Cities' own indicators in the shared format (the names its schema suggests)
    "food_aid_requests": ("Demandes d'aide alimentaire", "demandes"),
    "emergency_housing_calls_115": ("Appels au 115 (hébergement d'urgence)", "appels"),
    "school_absences": ("Absences scolaires", "% des élèves"),
    # Economy, population, capacity
    "unemployment_rate": ("Taux de chômage", "% de la population active"),
    "population_estimate": ("Population estimée au 1er janvier", "habitants"),
    "population_65_plus": ("Population de 65 ans et plus au 1er janvier", "habitants"),
    "icu_beds_adult": ("Lits de réanimation adultes", "lits"),
    "icu_beds_paediatric": ("Lits de réanimation pédiatriques", "lits"),
    "intensive_care_beds": ("Lits de soins intensifs", "lits"),
    "continuous_care_beds": ("Lits de surveillance continue", "lits"),
    "critical_care_beds": ("Lits de soins critiques", "lits"),
}

#: Origin of a risk input (``features.risk.ORIGIN_NAMES``, ``inputs_origin`` of
#: ``/api/v1/risk``) → how the dashboard says it.
RISK_ORIGINS_FR: dict[str, str] = {
    "observed": "donnée du territoire",
    "estimated_from_screening": "estimé à partir des tests positifs du criblage, convertis en "
                                "personnes avec le ratio de sa région",
}

#: Variant-screening suffixes → what a French reader calls them.
MUTATIONS_FR: dict[str, str] = {
    "e484k": "mutation E484K", "e484q": "mutation E484Q",
    "l452r": "mutation L452R (marqueur du variant Delta)",
    "a0c0": "ni E484K ni L452R (indicateur du variant Omicron)",
    "d": "troisième mutation du criblage de novembre 2021 (D)",
}


def risk_estimated_fr(item: dict) -> list[str]:
    """The inputs of one ``/api/v1/risk`` item that are estimates, in French: "Taux d'incidence
    sur 7 jours (estimé à partir des tests positifs du criblage, …)"."""
    origins = item.get("inputs_origin") or {}
    return [f"{indicator_fr(name)[0]} ({RISK_ORIGINS_FR.get(origins.get(name) or '', 'estimé')})"
            for name in item.get("estimated") or []]


_AGE = re.compile(r"^(?P<base>.+)_age_(?P<lo>\d\d)_(?P<hi>\d\d)$")
_AGE_PLUS = re.compile(r"^(?P<base>.+)_age_(?P<lo>\d\d)_plus$")
_SHARE = re.compile(r"^variant_share_(?P<m>[a-z0-9]+)$")
_SCREENED = re.compile(r"^screened_(?P<m>[a-z0-9]+)_(?P<which>present|absent)$")


def indicator_fr(name: str, fallback_label: str = "", fallback_units: str = "") -> tuple[str, str]:
    """(French label, French unit) of an indicator; the fallbacks when Vigie has no words."""
    if name in INDICATORS_FR:
        return INDICATORS_FR[name]
    if m := _SHARE.match(name):
        return (f"Part des tests criblés portant : {MUTATIONS_FR.get(m['m'], m['m'])}",
                "% des tests positifs criblés")
    if m := _SCREENED.match(name):
        mutation = MUTATIONS_FR.get(m["m"], m["m"])
        if m["which"] == "present":
            return f"Tests positifs criblés sur 7 jours avec la {mutation}", "tests"
        return (f"Tests positifs criblés sur 7 jours sans la {mutation} (recherchée, non "
                "trouvée)", "tests")
    if (m := _AGE.match(name)) and m["base"] in INDICATORS_FR:
        label, units = INDICATORS_FR[m["base"]]
        return f"{label} ({int(m['lo'])}–{int(m['hi'])} ans)", units
    if (m := _AGE_PLUS.match(name)) and m["base"] in INDICATORS_FR:
        label, units = INDICATORS_FR[m["base"]]
        return f"{label} ({int(m['lo'])} ans et plus)", units
    return fallback_label or name, fallback_units
