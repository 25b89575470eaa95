"""The dashboard's server side: pages, page data, roles, the map, static assets and
compression, French everywhere, the track record (live and retrospective).

Browser behaviour (charts drawn, no console error, keyboard, scenario runs) is in
``test_dashboard_browser.py``.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import brotli
import numpy as np
import pandas as pd
import pytest

from features.settings import Settings
from service.dashboard import france_map
from tests.dashboard_french import displayed_strings, problems, visible_text

ROOT = Path(__file__).resolve().parents[1]

PAGES = ["/", "/territoire/69", "/territoire/FR", "/territoire/R84", "/scenarios", "/precision",
         "/methodes", "/ville", "/ville/200046977"]


def _departements(settings: Settings) -> set[str]:
    from features.store import CubeStore

    ds = CubeStore(settings).open("yearly")
    return {str(c) for c, lvl in zip(ds["territory"].values, ds["territory_level"].values,
                                     strict=True) if lvl == "department"}


def test_map_holds_each_departement_once(api_settings: Settings) -> None:
    codes = france_map.codes()
    assert len(codes) == len(set(codes)) == 101
    assert set(codes) == _departements(api_settings)
    document = france_map.load()
    assert [i["code"] for i in document["insets"]] == ["971", "972", "973", "974", "976"]
    assert {s["code"] for s in document["paris_zoom"]["shapes"]} == {"75", "92", "93", "94"}


def test_map_shapes_lie_in_their_boxes() -> None:
    """Every shape is a closed path inside the viewBox; each overseas shape inside its inset,
    and no mainland shape inside an inset or the Paris box."""
    document = france_map.load()
    _, _, width, height = map(float, document["viewBox"].split())
    boxes = {i["code"]: i["box"] for i in document["insets"]}

    def inside(rings, box, margin=0.5):
        x, y, w, h = box
        return all(x - margin <= px <= x + w + margin and y - margin <= py <= y + h + margin
                   for ring in rings for px, py in ring)

    for dep in document["departements"]:
        assert dep["path"].endswith("z")
        rings = france_map.parse_path(dep["path"])
        assert rings and all(len(r) >= 3 for r in rings), dep["code"]
        assert inside(rings, (0, 0, width, height)), dep["code"]
        if dep["code"] in boxes:
            assert inside(rings, boxes[dep["code"]]), dep["code"]
        else:
            assert not any(inside(rings, box, 0) for box in boxes.values()), dep["code"]
            assert not inside(rings, document["paris_zoom"]["box"], 0), dep["code"]


def test_map_paths_round_absolute_points() -> None:
    """Rounding the absolute points (not the relative steps) keeps shared borders joined: a
    long path of small relative steps ends where it should."""
    steps = " ".join(["0.04,0.04"] * 500)
    rings = france_map.parse_path(f"m 10,10 {steps} z")
    assert rings[0][-1] == pytest.approx((30.0, 30.0))
    again = france_map.parse_path(france_map.format_path(rings))
    assert again[0][-1] == pytest.approx((30.0, 30.0), abs=0.051)
    assert again[0][0] == (10.0, 10.0)


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_in_french(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.data[:300]
    html = response.get_data(as_text=True)
    assert '<html lang="fr">' in html
    assert "cdn" not in html.lower()  # everything is served locally
    assert problems(visible_text(html)) == []
    # Content-Security-Policy friendly: no inline script or handler, no style attribute.
    assert not re.search(r"<script(?![^>]*(\bsrc=|\btype=\"application/json\"))", html)
    assert not re.search(r"\son[a-z]+=|\sstyle=", html)


def test_unknown_territory_is_a_french_404(client) -> None:
    response = client.get("/territoire/20")
    assert response.status_code == 404
    assert "Territoire inconnu" in response.get_data(as_text=True)


def test_territory_picker_works_without_script(client) -> None:
    """« Autre territoire » is a plain GET form (no inline handler under the CSP)."""
    html = client.get("/territoire/69").get_data(as_text=True)
    assert 'id="pick-form" action="/territoire" method="get"' in html and 'name="t"' in html
    response = client.get("/territoire?t=R84")
    assert response.status_code == 302 and response.headers["Location"].endswith("/territoire/R84")
    assert client.get("/territoire").status_code == 200  # France


def test_map_page_draws_every_departement(client) -> None:
    html = client.get("/").get_data(as_text=True)
    assert html.count('class="dep"') == 101
    assert 'href="/territoire/2A"' in html and 'href="/territoire/976"' in html
    # One Tab stop (roving tabindex), a French accessible name on each shape.
    deps = re.findall(r'<a [^>]*class="dep(?:-zoom)?"[^>]*>', html)
    assert len(deps) == 101 + 4  # the mainland and overseas, the enlarged Paris
    assert sum('tabindex="0"' in a for a in deps) == 1
    assert sum('tabindex="-1"' in a for a in deps) == 100 + 4
    assert 'aria-label="Rhône (69)"' in html and 'aria-label="Mayotte (976)"' in html
    # The shapes' licence and attribution are on the page.
    assert "CC BY 4.0" in html and "Victor Cazanave" in html and "MapSVG" in html


def _asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


def test_assets_are_versioned_compressed_and_cached_for_a_year(client) -> None:
    html = client.get("/").get_data(as_text=True)
    urls = _asset_urls(html)
    plotly = next(u for u in urls if "plotly-basic.min.js" in u)
    assert all(re.search(r"\?v=[0-9a-f]{12}$", u) for u in urls), urls
    plain = client.get(plotly)
    assert plain.status_code == 200 and plain.data.startswith(b"/**")
    assert len(plain.data) < 1_500_000  # the partial bundle, not the 4.8 MB full one
    assert plain.headers["Cache-Control"].replace(" ", "") == \
        "public,max-age=31536000,immutable"
    for encoding, decode in (("br", brotli.decompress), ("gzip", gzip.decompress)):
        packed = client.get(plotly, headers={"Accept-Encoding": f"{encoding}, identity"})
        assert packed.headers["Content-Encoding"] == encoding
        assert "Accept-Encoding" in packed.headers["Vary"]
        assert decode(packed.data) == plain.data
        assert len(packed.data) < len(plain.data) / 2.5
    # Without the version (or with an old one): revalidated every time, 304 when unchanged.
    bare = client.get(plotly.split("?")[0])
    assert "no-cache" in bare.headers["Cache-Control"]
    again = client.get(plotly.split("?")[0], headers={"If-None-Match": bare.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/static/js/nope.js").status_code == 404
    assert client.get("/static/../app.py").status_code == 404


def test_pages_and_page_data_are_compressed(client) -> None:
    for path in ("/", "/tableau/donnees/ensemble"):
        plain = client.get(path)
        assert "Content-Encoding" not in plain.headers  # no Accept-Encoding, as before
        packed = client.get(path, headers={"Accept-Encoding": "br"})
        assert packed.headers["Content-Encoding"] == "br"
        assert brotli.decompress(packed.data) == plain.data


def test_scripts_use_only_the_bundled_trace_types() -> None:
    """The partial Plotly bundle has scatter, bar and pie: a page script drawing another trace
    type would fail in the browser."""
    used = set()
    for path in (ROOT / "service/static/js").glob("*.js"):
        used |= set(re.findall(r"\btype:\s*\"(\w+)\"", path.read_text()))
    traces = used - {"date", "category", "linear", "line", "log", "png"}
    assert traces <= {"scatter", "bar", "pie"}, traces


@pytest.mark.parametrize("role", ["public", "analyst", "planner", "admin"])
def test_whoami(client, auth, role: str) -> None:
    body = client.get("/tableau/moi", headers=auth[role]).get_json()
    assert body["role"] == role
    assert body["authenticated"] is (role != "public")


def test_bad_token_is_refused(client) -> None:
    assert client.get("/tableau/moi", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_territory_data_has_four_panels_with_forecast_and_capacity(client, auth) -> None:
    body = client.get("/tableau/donnees/territoire/75").get_json()
    panels = {p["key"]: p for p in body["panels"]}
    assert list(panels) == ["admissions", "beds", "icu", "er", "unemployment"]
    # Social services: the département's unemployment rate (quarterly), its own panel.
    assert panels["unemployment"]["observed"]["available"]
    # Counts that add up carry their rate per 100,000 inhabitants.
    assert any(r is not None for r in panels["admissions"]["observed"]["per_100k"])
    icu = panels["icu"]
    assert icu["observed"]["available"] and icu["observed"]["vintage_id"]
    # The synthetic ICU forecast of the API fixtures: 7 and 14 days ahead, median 800.
    assert icu["forecast"]["available"] and icu["forecast"]["horizons"] == [7, 14]
    # For the public, not more precise than the observation: Paris's ICU beds of 2021-01-15,
    # rebuilt from hidden daily admissions, are hidden, and so is that day's forecast.
    assert icu["forecast"]["q50"] == [800.0, None] and icu["forecast"]["suppressed"] == 1
    analyst = client.get("/tableau/donnees/territoire/75", headers=auth["analyst"]).get_json()
    forecast = {p["key"]: p for p in analyst["panels"]}["icu"]["forecast"]
    assert forecast["q50"] == [800.0, 800.0]
    assert forecast["q05"][0] < forecast["q25"][0] < 800.0
    assert icu["capacity"]["value"] > 0
    # SurSaUD is regional: Paris's panel shows Île-de-France.
    assert panels["er"]["territory"] == "R11"
    # No forecast of hospital beds in the fixtures: said so, in a 200.
    assert panels["beds"]["forecast"]["available"] is False


def test_small_counts_stay_suppressed_for_the_public(client, auth) -> None:
    public = client.get("/tableau/donnees/territoire/48").get_json()
    analyst = client.get("/tableau/donnees/territoire/48", headers=auth["analyst"]).get_json()
    pub_icu = next(p for p in public["panels"] if p["key"] == "icu")["observed"]
    ana_icu = next(p for p in analyst["panels"] if p["key"] == "icu")["observed"]
    assert pub_icu["suppressed"] > 0 and pub_icu["threshold"] == 10
    assert ana_icu["suppressed"] == 0
    shown = [v for v in pub_icu["values"] if v is not None]
    assert all(v == 0 or v >= 10 for v in shown)


def test_overview_data(client) -> None:
    body = client.get("/tableau/donnees/ensemble").get_json()
    alerts = body["alerts"]
    assert alerts["available"]
    assert set(alerts["items"]) == set(france_map.codes())
    assert alerts["items"]["75"]["level"] in ("red", "orange", "yellow", "green")
    assert body["observed"]["available"] and body["forecast"]["available"]


def test_scenario_definition_for_the_editor(client) -> None:
    body = client.get("/tableau/donnees/scenario/lockdown_2020_11").get_json()
    assert body["name"] == "lockdown_2020_11" and body["interventions"]
    assert not any(k.startswith("_") for k in body)  # no server paths
    assert client.get("/tableau/donnees/scenario/nope").status_code == 404


def test_methods_page_lists_sources_licences_and_models(client) -> None:
    html = client.get("/methodes").get_data(as_text=True)
    assert "Licence Ouverte 2.0" in html and "CC BY 4.0" in html
    assert "ensemble" in html and "baseline" in html
    assert "strictement compris entre 0 et 10" in html


def test_every_registered_model_is_described_in_french() -> None:
    """The methods page explains each model a forecast may come from; a new one needs words."""
    from models.registry import get_registry
    from service.dashboard import MODEL_FR

    missing = sorted(set(get_registry().names()) - set(MODEL_FR))
    assert not missing, f"no French description in MODEL_FR for {missing}"
    from service.dashboard import MODEL_NAMES

    assert not sorted(set(get_registry().names()) - set(MODEL_NAMES))
    js = (ROOT / "service/static/js/common.js").read_text()
    short = js[js.index("V.MODEL_FR"):js.index("};", js.index("V.MODEL_FR"))]
    assert all(f"{name}:" in short for name in get_registry().names())


def test_track_record_scores_published_forecasts(real_cube: Settings, tmp_path) -> None:
    """A perfect forecast scores WIS 0, i.e. 0 relative to the baseline; the baseline 1."""
    from features.store import CubeStore
    from models.base import QUANTILES
    from models.store import ForecastStore
    from service.usecases.accuracy import score_runs

    ds = CubeStore(real_cube).open("weekly")
    fr = ds["inc_hosp"].sel(territory="FR").to_series().dropna()
    store = ForecastStore(tmp_path / "forecasts")
    for day in (pd.Timestamp("2021-03-01"), pd.Timestamp("2021-03-15")):
        ends = [day + pd.Timedelta(days=5 + 7 * (h - 1)) for h in (1, 2)]
        for model in ("baseline", "perfect"):
            rows = []
            for h, end in zip((1, 2), ends, strict=True):
                truth = float(fr.loc[end])
                for q in QUANTILES:
                    value = truth if model == "perfect" else truth * (0.5 + q)
                    rows.append((str(day.date()), f"{h} wk ahead inc hosp", str(end.date()), "FR",
                                 "quantile", q, value))
            frame = pd.DataFrame(rows, columns=["forecast_date", "target", "target_end_date",
                                                "location", "type", "quantile", "value"])
            store.save(frame, {"target": "inc_hosp", "frequency": "weekly", "level": "national",
                               "model": model, "model_version": "1", "vintage_id": "x",
                               "as_of": str(day.date())})
    groups = score_runs(store.list_runs(), CubeStore(real_cube))
    assert len(groups) == 1
    group = groups[0]
    assert group["forecast_dates"] == ["2021-03-01", "2021-03-15"]
    summary = {(s["model"], s["horizon"]): s for s in group["summary"]}
    assert summary[("perfect", 1)]["rel_wis"] == 0.0 and summary[("perfect", 1)]["wis"] == 0.0
    assert summary[("baseline", 2)]["rel_wis"] == 1.0
    assert summary[("perfect", 1)]["cov50"] == 1.0
    assert np.isclose(summary[("baseline", 1)]["cov90"], 1.0)  # 0.55×…1.45× truth: covers it
    assert len(group["by_date"]) == 2 * 2 * 2  # models × dates × horizons


# ---------------------------------------------------------------------------- French
def test_every_library_scenario_has_a_french_title_and_description(client) -> None:
    from scenarios import list_library
    from scenarios.schema import load_definition

    html = client.get("/scenarios").get_data(as_text=True)
    for item in list_library():
        definition = load_definition(item["path"])
        title, text = definition.get("title_fr"), definition.get("description_fr")
        assert title and text, f"{item['path']}: title_fr and description_fr needed"
        assert problems(title) == [] and problems(text) == [], item["path"]
        assert title.replace("'", "&#39;") in html
    assert 'lang="en"' not in html


def test_french_keys_are_validated() -> None:
    from scenarios.schema import ScenarioValidationError, validate_definition

    validate_definition({"name": "x", "title_fr": "Essai", "description_fr": "Un essai."})
    with pytest.raises(ScenarioValidationError, match="title_fr"):
        validate_definition({"name": "x", "title_fr": ""})


def test_every_api_error_code_has_a_french_sentence() -> None:
    """The pages say the API's errors with :data:`CODES_FR`: a new code needs words there."""
    from service.dashboard.messages import CODES_FR
    from service.errors import CODES

    raised = set(CODES.values())
    for path in [*(ROOT / "service/api").glob("*.py"), *(ROOT / "service").glob("*.py")]:
        raised |= set(re.findall(r'ApiError\(\s*\d{3},\s*"(\w+)"', path.read_text()))
    assert not sorted(raised - set(CODES_FR))
    assert all(problems(text) == [] for text in CODES_FR.values())


