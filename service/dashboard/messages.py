"""The API's errors said in French on the dashboard.

The API answers errors in English JSON ``{code, message, details}`` (for programs and their
authors); a page never shows that ``message``. It builds its own French sentence from the stable
``code`` and the ``details`` (:func:`reason_fr`). ``static/js/common.js`` (``Vigie.errorFr``) does
the same for the few calls a page makes to the API directly (scenario runs); the codes are the
same on both sides, and a test checks that every code the API raises has a sentence here.
"""

from __future__ import annotations

import re
from typing import Any

TARGETS_FR = {
    "inc_hosp": "des nouvelles hospitalisations",
    "inc_icu": "des nouvelles admissions en réanimation",
    "hosp": "des lits d'hospitalisation occupés",
    "icu": "des lits de réanimation occupés",
    "er_visits": "des passages aux urgences pour Covid-19",
    "unemployment": "du taux de chômage",
}
FREQUENCIES_FR = {"daily": "quotidienne", "weekly": "hebdomadaire", "quarterly": "trimestrielle",
                  "yearly": "annuelle"}
LEVELS_FR = {"national": "la France entière", "region": "les régions",
             "department": "les départements", "epci": "les intercommunalités",
             "commune": "les communes"}
ROLES_FR = {"public": "accès public", "city": "ville", "analyst": "analyste",
            "planner": "planificateur", "crisis_cell": "cellule de crise",
            "admin": "administrateur"}
STATUS_FR = {"queued": "en file d'attente", "running": "en cours", "ok": "terminée",
             "failed": "en échec", "interrupted": "interrompue", "coalesced": "regroupée"}

#: code → French sentence (``{…}`` filled from the details when they are there).
CODES_FR: dict[str, str] = {
    "no_forecast": "pas encore de prévision",
    "no_data": "aucune donnée n'a encore été chargée (le premier import des sources n'a pas "
               "eu lieu ou n'est pas terminé)",
    "no_scenario": "aucune exécution terminée du scénario « statu quo » ne couvre ces "
                   "territoires",
    "no_leaderboard": "le banc d'essai rétrospectif n'a pas encore été calculé",
    "not_finished": "l'exécution n'est pas terminée",
    "not_found": "élément introuvable",
    "unknown_territory": "territoire inconnu",
    "aggregated_only": "le public ne voit que les territoires agrégés (départements, régions, "
                       "France) : ces données demandent un jeton",
    # A scoped token outside its territories (details.scoped): it has a token already.
    "aggregated_only_scoped": "hors des territoires de votre jeton, seuls les territoires "
                              "agrégés (départements, régions, France, intercommunalités) "
                              "sont visibles",
    "forbidden": "accès refusé : votre jeton n'a pas les droits nécessaires",
    "authentication_required": "un jeton d'accès est nécessaire",
    "invalid_token": "jeton inconnu, expiré ou révoqué",
    "invalid_input": "requête refusée : paramètres invalides",
    "method_not_allowed": "opération non permise",
    "not_acceptable": "format de réponse non disponible",
    "conflict": "opération en conflit avec une autre en cours",
    "too_large": "requête trop volumineuse",
    "unsupported_media_type": "format de requête non pris en charge",
    "rate_limited": "trop de requêtes en peu de temps : réessayez dans une minute",
    "internal_error": "erreur interne du service (elle est enregistrée dans son journal)",
    # The city page's own reasons (service.usecases.city_reads.CODES).
    "unknown_city": "aucune intercommunalité ni commune ne porte ce code",
    "no_target": "Vigie ne prévoit pas cet indicateur pour ce territoire",
    "no_incidence": "pas de taux d'incidence publié pour ce territoire : Santé publique France "
                    "le publie pour les 22 métropoles",
    "no_indicator": "aucune observation de cet indicateur pour ce territoire",
    "no_departement": "le département de ce territoire n'a pas de données dans Vigie",
    "unavailable": "service momentanément indisponible",
    # The uploads' (service.api.uploads).
    "busy": "un autre envoi ou un import est en cours : réessayez dans une minute",
    "invalid_file": "fichier refusé : chaque problème est indiqué avec sa ligne et sa colonne",
    "invalid_file_name": "nom de fichier refusé : un simple nom en .csv d'au plus 100 "
                         "caractères",
    "out_of_scope": "ce fichier contient des territoires que votre jeton ne peut pas écrire",
}


#: French thousands separator: the narrow no-break space (as ``Intl.NumberFormat('fr-FR')``).
THIN_SPACE = "\u202f"


def fr_number(value: float | None, digits: int = 0) -> str:
    """``12345.6`` → ``12 345,6`` (narrow no-break space, decimal comma); None → ``–``."""
    if value is None:
        return "–"
    return f"{value:,.{digits}f}".replace(",", THIN_SPACE).replace(".", ",")


