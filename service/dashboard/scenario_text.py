"""What a scenario run's R now came from and which levers it used, in French, for the Scénarios
page.

A result (:func:`scenarios.run_scenario`, served by ``/api/v1/scenarios/runs/<id>``) gives per
territory ``summary[code].r_now`` and ``r_now_admissions`` (quantiles q05/median/q95),
``r_basis`` (``basis`` "cases" / "admissions" / "" when the territory's own admissions were
kept, ``source`` the territory whose R gives the level, ``r_source`` its R, ``shrink`` the weight
kept of a département's own deviation, ``note`` why cases were not used, in English: see
:mod:`scenarios.rnow`) and top-level ``levers`` (``vaccination``, ``variant``: see
:mod:`scenarios.levers`). This module only words them; the numbers are the result's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from scenarios.levers import VARIANT_PRIORS
from scenarios.rnow import MIN_CASES_WINDOW
from service.labels import MUTATIONS_FR

#: What each variant preset's advantage is measured against (:data:`VARIANT_PRIORS`).
VARIANT_REFERENCE_FR = {
    "alpha": "par rapport aux souches historiques",
    "delta": "par rapport au variant Alpha",
    "omicron": "par rapport au variant Delta (avantage de croissance)",
}

_ISO = r"(\d{4}-\d\d-\d\d)"
_CODE = r"(?P<code>\S+?)"


def _fr(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    text = f"{value:,.{digits}f}".replace(",", "\u202f").replace(".", ",")
    return text


def _date(iso: str) -> str:
    return f"{iso[8:10]}/{iso[5:7]}/{iso[0:4]}" if re.fullmatch(_ISO, iso or "") else str(iso)


def _where(code: str | None, names: Mapping[str, str]) -> str:
    """'Auvergne-Rhône-Alpes (R84)'; 'France'."""
    if not code:
        return "–"
    if code == "FR":
        return "France"
    name = names.get(code)
    return f"{name} ({code})" if name and name != code else code


def _of(code: str | None, names: Mapping[str, str]) -> str:
    """'de la France', "d'Auvergne-Rhône-Alpes (R84)", 'de Rhône (69)'."""
    if code == "FR":
        return "de la France"
    where = _where(code, names)
    return ("d'" if where[:1].upper() in "AEIOUYÉÈÎ" else "de ") + where


#: The notes :mod:`scenarios.rnow` writes when cases were not used → their French wording.
_NOTES: tuple[tuple[re.Pattern, Callable[[re.Match, Mapping[str, str]], str]], ...] = (
    (re.compile(r"^no daily cases in the cube$"),
     lambda m, n: "le cube ne contient aucun cas quotidien"),
    (re.compile(rf"^daily cases of {_CODE} do not cover the last (?P<days>\d+) days "
                rf"\((?:values {_ISO} to {_ISO}|no value)\)$"),
     lambda m, n: f"les cas quotidiens {_of(m['code'], n)} ne couvrent pas les "
                  f"{m['days']} derniers jours ("
                  + (f"données du {_date(m[3])} au {_date(m[4])})" if m[3]
                     else "aucune donnée)")),
    (re.compile(rf"^too few cases in {_CODE} \((?P<count>\d+) in (?P<days>\d+) days\)$"),
     lambda m, n: f"trop peu de cas pour {_where(m['code'], n)} ({m['count']} en {m['days']} "
                  f"jours, il en faut au moins {MIN_CASES_WINDOW})"),
    (re.compile(rf"^admissions of {_CODE} too few or incomplete over the last (?P<days>\d+) "
                r"days: R\^A of (?P<own>\S+) kept$"),
     lambda m, n: f"les hospitalisations {_of(m['code'], n)} sont trop peu nombreuses "
                  f"ou incomplètes sur les {m['days']} derniers jours : le R des "
                  f"hospitalisations {_of(m['own'], n)} est gardé"),
)


def note_fr(note: str | None, names: Mapping[str, str]) -> str | None:
    """A ``r_basis.note`` in French (a note Vigie has no words for is not shown in English)."""
    if not note:
        return None
    for pattern, words in _NOTES:
        if m := pattern.match(note):
            return words(m, names)
    return "les cas confirmés n'étaient pas utilisables (motif détaillé dans le résultat JSON)"


def _quantiles(q: Mapping[str, float] | None) -> str:
    if not q or q.get("median") is None:
        return "–"
    return (f"{_fr(q['median'])} (intervalle à 90 % : {_fr(q.get('q05'))} – "
            f"{_fr(q.get('q95'))})")


def r_now_fr(entry: Mapping[str, Any], code: str, names: Mapping[str, str]) -> dict[str, Any]:
    """One territory's R now in French: the numbers, its basis and one sentence saying where
    it came from (whose cases or admissions, the département's deviation kept, the fall-back
    and why)."""
    info = entry.get("r_basis") or {}
    basis, source = info.get("basis") or "", info.get("source") or code
    note = note_fr(info.get("note"), names)
    own = source == code
    r_source = _fr(info.get("r_source")) if info.get("r_source") is not None else None
    if basis == "cases":
        text = ("R actuel estimé à partir des cas confirmés (tests positifs SI-DEP) "
                + _of(code, names) if own else
                "R actuel estimé à partir des cas confirmés de sa région, "
                + _where(source, names) + (f", dont le R des cas est {r_source}" if r_source
                                           else ""))
    elif basis == "admissions":
        text = ("R actuel estimé à partir des hospitalisations " + _of(code, names)
                if own else
                "R actuel estimé à partir des hospitalisations de sa région, "
                + _where(source, names) + (f", dont le R des hospitalisations est {r_source}"
                                           if r_source else ""))
    else:
        text = "R actuel estimé à partir des seules hospitalisations " + _of(code, names)
    shrink = info.get("shrink")
    if basis and not own and shrink is not None:
        kept = "entier" if shrink >= 1 else f"à {_fr(100 * shrink, 0)} %"
        text += (" ; corrigé de l'écart du département à sa région mesuré sur les "
                 f"hospitalisations, conservé {kept}")
        if shrink < 1:
            text += " (le reste est ramené vers la région : sur 7 jours, les hospitalisations " \
                    "d'un département sont bruitées)"
    if note:
        text += f". Les cas confirmés n'ont pas servi : {note}"
    elif basis == "admissions":
        text += " (le scénario demande les hospitalisations : rt_basis admissions)"
    return {"basis": basis or "admissions_own", "source": source, "text": text + ".",
            "note": note, "r_now": _quantiles(entry.get("r_now")),
            "r_now_median": (entry.get("r_now") or {}).get("median"),
            "r_now_admissions": _quantiles(entry.get("r_now_admissions")),
            "r_now_admissions_median": (entry.get("r_now_admissions") or {}).get("median")}


def _citation(source: str) -> str:
    """'Alizon et al. 2021 (Eurosurveillance 26(28))' from a prior's English source text."""
    return source.split("): ")[0] + ")" if "): " in source else source