def test_missing_forecast_is_said_in_french() -> None:
    from service.dashboard.messages import reason_fr

    body = {"code": "no_forecast", "message": "no ensemble forecast of icu (daily) at level "
            "department yet", "details": {"target": "icu", "frequency": "daily",
                                          "level": "department", "model": None}}
    text = reason_fr(404, body)
    assert text == ("pas encore de prévision des lits de réanimation occupés (série "
                    "quotidienne) pour les départements : elle apparaîtra après le prochain "
                    "calcul des prévisions")
    assert reason_fr(503, {"code": "no_data", "message": "no cube vintage yet"}).startswith(
        "aucune donnée")
    assert "analyste" in reason_fr(403, {"code": "forbidden", "details": {
        "required_role": "analyst"}})
    assert problems(reason_fr(418, {"message": "I'm a teapot"})) == []


#: Page data the scripts write into the pages, per home.
DATA = ["/tableau/donnees/ensemble", "/tableau/donnees/territoire/69",
        "/tableau/donnees/territoire/FR", "/tableau/donnees/territoire/R84",
        "/tableau/donnees/signaux/69", "/tableau/donnees/signaux/FR",
        "/tableau/donnees/risque?date=2020-11-02", "/tableau/donnees/precision",
        "/tableau/donnees/ville/200046977"]