_THOUSANDS = re.compile(r"(?<=\d)[ \u00a0](?=\d{3}(?!\d))")
_TEXT_NODE = re.compile(r">([^<]+)<")


def thin(text: str) -> str:
    """``100 000`` → ``100\u202f000`` in a sentence (units such as "pour 100 000 habitants"
    come from shared vocabularies written with plain spaces)."""
    return _THOUSANDS.sub(THIN_SPACE, text)


def thin_html(html: str) -> str:
    """:func:`thin` on the text between tags only (never in attributes: SVG path data)."""
    return _TEXT_NODE.sub(lambda m: ">" + thin(m.group(1)) + "<", html)


def thin_all(value: Any) -> Any:
    """:func:`thin` on every string of a page-data document (dates and ids have no spaces)."""
    if isinstance(value, str):
        return thin(value)
    if isinstance(value, dict):
        return {k: thin_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thin_all(v) for v in value]
    return value


def reason_fr(status: int, body: dict[str, Any] | None) -> str:
    """A French sentence for an API error answer (``status`` and its JSON ``body``)."""
    body = body or {}
    code = body.get("code") or ""
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    if code == "no_forecast":
        target = TARGETS_FR.get(details.get("target", ""), "")
        frequency = FREQUENCIES_FR.get(details.get("frequency", ""), "")
        level = LEVELS_FR.get(details.get("level", ""), "")
        what = "pas encore de prévision" + (f" {target}" if target else "")
        if frequency:
            what += f" (série {frequency})"
        if level:
            what += f" pour {level}"
        return what + " : elle apparaîtra après le prochain calcul des prévisions"
    if code in ("forbidden", "authentication_required") and details.get("required_role"):
        role = ROLES_FR.get(str(details["required_role"]), str(details["required_role"]))
        return f"accès refusé : il faut un jeton « {role} » ou supérieur"
    if code == "aggregated_only" and details.get("scoped"):
        return CODES_FR["aggregated_only_scoped"]
    if code == "not_finished" and details.get("status"):
        return f"l'exécution n'est pas terminée (elle est {STATUS_FR.get(details['status'], '…')})"
    if code in CODES_FR:
        return CODES_FR[code]
    if status == 404:
        return CODES_FR["not_found"]
    if status == 429:
        return CODES_FR["rate_limited"]
    if status >= 500:
        return CODES_FR["internal_error"]
    return f"le service a refusé la demande (code {status})"


#: The cube's source and licence notes (technical English, kept in the cube's metadata) as the
#: pages say them. A note without an entry is shown as it is; the French-text test finds it.
SOURCES_FR: dict[str, str] = {
    "Blavatnik School of Government, University of Oxford (OxCGRT)":
        "École de gouvernement Blavatnik, université d'Oxford (OxCGRT)",
    "Google LLC, COVID-19 Community Mobility Reports":
        "Google, rapports de mobilité de la communauté COVID-19",
    "Google terms of service (free reuse with attribution)":
        "conditions d'utilisation de Google (réutilisation libre en citant la source)",
    "Santé publique France, SI-DEP (published by SPF, or derived by Vigie from inc_cases, "
    "inc_tests and the INSEE population where not published)":
        "Santé publique France, SI-DEP (taux publiés, ou calculés par Vigie à partir des cas, "
        "des tests et de la population INSEE là où ils ne sont pas publiés)",
    "Santé publique France, SI-DEP (published)": "Santé publique France, SI-DEP (publié)",
    "Santé publique France, SI-DEP (variant screening)":
        "Santé publique France, SI-DEP (criblage des variants)",
    "Santé publique France, SI-DEP variant screening (derived by Vigie)":
        "Santé publique France, criblage des variants SI-DEP (calculé par Vigie)",
    "Santé publique France, VAC-SI (derived by Vigie)":
        "Santé publique France, VAC-SI (calculé par Vigie)",
    "Vigie, computed from inc_cases (SPF SI-DEP positive persons) where available, else "
    "inc_hosp (SPF SI-VIC hospital admissions); see epidemic_basis":
        "Calcul de Vigie à partir des personnes testées positives (Santé publique France, "
        "SI-DEP) là où elles existent, sinon des hospitalisations (SI-VIC)",
    "Vigie, estimated from SPF screening and SI-DEP":
        "Estimation de Vigie à partir du criblage et de SI-DEP (Santé publique France)",
    "Licence Ouverte 2.0 (inputs)": "Licence Ouverte 2.0 (données d'entrée)",
    "INSEE, legal population 2020": "INSEE, population légale 2020",
}


def source_fr(text: str | None) -> str | None:
    """A cube source or licence note as the pages say it (see :data:`SOURCES_FR`)."""
    return SOURCES_FR.get(text, text) if text else text