def levers_fr(levers: Mapping[str, Any] | None, code: str,
              names: Mapping[str, str]) -> list[str]:
    """The vaccination and variant levers of a run as they apply to ``code``, one French
    sentence each ([] when the scenario uses neither)."""
    out = []
    vac = (levers or {}).get("vaccination")
    if vac:
        now = (vac.get("coverage_now") or {}).get(code)
        start = "" if vac.get("start_coverage", "cube") == "cube" else " (valeur du scénario)"
        text = (f"Vaccination : couverture (au moins une dose) de {_fr(now, 1)} % à la date "
                f"de départ{start}, portée à {_fr(vac.get('coverage'), 1)} % le "
                f"{_date(str(vac.get('by')))}, chaque dose protégeant après "
                f"{vac.get('protection_delay_days')} jours ; effet sur R d'une couverture "
                f"complète : −{_fr(100 * vac['effect'], 1)} % (écart-type "
                f"{_fr(100 * vac.get('effect_sd', 0), 0)} points), "
                f"{_citation(str(vac.get('prior', '')))}")
        if vac.get("hindsight"):
            text += ", publié après la date de départ (connu a posteriori)"
        out.append(text + ".")
    var = (levers or {}).get("variant")
    if var:
        preset = next((k for k, v in VARIANT_PRIORS.items()
                       if v[2] == var.get("advantage_source")), None)
        reference = (f"{VARIANT_REFERENCE_FR[preset]}, {_citation(var['advantage_source'])}"
                     if preset else "par rapport aux souches en circulation, valeur donnée "
                                    "par le scénario")
        text = (f"Variant {var.get('name')} : transmissibilité supérieure de "
                f"{_fr(100 * var['advantage'], 0)} % (écart-type "
                f"{_fr(100 * var.get('advantage_sd', 0), 0)} points) {reference} ; part "
                f"actuelle {_fr((var.get('share_now') or {}).get(code), 1)} %")
        if var.get("share") == "cube":
            mutation = str(var.get("share_indicator") or "").removeprefix("variant_share_")
            where = (var.get("share_from") or {}).get(code)
            text += (f" des tests positifs criblés {_of(where, names)} — "
                     f"{MUTATIONS_FR.get(mutation, mutation)}")
        else:
            text += " (donnée par le scénario)"
        out.append(text + f", attribuée aux contaminations {var.get('share_lag_days')} jours "
                          "avant le test.")
    return out


def explain_run(run: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """Per territory of a finished run (``/api/v1/scenarios/runs/<id>``): its R now and the
    levers, in French."""
    summary = run.get("summary") or {}
    return {code: {"name": _where(code, names), **r_now_fr(entry, code, names),
                   "levers": levers_fr(run.get("levers"), code, names)}
            for code, entry in summary.items()}