@pytest.fixture(scope="module")
def fresh_client(real_cube: Settings, tmp_path_factory: pytest.TempPathFactory):
    """A fresh install: the cube ingested, no forecast, no backtest, no scenario run."""
    from service.app import create_app
    from tests.api_fixtures import home_sharing

    settings = home_sharing(real_cube, tmp_path_factory.mktemp("fresh_home"))
    return create_app({"TESTING": True, "SETTINGS": settings,
                       "RATELIMIT_ENABLED": False}).test_client()


@pytest.mark.integration  # its clients (real cube) come through getfixturevalue
@pytest.mark.parametrize("home", ["fresh", "with_forecasts"])
def test_no_english_on_any_page_or_page_data(request, home: str) -> None:
    """Every page and every piece of page data a page shows, on a fresh install (every
    forecast missing: the reasons are said) and with forecasts: no English giveaway, no ISO
    date, no decimal point."""
    client = request.getfixturevalue("fresh_client" if home == "fresh" else "client")
    found = []
    for path in PAGES:
        html = client.get(path).get_data(as_text=True)
        found += [f"{path}: {p}" for p in problems(visible_text(html))]
    for path in DATA:
        response = client.get(path)
        assert response.status_code == 200, (path, response.data[:200])
        for text in displayed_strings(response.get_json()):
            found += [f"{path}: {p}" for p in problems(text)]
    assert found == [], "\n".join(found[:40])


