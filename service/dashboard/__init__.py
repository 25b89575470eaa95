"""The dashboard: decision-makers' pages and the public transparency pages, in French.

Pages (server-rendered shells, charts drawn in the browser with the vendored partial Plotly
bundle ``static/vendor/plotly`` — no CDN, no network; assets versioned, cached and compressed by
:mod:`service.dashboard.assets`):

=========================  ==============================================================
``/``                      Vue d'ensemble: map of France (département shapes, overseas insets,
                           :mod:`service.dashboard.france_map`) coloured by alert or risk level,
                           keyboard-navigable, with its text table; national admissions curve
                           with its forecast fan
``/territoire/<code>``     Territoire: observed series and 50 %/90 % forecast fans for
                           admissions, beds, ICU beds, emergency visits; capacity; next to
                           admissions the epidemic signals (incidence, positivity, R(t) with
                           its credible interval and basis, growth and doubling time,
                           vaccination); unemployment; downloads. France, régions,
                           départements, EPCI
``/ville``                 Villes: find an EPCI or a commune (name or code, a plain GET
                           form), the EPCIs and communes with indicators of their own
``/ville/<code>``          Ville: an EPCI's or a commune's own indicators (sums of its
                           communes with their coverage, per 100,000 inhabitants) with
                           forecast fans and whether Vigie beats the naive baseline, its
                           métropole's incidence, its département's hospital pressure and
                           unemployment (:mod:`service.usecases.city_reads`)
``/scenarios``             Scénarios: library, editor and runs (planner), comparison, and
                           for each run where R now came from and the levers used
``/precision``             Précision des prévisions (public): the retrospective track record
                           (backtests by target, level, period and horizon) and the published
                           forecasts scored once their outcome is known
``/methodes``              Méthodes et données (public): sources, licences, suppression,
                           model cards, what is logged
=========================  ==============================================================

Where the numbers come from
---------------------------
The JSON the pages draw (``/tableau/donnees/…``) is assembled from the service's own API
(``/api/v1/…``), called in-process with the caller's ``Authorization`` header and address: the
same suppression of small counts for the public, the same audit rows, the same response cache
and rate limits as any API client. A missing forecast becomes ``{"available": false, "reason":
…}`` in a 200 answer, so that a page never logs a failed request; the API itself keeps its 404.
The reason is French, built from the API error's code and details
(:func:`service.dashboard.messages.reason_fr`), never the API's English message.

Roles
-----
The browser keeps the API token in ``sessionStorage`` (the « Jeton » form) and sends it as a
Bearer header; ``/tableau/moi`` says which role it carries. The planner's controls (edit and run
scenarios) are only built into the page for ``planner`` or above. That is convenience, not
security: the API refuses scenario runs below ``planner`` whatever the page shows.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
)

from service.dashboard import assets, france_map
from service.dashboard.accuracy import page_data as precision_page
from service.dashboard.messages import (
    FREQUENCIES_FR,
    reason_fr,
    source_fr,
    thin_all,
    thin_html,
)
from service.usecases.accuracy import accuracy as forecast_accuracy

bp = Blueprint("dashboard", __name__)


def init_app(app) -> None:
    """Register the dashboard on ``app``: its pages and page data, versioned and compressed
    static assets, compressed HTML and JSON (:mod:`service.dashboard.assets`)."""
    app.register_blueprint(bp)
    assets.init_app(app)


#: Navigation: (endpoint, title, public?)
NAV = (
    ("dashboard.overview", "Vue d'ensemble"),
    ("dashboard.territory_default", "Territoire"),
    ("dashboard.city_default", "Villes"),
    ("dashboard.scenarios", "Scénarios"),
    ("dashboard.precision", "Précision des prévisions"),
    ("dashboard.methods", "Méthodes et données"),
)

LEVEL_OF = {"country": "national", "region": "region", "department": "department"}

#: The panels of the Territoire page: what is observed, what is forecast, at which frequency.
PANELS: tuple[dict[str, Any], ...] = (
    {"key": "admissions", "title": "Nouvelles hospitalisations", "unit": "patients par semaine",
     "indicator": "inc_hosp", "frequency": "weekly", "target": "inc_hosp",
     "target_frequency": "weekly"},
    {"key": "beds", "title": "Lits d'hospitalisation occupés", "unit": "lits occupés",
     "indicator": "hosp", "frequency": "daily", "target": "hosp", "target_frequency": "daily",
     "capacity_note": "Vigie ne dispose pas de la capacité en lits d'hospitalisation "
                      "conventionnelle : pas de ligne de capacité."},
    {"key": "icu", "title": "Lits de réanimation occupés", "unit": "lits occupés",
     "indicator": "icu", "frequency": "daily", "target": "icu", "target_frequency": "daily",
     "capacity": "icu_beds_adult",
     "capacity_label": "Lits de réanimation adultes (DREES)"},
    {"key": "er", "title": "Passages aux urgences pour Covid-19",
     "unit": "pour 100 000 passages", "indicator": "er_visits_covid_rate",
     "frequency": "weekly", "target": "er_visits", "target_frequency": "weekly",
     "regional": True},
    {"key": "unemployment", "title": "Services sociaux : taux de chômage",
     "unit": "% de la population active", "indicator": "unemployment_rate",
     "frequency": "quarterly", "target": "unemployment", "target_frequency": "quarterly",
     "window": 3650},
)

#: Territory levels with a Territoire page (EPCI: the métropoles' published incidence).
PAGE_LEVELS = ("country", "region", "department", "epci")

#: The epidemic-signal panels of the Territoire page, drawn next to admissions: each lists the
#: daily indicators it draws (``role``: line, band bounds, or text only) and, in French, what
#: to say when the territory has none of them.
SIGNALS: tuple[dict[str, Any], ...] = (
    {"key": "incidence", "title": "Taux d'incidence sur 7 jours",
     "unit": "cas pour 100 000 habitants",
     "series": (("incidence_rate_7d", "line", "tous âges"),
                ("incidence_rate_7d_65_plus", "line", "65 ans et plus")),
     "source": "Santé publique France, SI-DEP : taux publiés (métropoles, Bourgogne-Franche-"
               "Comté) ou calculés par Vigie à partir des cas et de la population INSEE",
     # Départements have no daily cases: from June 2021 Vigie estimates their incidence from
     # screening (docs/CUBE_CONTRACT.md), drawn as such, with their région's for comparison.
     "estimate": ("incidence_rate_7d_estimated", "tous âges, estimé à partir du criblage"),
     "estimate_note": "Taux estimé par Vigie, le département n'ayant pas de cas quotidiens : "
                      "ses tests positifs du criblage sur 7 jours, convertis en personnes avec "
                      "le nombre de personnes positives par test positif de sa région sur les "
                      "mêmes 7 jours (SI-DEP), pour 100 000 habitants (population INSEE).",
     "estimate_source": "Santé publique France, criblage des tests positifs et SI-DEP ; "
                        "estimation de Vigie",
     "comparison_label": "{name} : taux de la région",
     "missing": "Pas de taux d'incidence quotidien pour ce territoire : les dépistages (SI-DEP) "
                "sont publiés pour la France, les régions, les 22 métropoles et les "
                "départements de Bourgogne-Franche-Comté, et Vigie l'estime pour les "
                "départements à partir du criblage (depuis juin 2021)."},
    {"key": "positivity", "title": "Taux de positivité des tests sur 7 jours", "unit": "%",
     "series": (("positivity_rate_7d", "line", "taux de positivité"),),
     "source": "Santé publique France, SI-DEP : taux publiés ou calculés par Vigie à partir des "
               "cas et des tests",
     "missing": "Pas de taux de positivité pour ce territoire : il est publié pour la France, "
                "les régions et les départements de Bourgogne-Franche-Comté."},
    {"key": "rt", "title": "Nombre de reproduction R(t)", "unit": "sans unité",
     "series": (("rt", "line", "R(t)"), ("rt_lower", "lower", "borne basse 95 %"),
                ("rt_upper", "upper", "borne haute 95 %"),
                ("epidemic_basis", "text", "base de l'estimation")),
     "source": "Calcul de Vigie (équation de renouvellement, Cori et al. 2013) à partir des cas "
               "confirmés de Santé publique France (SI-DEP) ou des hospitalisations (SI-VIC)",
     "missing": "Pas d'estimation de R(t) pour ce territoire (trop peu de cas et "
                "d'hospitalisations, ou aucune série)."},
    {"key": "growth", "title": "Croissance de l'épidémie", "unit": "% par jour",
     "series": (("growth_rate", "line", "taux de croissance"),
                ("doubling_time", "text", "temps de doublement")),
     "source": "Calcul de Vigie : évolution des cas (SI-DEP) ou des hospitalisations (SI-VIC) "
               "d'une semaine sur l'autre",
     "missing": "Pas de taux de croissance pour ce territoire."},
    {"key": "variants", "title": "Variants : part des tests positifs criblés",
     "unit": "% des tests criblés",
     "series": (("variant_share_l452r", "line", "mutation L452R (Delta)"),
                ("variant_share_a0c0", "line", "ni E484K ni L452R (Omicron)"),
                ("variant_share_e484k", "line", "mutation E484K")),
     "source": "Santé publique France, criblage des tests positifs (fenêtres de 7 jours ; "
               "nouveau schéma de criblage en novembre 2021)",
     "missing": "Pas de criblage des variants pour ce territoire (publié par département à "
                "partir de 2021, sommé pour les régions et la France)."},
    {"key": "vaccination", "title": "Couverture vaccinale (au moins une dose)",
     "unit": "% de la population",
     "series": (("vaccination_coverage_dose1", "line", "au moins une dose"),),
     "source": "Santé publique France, VAC-SI : premières doses cumulées par département, "
               "rapportées par Vigie à la population INSEE",
     "missing": "Pas de donnée de vaccination pour ce territoire : elle est publiée par "
                "département (et sommée pour les régions et la France)."},
)

#: Every signal is Santé publique France data (or Vigie's computation from it).
SIGNALS_LICENCE = "Licence Ouverte 2.0"

LEVEL_WORDS = {"red": "rouge", "orange": "orange", "yellow": "jaune", "green": "vert",
               "unknown": "inconnu"}


# ---------------------------------------------------------------------------- helpers
def _state():
    return current_app.extensions["vigie"]


def _api(path: str, **params: Any) -> tuple[int, dict]:
    """Call the service's own API in-process as the current caller (see module docstring).

    The call is marked internal: the caller's page-data request already spent one unit of its
    rate-limit budget, and a page's data takes tens of API calls (every page of every series),
    which must not spend one each."""
    from service.ratelimit import INTERNAL_REQUEST

    headers = {}
    auth = request.headers.get("Authorization")
    if auth:
        headers["Authorization"] = auth
    client = current_app.test_client()
    response = client.get(path, query_string={k: v for k, v in params.items() if v is not None},
                          headers=headers,
                          environ_base={"REMOTE_ADDR": request.remote_addr or "127.0.0.1",
                                        INTERNAL_REQUEST: True})
    body = response.get_json(silent=True)
    return response.status_code, body if isinstance(body, dict) else {}


def _unavailable(status: int, body: dict) -> dict:
    """A failed API answer as page data: its code, and a French sentence for the page."""
    return {"available": False, "status": status, "code": body.get("code"),
            "reason": reason_fr(status, body)}


def _territories() -> dict[str, dict]:
    """Code → territory row of the served vintage ({} before the first ingest)."""
    from service.api.lookups import territory_table
    from service.errors import ApiError

    try:
        return territory_table()
    except ApiError:
        return {}


def _territory_or_404(code: str) -> tuple[dict[str, dict], dict]:
    """The served territories (:func:`_territories`) and ``code``'s row; 404 when ``code`` is
    not one of them."""
    table = _territories()
    row = table.get(code)
    if row is None:
        abort(404)
    return table, row


def _series(indicator: str, frequency: str, code: str) -> dict:
    """One observed series from ``/api/v1/data`` (all pages) as parallel lists."""
    dates: list[str] = []
    values: list[float | None] = []
    rates: list[float | None] = []
    coverage = None
    suppressed = 0
    page, meta = 1, {}
    while True:
        status, body = _api("/api/v1/data", indicator=indicator, frequency=frequency,
                            territory=code, per_page=1000, page=page)
        if status != 200:
            return _unavailable(status, body)
        meta = body
        for item in body.get("items", []):
            dates.append(item["date"])
            values.append(item["value"])
            rates.append(item.get("per_100k"))
            coverage = item.get("coverage") or coverage
            suppressed += bool(item.get("suppressed"))
        info = body.get("pagination") or {}
        if page >= int(info.get("pages", 1)):
            break
        page += 1
    return {"available": bool(dates), "reason": None if dates else "aucune observation",
            "dates": dates, "values": values, "suppressed": suppressed,
            "per_100k": rates if any(r is not None for r in rates) else None,
            "coverage": _coverage_words(coverage),
            "threshold": meta.get("suppression_threshold"), "units": meta.get("units"),
            "source": source_fr(meta.get("source")), "licence": source_fr(meta.get("licence")),
            "vintage_id": meta.get("vintage_id")}


def _coverage_words(coverage: dict | None) -> dict | None:
    """The latest coverage of a sum of communes (``/api/v1/data``), and whether it is a
    partial sum (:func:`features.cube.is_partial`); None for any other series."""
    from features.cube import is_partial

    if not coverage or "population_share" not in coverage:
        return None
    return {**coverage, "partial": is_partial(coverage)}


def _verdict(target: str, frequency: str) -> str | None:
    """Whether Vigie beats the naive baseline for ``target``, in French (the target listing's
    verdict, :mod:`service.usecases.targets`), or None when the listing has no such target."""
    from service.api.context import context
    from service.errors import ApiError
    from service.usecases.targets import target_entry

    try:
        entry = target_entry(context(), target, frequency)
    except (ApiError, KeyError, LookupError):
        return None
    return ((entry or {}).get("verdict") or {}).get("text_fr")


#: Quantile levels drawn: 90 % band, 50 % band, median.
BAND_LEVELS = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}


def _forecast(target: str, frequency: str, code: str) -> dict:
    """The latest forecast of ``target`` for ``code`` from ``/api/v1/forecasts``."""
    status, body = _api("/api/v1/forecasts", target=target, frequency=frequency,
                        territory=code, per_page=100)
    if status != 200:
        return _unavailable(status, body)
    items = sorted(body.get("items", []), key=lambda i: i["target_end_date"])
    if not items:
        return {"available": False, "reason": "aucune prévision pour ce territoire"}
    out: dict[str, Any] = {"available": True, "dates": [i["target_end_date"] for i in items],
                           "horizons": [i["horizon"] for i in items],
                           "suppressed": sum(bool(i.get("suppressed")) for i in items)}
    for key, level in BAND_LEVELS.items():
        column = []
        for item in items:
            value = next((q["value"] for q in item["quantiles"]
                          if abs(q["quantile"] - level) < 1e-9), None)
            column.append(value)
        out[key] = column
    run = body.get("run") or {}
    out.update(run_id=run.get("run_id"), model=run.get("model"),
               model_version=run.get("model_version"), vintage_id=run.get("vintage_id"),
               forecast_date=body.get("forecast_date"), created_at=run.get("created_at"))
    return out


def _capacity(indicator: str, code: str, on: str | None = None) -> dict | None:
    """A yearly capacity indicator (DREES beds) for ``code``: the latest value dated on or
    before ``on`` (capacity as it stood when the chart's data end), else the earliest."""
    status, body = _api("/api/v1/data", indicator=indicator, territory=code, per_page=1000)
    if status != 200:
        return None
    items = [i for i in body.get("items", []) if i.get("value") is not None]
    if not items:
        return None
    before = [i for i in items if on is None or i["date"] <= on]
    last = before[-1] if before else items[0]
    return {"value": last["value"], "date": last["date"], "source": body.get("source"),
            "licence": body.get("licence")}


#: Short French names of the models (as ``Vigie.MODEL_FR`` in static/js/common.js).
MODEL_NAMES = {"baseline": "Méthode naïve", "ensemble": "Ensemble Vigie",
               "ets": "Lissage exponentiel (ETS)", "sarimax": "SARIMAX", "prophet": "Prophet",
               "gbm": "Gradient boosting", "growth": "Croissance amortie"}

#: Model cards in plain French (the registry's descriptions are technical, in English).
MODEL_FR = {
    "baseline": "La méthode naïve des centres de prévision européen et américain : demain "
                "ressemble à aujourd'hui ; la fourchette vient des variations passées. C'est "
                "l'étalon de comparaison.",
    "ets": "Lissage exponentiel (tendance amortie) sur une échelle qui stabilise la variance.",
    "sarimax": "Modèle ARIMA saisonnier, avec la mobilité et la sévérité des mesures comme "
               "variables explicatives quand elles aident.",
    "prophet": "Prophet, avec les jours fériés français et des variables explicatives.",
    "gbm": "Modèle d'apprentissage (gradient boosting quantile) entraîné sur tous les "
           "territoires à partir des niveaux, croissances et du calendrier récents, et de "
           "l'évolution des cas positifs et de la positivité des tests (ceux de la région pour "
           "un département) ; un signal interrompu est écarté et signalé.",
    "growth": "Modèle mécaniste : prolonge la croissance récente des hospitalisations, guidée "
              "par celle des cas positifs qui la précède d'environ une semaine, en l'amortissant "
              "de moitié chaque semaine.",
    "ensemble": "Le modèle par défaut : la médiane, quantile par quantile, des autres modèles "
                "(le choix le plus robuste des centres de prévision européen et américain).",
}


@bp.app_template_filter("frdate")
def frdate(value: Any) -> str:
    """ISO date → dd/mm/yyyy (dates are shown the French way everywhere)."""
    text = str(value or "")
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        return f"{text[8:10]}/{text[5:7]}/{text[0:4]}"
    return text or "–"


@bp.app_template_filter("frnum")
def frnum(value: Any) -> str:
    """A number the French way: ``462580`` → ``462 580`` (narrow no-break space)."""
    from service.dashboard.messages import fr_number

    return fr_number(None if value is None else float(value))


# ---------------------------------------------------------------------------- pages
def _page(template: str, **context: Any) -> str:
    from service.dashboard.messages import CODES_FR

    context.setdefault("prefetch", None)
    return thin_html(render_template(template, nav=NAV, codes_fr=CODES_FR, **context))


def _data(payload: Any):
    """A page-data answer: JSON, its text with French thousands separators."""
    return jsonify(thin_all(payload))


@bp.get("/")
def overview():
    """Vue d'ensemble: the map and the national curve."""
    from features.risk import LEVEL_LABELS

    document = france_map.load()
    table = _territories()
    names = {d["code"]: table.get(d["code"], {}).get("name") or d["name"]
             for d in document["departements"]}
    risk_levels = sorted(LEVEL_LABELS.items(), key=lambda kv: (kv[0] < 0, -kv[0]))
    return _page("overview.html", active="dashboard.overview", map=document, names=names,
                 risk_levels=risk_levels, prefetch="/tableau/donnees/ensemble")


@bp.get("/territoire")
def territory_default():
    """Territoire without a code: France; ``?t=CODE`` (the page's « Autre territoire » form,
    which works without script) redirects to that territory."""
    from flask import redirect, url_for

    code = (request.args.get("t") or "").strip()
    if code:
        return redirect(url_for("dashboard.territory", code=code))
    return territory("FR")


@bp.get("/territoire/<code>")
def territory(code: str):
    """Territoire: the four panels for one territory."""
    table = _territories()
    row = table.get(code)
    if row is None or row["level"] not in PAGE_LEVELS:
        return _page("not_found.html", active=None, code=code), 404
    with_epci = _observed_epci()
    choices = sorted(((c, r["name"]) for c, r in table.items()
                      if LEVEL_OF.get(r["level"]) or c in with_epci or c == code),
                     key=lambda cr: (cr[0] != "FR", not cr[0].startswith("R"),
                                     table[cr[0]]["level"] == "epci", cr[0]))
    return _page("territory.html", active="dashboard.territory_default", territory=row,
                 panels=PANELS, signals=SIGNALS, choices=choices,
                 prefetch=f"/tableau/donnees/territoire/{code}")


def _observed_epci() -> set[str]:
    """EPCI with at least one observation of a signal (the métropoles' published incidence)."""
    from service.api.lookups import observed_territories
    from service.errors import ApiError

    try:
        codes = observed_territories("daily", [n for s in SIGNALS for n, _, _ in s["series"]])
    except ApiError:
        return set()
    table = _territories()
    return {c for c in codes if table.get(c, {}).get("level") == "epci"}


def _city_context():
    """The read context of the current request (:mod:`service.usecases.reads`)."""
    from service.api.context import context

    return context()


def _city_directory(departement: str | None) -> tuple[dict, str | None]:
    """Every EPCI (of ``departement`` when given) and the communes with indicators, or why
    there are none yet (French)."""
    from service.errors import ApiError
    from service.usecases.city_reads import city_directory

    try:
        directory = city_directory(_city_context())
    except ApiError as exc:
        return {"epci": [], "communes": []}, reason_fr(exc.status_code, {
            "code": (exc.extra_data or {}).get("code")})
    if departement:
        directory = {"epci": [r for r in directory["epci"] if r["parent"] == departement],
                     "communes": [r for r in directory["communes"]
                                  if r["parent"] == departement]}
    return directory, None


@bp.get("/ville")
def city_default():
    """Villes: find an EPCI or a commune (``?q=`` name or code; one match opens its page,
    several are listed), the EPCIs and communes with indicators of their own
    (``?departement=`` : those of one département). Works without script."""
    from flask import redirect, url_for

    from service.errors import ApiError
    from service.usecases.city_reads import find_cities

    query = " ".join((request.args.get("q") or "").split())[:100]
    departement = (request.args.get("departement") or "").strip()[:3] or None
    context = _city_index_context(query, departement)
    if query and context["reason"] is None:
        try:
            matches = find_cities(_city_context(), query)
        except ApiError:
            matches = []
        if len(matches) == 1:
            return redirect(url_for("dashboard.city", code=matches[0]["code"]))
        context["matches"] = matches
    return _page("city_index.html", active="dashboard.city_default", **context)


def _city_index_context(query: str | None, departement: str | None) -> dict:
    """What the Villes page shows besides search results (see :func:`city_default`)."""
    directory, reason = _city_directory(departement)
    names = {c: r["name"] for c, r in _territories().items()}
    return {"directory": directory, "reason": reason, "query": query, "matches": None,
            "departement": departement, "departement_name": names.get(departement or ""),
            "names": names}


@bp.get("/ville/<code>")
def city(code: str):
    """Ville: one EPCI or commune, drawn from ``/tableau/donnees/ville/<code>``."""
    from service.errors import ApiError
    from service.usecases.city_reads import city_directory, find_cities

    try:
        found = find_cities(_city_context(), code) if len(code) <= 12 else []
    except ApiError:  # nothing ingested yet: the Villes page says so
        return _page("city_index.html", active="dashboard.city_default",
                     **_city_index_context(None, None)), 503
    place = next((p for p in found if p["code"] == code), None)
    if place is None:
        return _page("not_found.html", active=None, code=code, city=True), 404
    try:
        directory = city_directory(_city_context())
    except ApiError:
        directory = {"epci": [], "communes": []}
    return _page("city.html", active="dashboard.city_default", place=place,
                 directory=directory, names={c: r["name"] for c, r in _territories().items()},
                 prefetch=f"/tableau/donnees/ville/{code}")


@bp.get("/tableau/donnees/ville/<code>")
def city_data(code: str):
    """The city page of ``code`` (:func:`service.usecases.city_reads.city_page`), its
    reasons worded in French."""
    from service.errors import ApiError
    from service.usecases.city_reads import city_page

    try:
        page = city_page(_city_context(), code[:12])
    except ApiError as exc:
        if exc.status_code == 404:
            abort(404)
        raise
    return _data(city_words(page))


def city_words(value: Any) -> Any:
    """A city page document for the page: each part that cannot be shown gets its French
    ``reason`` (:func:`~service.dashboard.messages.reason_fr`, its details dropped), sources
    and licences their French words."""
    if isinstance(value, list):
        return [city_words(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: city_words(v) for k, v in value.items() if k != "details"}
    if value.get("available") is False and "code" in value:
        out["reason"] = reason_fr(value.get("status") or 200, {
            "code": value.get("code"), "details": value.get("details") or {}})
    for key in ("source", "licence"):
        if isinstance(out.get(key), str):
            out[key] = source_fr(out[key])
    return out


@bp.get("/scenarios")
def scenarios():
    """Scénarios: library for everyone, runs for analysts, editor and runs for planners."""
    library = scenario_library()
    territories = sorted(((c, r["name"]) for c, r in _territories().items()
                          if LEVEL_OF.get(r["level"])),
                         key=lambda cr: (cr[0] != "FR", not cr[0].startswith("R"), cr[0]))
    return _page("scenarios.html", active="dashboard.scenarios", library=library,
                 territories=territories)


def scenario_library() -> list[dict[str, str]]:
    """The library scenarios with their French title and description (``title_fr``,
    ``description_fr`` in each YAML file; see ``scenarios/README.md``)."""
    from scenarios import list_library
    from scenarios.schema import load_definition

    out = []
    for item in list_library():
        definition = load_definition(item["path"])
        out.append({"name": item["name"],
                    "title": definition.get("title_fr") or f"Scénario « {item['name']} »",
                    "description": definition.get("description_fr")
                    or "Pas encore de description en français."})
    return out


@bp.get("/precision")
def precision():
    """Précision des prévisions (public)."""
    return _page("precision.html", active="dashboard.precision",
                 prefetch="/tableau/donnees/precision")


@bp.get("/methodes")
def methods():
    """Méthodes et données (public), rendered on the server: it must read without script."""
    from service.api.lookups import indicator_entries
    from service.errors import ApiError

    st = _state()
    try:
        indicators = [{**i, "source": source_fr(i.get("source")),
                       "licence": source_fr(i.get("licence"))} for i in indicator_entries()]
        vintage = st.store.current_vintage()
    except (ApiError, LookupError):
        indicators, vintage = [], None
    models = []
    try:
        from models.registry import get_registry

        registry = get_registry(st.settings)
        for name in registry.names():
            spec = registry.get(name)
            models.append({"name": name, "kind": spec.kind, "version": spec.version,
                           "description": spec.description, "params": spec.params,
                           "versions": registry.versions(name)})
    except Exception:  # the page still documents the data without the registry
        current_app.logger.exception("model registry unavailable for the methods page")
    return _page("methods.html", active="dashboard.methods", indicators=indicators,
                 vintage=vintage, models=models, model_fr=MODEL_FR, model_names=MODEL_NAMES,
                 threshold=st.settings.small_count_threshold, risk=_risk_method(st.settings))


def _risk_method(settings) -> dict:
    """The risk levels' thresholds and source (:func:`features.risk.describe`), or why not."""
    from features import risk

    try:
        return {"available": True, **risk.describe(risk.load_thresholds(settings))}
    except risk.RiskThresholdsError as exc:
        current_app.logger.error("risk thresholds unusable: %s", exc)
        return {"available": False, "reason": "le fichier des seuils configuré est invalide "
                                              "(le détail est dans le journal du service)"}


# ---------------------------------------------------------------------------- page data
@bp.get("/tableau/moi")
def whoami():
    """The caller's role (the page asks with the stored token)."""
    from service.auth import current_principal

    principal = current_principal()
    return jsonify({"name": principal.name if principal.authenticated else None,
                    "role": principal.role, "authenticated": principal.authenticated})


@bp.get("/tableau/donnees/ensemble")
def overview_data():
    """Alerts per département and the national admissions curve with its forecast."""
    status, body = _api("/api/v1/alerts", level="department", per_page=200)
    if status == 200:
        alerts = {"available": True, "forecast_date": body.get("forecast_date"),
                  "vintage_id": body.get("vintage_id"), "run_id": body.get("run_id"),
                  "method": body.get("method"),
                  "items": {i["territory"]: {k: i[k] for k in (
                      "level", "p_exceed_7d", "p_exceed_14d", "capacity", "median_7d",
                      "median_14d", "message")} for i in body.get("items", [])}}
    else:
        alerts = _unavailable(status, body)
    return _data({"alerts": alerts, "risk": _risk_map(),
                    "observed": _series("inc_hosp", "weekly", "FR"),
                    "forecast": _forecast("inc_hosp", "weekly", "FR")})


def _risk_map(day: str | None = None) -> dict:
    """Risk level per département on ``day`` (default: the latest day assessed), from
    ``/api/v1/risk``."""
    from service.labels import indicator_fr, risk_estimated_fr

    status, body = _api("/api/v1/risk", level="department", per_page=200, date=day)
    if status != 200:
        return _unavailable(status, body)
    items = {}
    for item in body.get("items", []):
        missing = [indicator_fr(m)[0] for m in item["missing"]]
        estimated = risk_estimated_fr(item)
        message = f"{item['name']} : {item['label']} au {frdate(item['date'])}"
        if estimated:
            message += " ; donnée estimée : " + ", ".join(estimated)
        if missing:
            message += " ; données manquantes : " + ", ".join(missing)
        items[item["territory"]] = {"level": item["level"], "label": item["label"],
                                    "complete": item["complete"], "date": item["date"],
                                    "missing": missing, "estimated": estimated,
                                    "message": message + "."}
    return {"available": True, "date": body.get("date"), "first_date": body.get("first_date"),
            "last_date": body.get("last_date"), "vintage_id": body.get("vintage_id"),
            "levels": body.get("levels"), "thresholds": body.get("thresholds"),
            "items": items}


@bp.get("/tableau/donnees/risque")
def risk_map_data():
    """The risk map on another day (``?date=YYYY-MM-DD``); the API validates the date."""
    return _data(_risk_map(request.args.get("date") or None))


@bp.get("/tableau/donnees/territoire/<code>")
def territory_data(code: str):
    """The four panels of the Territoire page for ``code``."""
    table, row = _territory_or_404(code)
    panels = []
    for spec in PANELS:
        where = code
        if spec.get("regional"):
            where = _region_of(code, table)  # SurSaUD is published for régions and France only
        panel = {k: spec[k] for k in ("key", "title", "unit")}
        panel["territory"] = where
        panel["territory_name"] = table.get(where, {}).get("name", where)
        panel["observed"] = _series(spec["indicator"], spec["frequency"], where)
        if LEVEL_OF.get(table.get(where, {}).get("level")) is None:
            panel["forecast"] = {"available": False,
                                 "reason": "Vigie ne fait pas de prévision pour ce type de "
                                           "territoire (France, régions et départements "
                                           "seulement)"}
        else:
            panel["forecast"] = _forecast(spec["target"], spec["target_frequency"], where)
        observed, fan = panel["observed"], panel["forecast"]
        # The capacity in force on the forecast date (the alerts' own), else when data end.
        on = (fan.get("forecast_date") if fan.get("available") else None) or (
            observed["dates"][-1] if observed.get("available") else None)
        panel["capacity"] = (_capacity(spec["capacity"], where, on) if spec.get("capacity")
                             else None)
        panel["capacity_label"] = spec.get("capacity_label")
        panel["capacity_note"] = spec.get("capacity_note")
        panel["window"] = spec.get("window")
        panel["verdict"] = _verdict(spec["target"], spec["target_frequency"])
        panels.append(panel)
    return _data({"territory": row, "panels": panels, "others": _other_forecasts(code)})


def _other_forecasts(code: str) -> list[dict]:
    """The targets forecast for ``code`` that no panel draws (the « Autres prévisions »
    list: :func:`service.usecases.target_views.forecast_choices`)."""
    from service.usecases.target_views import forecast_choices

    shown = {(spec["target"], spec["target_frequency"]) for spec in PANELS}
    return [{**choice, "frequency_fr": FREQUENCIES_FR[choice["frequency"]]}
            for choice in forecast_choices(_city_context(), code, shown=shown)]


@bp.get("/tableau/donnees/territoire/<code>/prevision")
def territory_target_data(code: str):
    """One of the « Autres prévisions » of ``code`` (``?cible=…&frequence=…``): observations,
    forecast and verdict, as the city page draws its indicators."""
    from service.errors import ApiError
    from service.usecases.target_views import target_view

    _territory_or_404(code)
    target = (request.args.get("cible") or "")[:64]
    frequency = (request.args.get("frequence") or "")[:16]
    try:
        view = target_view(_city_context(), code, target, frequency)
    except ApiError as exc:
        if exc.status_code == 404:
            abort(404)
        raise
    return _data(city_words(view))


def _region_of(code: str, table: dict[str, dict]) -> str:
    """The territory itself when a région or France, else its first ancestor that is."""
    seen = 0
    while code in table and table[code]["level"] not in ("region", "country") and seen < 6:
        code, seen = table[code]["parent"], seen + 1
    return code


@bp.get("/tableau/donnees/signaux/<code>")
def signals_data(code: str):
    """The epidemic-signal panels of the Territoire page for ``code`` (see :data:`SIGNALS`):
    each daily series from ``/api/v1/data`` (the caller's suppression and audit), and whether
    the territory has any of them."""
    table, row = _territory_or_404(code)
    panels = []
    for spec in SIGNALS:
        series = [{"indicator": name, "role": role, "label": label,
                   **_signal_series(name, code)} for name, role, label in spec["series"]]
        panel = {"key": spec["key"], "title": spec["title"], "unit": spec["unit"],
                 "source": spec["source"], "licence": SIGNALS_LICENCE, "estimated": False,
                 "estimate_note": None}
        if spec.get("estimate"):
            _add_estimate(spec, code, table, series, panel)
        available = any(s["available"] for s in series if s["role"] in ("line", "estimate"))
        panels.append({**panel, "available": available,
                       "missing": None if available else spec["missing"], "series": series})
    parent = row["parent"] if row["level"] == "department" else None
    return _data({"territory": row, "panels": panels, "risk": _risk_of(code),
                    "parent": table.get(parent) if parent else None})


def _signal_series(name: str, code: str) -> dict:
    """One daily signal of ``code`` (see :func:`_series`), values to 3 decimals (plenty to
    draw; halves the payload)."""
    observed = _series(name, "daily", code)
    if observed.get("values"):
        observed["values"] = [None if v is None else round(v, 3) for v in observed["values"]]
    return observed


def _add_estimate(spec: dict, code: str, table: dict[str, dict], series: list[dict],
                  panel: dict) -> None:
    """The panel's estimated series (role ``estimate``; it exists only on days the territory
    has no value of its own) and, when there is one, the région's own series of the first
    indicator as a comparison line (role ``comparison``); the panel says how it is made."""
    name, label = spec["estimate"]
    estimate = _signal_series(name, code)
    series.append({"indicator": name, "role": "estimate", "label": label, **estimate})
    if not estimate["available"]:
        return
    panel.update(estimated=True, estimate_note=spec["estimate_note"],
                 source=f"{panel['source']} ; {spec['estimate_source']}")
    region = _region_of(code, table)
    if region != code and region in table:
        own = spec["series"][0][0]
        series.append({"indicator": own, "role": "comparison", "territory": region,
                       "label": spec["comparison_label"].format(name=table[region]["name"]),
                       **_signal_series(own, region)})


def _risk_of(code: str) -> dict:
    """The territory's risk level on the latest day assessed, in French, from the API."""
    from service.labels import indicator_fr, risk_estimated_fr

    status, body = _api("/api/v1/risk", territory=code)
    items = body.get("items") or []
    if status != 200 or not items:
        return _unavailable(status, body) if status != 200 else {
            "available": False, "reason": "aucune évaluation pour ce territoire"}
    item = items[0]
    met = [f"{c['label']}{' (estimé)' if c.get('estimated') else ''} "
           f"{_fr_number(c['value'])} > {c['threshold']:g} {c['units']}"
           for c in item["criteria"] if c["met"] and c["level"] == item["level"]]
    return {"available": item["level"] >= 0, "level": item["level"], "label": item["label"],
            "date": item["date"], "complete": item["complete"], "met": met,
            "missing": [indicator_fr(m)[0] for m in item["missing"]],
            "estimated": risk_estimated_fr(item),
            "reason": None if item["level"] >= 0 else "aucun critère évaluable"}


def _fr_number(value: float | None) -> str:
    from service.dashboard.messages import fr_number

    return fr_number(value, 1)


@bp.get("/tableau/donnees/precision")
def precision_data():
    """Scores of the published forecasts and the retrospective track record
    (:func:`service.usecases.accuracy.accuracy`, worded by :mod:`service.dashboard.accuracy`)."""
    st = _state()
    return _data(precision_page(forecast_accuracy(st.settings, st.freshness())))


@bp.get("/tableau/donnees/execution/<int:run_id>")
def scenario_run_text(run_id: int):
    """A finished scenario run in French, per territory: R now, what it came from (cases or
    admissions, whose, the fall-back and why), R from admissions, the levers used (see
    :mod:`service.dashboard.scenario_text`); the run from the API, with the caller's rights."""
    from service.dashboard.scenario_text import explain_run

    status, body = _api(f"/api/v1/scenarios/runs/{run_id}")
    if status != 200:
        return _data(_unavailable(status, body))
    if body.get("status") != "ok":
        return _data({"available": False, "status": status,
                        "reason": f"exécution n° {run_id} non terminée"})
    names = {c: r["name"] for c, r in _territories().items()}
    return _data({"available": True, "run_id": run_id,
                    "territories": explain_run(body, names)})


@bp.get("/tableau/donnees/scenario/<name>")
def scenario_definition(name: str):
    """A library scenario's definition, to start the editor from."""
    from scenarios import load_library_scenario

    try:
        definition = load_library_scenario(name)
    except KeyError:
        abort(404)
    definition = {k: v for k, v in definition.items() if not k.startswith("_")}
    return current_app.response_class(
        _dumps(definition), mimetype="application/json")


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str, indent=2)