def test_fresh_install_says_what_is_missing_in_french(fresh_client) -> None:
    body = fresh_client.get("/tableau/donnees/ensemble").get_json()
    assert body["alerts"]["available"] is False and body["alerts"]["code"] == "no_forecast"
    assert body["alerts"]["reason"].startswith("pas encore de prévision des lits de réanimation")
    assert body["forecast"]["reason"].startswith("pas encore de prévision des nouvelles "
                                                 "hospitalisations")


# ---------------------------------------------------------------------------- retrospective
def _retro_rows() -> list[dict]:
    rows = []
    for target, frequency, horizons in (("inc_hosp", "weekly", (1, 2, 3, 4)),
                                        ("icu", "daily", (7, 14))):
        for level in ("national", "region", "department"):
            for period, start, end in (("development", "2020-09-07", "2021-02-22"),
                                       ("held_out", "2021-03-01", "2021-11-29")):
                for h in horizons:
                    rows.append({"target": target, "frequency": frequency, "level": level,
                                 "period": period, "start": start, "end": end, "horizon": h,
                                 "relative_wis": round(0.5 + 0.1 * h / max(horizons), 3),
                                 "coverage_50": 0.48, "coverage_90": 0.87,
                                 "n_forecasts": 79, "model": "ensemble",
                                 "model_version": "1.3",
                                 "computed_at": "2026-11-30T10:00:00+00:00"})
    return rows


@pytest.fixture
def retro_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A home of its own holding a synthetic ``models/retrospective.json`` (the layout
    models.trackrecord writes), read by ``models.trackrecord.load_retrospective`` whatever
    home the page is served from."""
    from models.trackrecord import load_retrospective
    from service.usecases import accuracy

    settings = Settings.from_env(home=str(tmp_path / "retro_home"))
    settings.models_dir.mkdir(parents=True)
    (settings.models_dir / "retrospective.json").write_text(json.dumps(
        {"computed_at": "2026-11-30T10:00:00+00:00", "model": "ensemble",
         "model_version": "1.3", "rows": _retro_rows(), "failed": []}))
    monkeypatch.setattr(accuracy, "_load_retrospective",
                        lambda _served: load_retrospective(settings))
    return settings


def test_retrospective_record_groups_rows_for_the_page(client, retro_home) -> None:
    body = client.get("/tableau/donnees/precision").get_json()
    retro = body["retrospective"]
    assert retro["available"] and retro["computed_at"].startswith("2026-11-30")
    titles = [g["title"] for g in retro["groups"]]
    assert titles == ["Nouvelles hospitalisations (hebdomadaire)",
                      "Lits de réanimation occupés (quotidienne)"]
    weekly, daily = retro["groups"]
    assert weekly["horizons"] == [1, 2, 3, 4] and weekly["unit"] == "semaine"
    assert daily["horizons"] == [7, 14] and daily["unit"] == "jour"
    assert [(r["level"], r["period"]) for r in weekly["rows"]] == [
        ("national", "held_out"), ("national", "development"), ("region", "held_out"),
        ("region", "development"), ("department", "held_out"), ("department", "development")]
    cell = weekly["rows"][0]["by_horizon"]["4"]
    assert cell == {"relative_wis": 0.6, "coverage_50": 0.48, "coverage_90": 0.87,
                    "n_forecasts": 79}
    assert [p["label"] for p in weekly["periods"]] == ["développement",
                                                       "test (hors échantillon)"]
    found = [p for text in displayed_strings(body) for p in problems(text)]
    assert found == []


def test_retrospective_not_computed_yet(client, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.usecases import accuracy

    monkeypatch.setattr(accuracy, "_load_retrospective", lambda settings: None)
    retro = client.get("/tableau/donnees/precision").get_json()["retrospective"]
    assert retro["available"] is False and retro["reason"].startswith("pas encore calculé")


def test_page_data_spends_one_unit_of_the_rate_limit(api_settings: Settings) -> None:
    """A page's data takes tens of in-process API calls; the visitor's budget pays for the one
    request the page made, not for each of them."""
    from service.app import create_app

    app = create_app({"TESTING": True, "SETTINGS": api_settings, "RATELIMIT_ENABLED": True,
                      "RATELIMIT_PUBLIC": "5 per minute",
                      "RATELIMIT_KEY_PREFIX": "test-dashboard-budget"})
    client = app.test_client()
    response = client.get("/tableau/donnees/territoire/69",
                          environ_base={"REMOTE_ADDR": "192.0.2.77"})
    assert response.status_code == 200
    panels = {p["key"]: p for p in response.get_json()["panels"]}
    assert panels["icu"]["observed"]["available"], panels["icu"]["observed"]
    assert response.headers["X-RateLimit-Remaining"] == "4"


def test_retrospective_being_computed(client, api_settings: Settings,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A queued trackrecord job: the page says « en cours de calcul », not « pas encore »."""
    from features.catalog import get_engine
    from service.jobs import enqueue
    from service.usecases import accuracy

    monkeypatch.setattr(accuracy, "_load_retrospective", lambda settings: None)
    monkeypatch.setattr("models.trackrecord.read_retrospective", lambda settings: None)
    from service.db import job_runs

    engine = get_engine(api_settings.database_url)
    run_id = enqueue(engine, "trackrecord")
    try:
        retro = client.get("/tableau/donnees/precision").get_json()["retrospective"]
    finally:  # the home is shared by the module's tests: leave no queued run behind
        with engine.begin() as conn:
            conn.execute(job_runs.delete().where(job_runs.c.id == run_id))
    assert retro["available"] is False and retro["reason"].startswith("en cours de calcul")
