"""The dashboard in a real browser (headless Debian Chromium driven by Playwright).

One server and one browser for the module: the real ``create_app`` serving a home that shares
the session's real cube, with baseline forecasts made here (fast) and a scheduler that runs the
scenarios submitted from the page. Screenshots go to ``tests/_artifacts/`` (gitignored).

Chromium comes from Debian, installed by ``make browser`` (``tests/browser_setup.sh``, a
prerequisite of ``make test``); the tests skip, saying so, when it is missing, and never install
anything. Playwright's own browser download is never used.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from features.settings import Settings
from tests.dashboard_french import problems

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = {"overview": "/", "territory": "/territoire/69", "scenarios": "/scenarios",
         "precision": "/precision", "methods": "/methodes"}


def _ensure_chromium() -> None:
    """Skip, with the reason, when Debian's Chromium is missing (``make browser`` installs it)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: run `make browser` (Debian chromium + chromium-driver via "
                    "apt-get; `make test` does it first)")


def _forecasts(settings: Settings) -> None:
    """Baseline forecasts (the fast model) of what the pages draw, plus past national runs for
    the accuracy page. Uncalibrated: calibration is the models' business, tested there."""
    from models.forecasting import forecast
    from models.preparation import default_opener, prepare
    from models.registry import get_registry
    from models.store import ForecastStore
    from models.targets import get_target, to_hub

    opener, registry = default_opener(settings), get_registry(settings)
    store = ForecastStore.from_settings(settings)
    spec = registry.get("baseline")

    def save(name: str, frequency: str, level: str, day: pd.Timestamp,
             territories: list[str] | None = None) -> None:
        target = get_target(name, frequency)
        fc, meta = forecast(target, level, day, "baseline", opener, registry=registry,
                            calibrate=False, territories=territories)
        meta.update(target=name, frequency=frequency, level=level, model=spec.name,
                    model_version=spec.version)
        store.save(to_hub(fc, target, day), meta)

    def next_day(name: str, frequency: str, level: str) -> pd.Timestamp:
        target = get_target(name, frequency)
        y, _ = prepare(opener(target.frequency, None), target, level)
        day = pd.Timestamp(y["date"].values[-1]) + pd.Timedelta(days=1)
        if target.unit == "wk":
            day += pd.Timedelta(days=(0 - day.weekday()) % 7)
        return day

    # Past national runs first: the live run of the same kind must be the newest.
    for day in pd.date_range("2021-09-06", periods=4, freq="14D"):
        save("inc_hosp", "weekly", "national", day)
    for name, frequency, levels in (("inc_hosp", "weekly", ("national", "department")),
                                    ("icu", "daily", ("national", "department")),
                                    ("hosp", "daily", ("national", "department")),
                                    ("er_visits", "weekly", ("national", "region"))):
        for level in levels:
            save(name, frequency, level, next_day(name, frequency, level))


@pytest.fixture(scope="module")
def dash_home(real_cube: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home with the real cube's vintage (no second ingest) and baseline forecasts."""
    from tests.api_fixtures import home_sharing

    settings = home_sharing(real_cube, tmp_path_factory.mktemp("dashboard_home"))
    _forecasts(settings)
    return settings


@pytest.fixture(scope="module")
def tokens(dash_home: Settings) -> dict[str, str]:
    from features.catalog import get_engine
    from service.auth import create_token

    engine = get_engine(dash_home.database_url)
    return {role: create_token(engine, f"browser-{role}", role)
            for role in ("analyst", "planner")}


def _retrospective_rows() -> list[dict]:
    """A small synthetic retrospective track record (two targets, three levels, two periods)."""
    rows = []
    for target, frequency, horizons in (("inc_hosp", "weekly", (1, 2, 3, 4)),
                                        ("icu", "daily", (7, 14))):
        for level, base in (("national", 0.5), ("region", 0.7), ("department", 0.8)):
            for period, start, end, shift in (("development", "2020-09-07", "2021-02-22", 0.05),
                                              ("held_out", "2021-03-01", "2021-11-29", 0.0)):
                for k, h in enumerate(horizons):
                    rows.append({"target": target, "frequency": frequency, "level": level,
                                 "period": period, "start": start, "end": end, "horizon": h,
                                 "relative_wis": round(base + shift + 0.1 * k, 3),
                                 "coverage_50": 0.47, "coverage_90": 0.86, "n_forecasts": 40,
                                 "model": "ensemble", "model_version": "1.3",
                                 "computed_at": "2026-11-30T10:00:00+00:00"})
    return rows


@pytest.fixture(scope="module")
def retrospective(dash_home: Settings):
    """``models/retrospective.json`` in the dashboard's home (the layout models.trackrecord
    writes; the page reads it through ``models.trackrecord.load_retrospective``)."""
    from models.trackrecord import load_retrospective

    dash_home.models_dir.mkdir(parents=True, exist_ok=True)
    path = dash_home.models_dir / "retrospective.json"
    path.write_text(json.dumps({"computed_at": "2026-11-30T10:00:00+00:00", "model": "ensemble",
                                "model_version": "1.3", "rows": _retrospective_rows(),
                                "failed": []}))
    assert len(load_retrospective(dash_home)) == len(_retrospective_rows())
    return path


@contextmanager
def served(app) -> Iterator[str]:
    """``app`` under waitress on a free loopback port: its base URL; the server closed and the
    app's scheduler (if it runs one) stopped afterwards."""
    from waitress.server import create_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = create_server(app, host="127.0.0.1", port=port, threads=8)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.close()
        scheduler = app.extensions["vigie"].scheduler
        if scheduler is not None:
            scheduler.stop()


@pytest.fixture(scope="module")
def server(dash_home: Settings, tokens, retrospective):
    """The real app under waitress on a free loopback port, its scheduler running."""
    from service.app import create_app

    app = create_app({"SETTINGS": dash_home, "RATELIMIT_ENABLED": False,
                      "START_SCHEDULER": True,
                      "SCHEDULER": {"dispatch_interval": 0.3, "lock_ttl": 10.0,
                                    "schedules": {"ingest": None, "backtest": None}}})
    with served(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="pip install -r requirements.txt (playwright)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watch:
    """A page with its console errors and failed requests recorded."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(
            f"request failed: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.errors.append(
            f"HTTP {r.status}: {r.url}"))

    def clean(self) -> None:
        assert self.errors == [], self.errors


def _page(browser, token: str | None = None) -> Watch:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="fr-FR",
                                  accept_downloads=True)
    if token:
        context.add_init_script(f"sessionStorage.setItem('vigie.token', {token!r});")
    return Watch(context.new_page())


@contextmanager
def _visit(browser, url: str, token: str | None = None, *, clean: bool = True) -> Iterator[Watch]:
    """A fresh page (as ``token``'s holder, if given) opened at ``url``; at the end its console
    must be clean (no error, no failed request) unless ``clean=False``, and it is closed."""
    watch = _page(browser, token)
    watch.page.goto(url)
    try:
        yield watch
        if clean:
            watch.clean()
    finally:
        watch.page.context.close()


def _shot(watch: Watch, name: str) -> None:
    watch.page.screenshot(path=str(ARTIFACTS / f"dashboard_{name}.png"), full_page=True)


def _wait(page, expression: str, timeout: float = 60_000) -> None:
    """Wait until ``expression`` (JavaScript) is truthy in the page. Polled from here with
    ``page.evaluate``: Playwright's ``wait_for_function`` evaluates its predicate with
    ``eval`` inside the page, which the service's Content-Security-Policy forbids. The deadline
    only guards against a hang (no speed is asserted: bench/dashboard.py measures it)."""
    import time

    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout / 1000:g} s: {expression}")
        page.wait_for_timeout(50)


def _wait_drawn(page, selector: str, timeout: float = 60_000) -> None:
    _wait(page, f"() => !!(document.querySelector({selector!r}) && "
                f"document.querySelector({selector!r}).dataset.drawn)", timeout)


#: What a reader sees or hears once the scripts have run: the page's text (not <code>), the
#: accessible names and titles, the charts' text and the chart toolbar's tooltips.
SHOWN_TEXT = """() => {
  const body = document.body.cloneNode(true);
  body.querySelectorAll('code, script, style, template').forEach(e => e.remove());
  const parts = [document.body.innerText.length ? body.textContent : ''];
  document.querySelectorAll('[aria-label], [title], [data-title], [placeholder]').forEach(e => {
    for (const a of ['aria-label', 'title', 'data-title', 'placeholder']) {
      if (e.getAttribute(a)) { parts.push(e.getAttribute(a)); }
    }
  });
  return parts.join('\\n');
}"""


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_clean(browser, server, name: str) -> None:
    """Every page loads with no console error, no failed request, and in French once its
    scripts have run (page data, chart axes and toolbars included)."""
    with _visit(browser, server + PAGES[name]) as watch:
        ready = {"overview": "#national-chart", "territory": "#chart-icu",
                 "precision": "#groups"}.get(name)
        if ready:
            _wait_drawn(watch.page, ready)
        watch.page.wait_for_load_state("networkidle")
        _shot(watch, name)
        assert watch.page.locator("h1").first.inner_text()
        assert watch.page.locator("html").get_attribute("lang") == "fr"
        assert problems(watch.page.evaluate(SHOWN_TEXT)) == []


def test_map_shows_every_departement(browser, server, dash_home: Settings) -> None:
    from features.store import CubeStore

    ds = CubeStore(dash_home).open("yearly")
    departements = {str(c) for c, lvl in zip(ds["territory"].values, ds["territory_level"].values,
                                             strict=True) if lvl == "department"}
    assert len(departements) == 101
    with _visit(browser, server + "/") as watch:
        _wait_drawn(watch.page, "#national-chart")
        deps = watch.page.locator("#map a.dep")
        codes = set(deps.evaluate_all("els => els.map(e => e.dataset.code)"))
        assert codes == departements
        levels = deps.evaluate_all("els => els.map(e => e.dataset.level)")
        # Baseline ICU forecasts and DREES beds exist for (nearly) every département.
        assert sum(level != "unknown" for level in levels) >= 95, levels
        # Geographic shapes, painted in their level's colour (not the grey of "unknown").
        fills = deps.evaluate_all("els => els.map(e => getComputedStyle(e.querySelector('path'))"
                                  ".fill)")
        assert sum(f not in ("rgb(217, 217, 217)", "") for f in fills) >= 95, fills
        boxes = {code: watch.page.locator(f'#map a.dep[data-code="{code}"] path').bounding_box()
                 for code in ("29", "67", "2A", "974")}
        assert boxes["29"]["x"] < boxes["67"]["x"]  # Finistère west of Bas-Rhin
        assert boxes["2A"]["y"] > boxes["67"]["y"]  # Corse-du-Sud south of Bas-Rhin
        assert boxes["974"]["y"] > boxes["2A"]["y"]  # La Réunion in the insets, under the mainland
        assert all(b["width"] > 5 and b["height"] > 5 for b in boxes.values()), boxes
        label = watch.page.locator('#map a.dep[data-code="13"]').get_attribute("aria-label")
        assert label.startswith("Bouches-du-Rhône (13) : niveau "), label
        _shot(watch, "overview_map")
        # Clicking a département opens its Territoire page.
        watch.page.locator('#map a.dep[data-code="13"]').click()
        watch.page.wait_for_url("**/territoire/13")
        _wait_drawn(watch.page, "#chart-icu")
        _shot(watch, "territory_13_from_map")


def test_fan_chart_draws_its_bands(browser, server) -> None:
    with _visit(browser, server + "/territoire/69") as watch:
        for key in ("admissions", "beds", "icu", "er"):
            _wait_drawn(watch.page, f"#chart-{key}")
        metas = watch.page.evaluate(
            "() => document.getElementById('chart-icu').data.map(t => t.meta)")
        for part in ("observed", "band90", "band50", "median", "capacity"):
            assert part in metas, metas
        fills = watch.page.locator("#chart-icu path.js-fill").evaluate_all(
            "els => els.filter(e => (e.getAttribute('d') || '').length > 20).length")
        assert fills >= 2  # the 90 % and 50 % bands are painted
        meta = watch.page.locator("#meta-icu").inner_text()
        assert "modèle « méthode naïve »" in meta and "version des données" in meta
        # Dates dd/mm/yyyy on the axis, French numbers.
        ticks = watch.page.locator("#chart-icu .xtick text").all_inner_texts()
        assert ticks and all(len(t.split("/")) == 3 for t in ticks if t), ticks
        with watch.page.expect_download() as download:
            watch.page.locator('button.dl-csv[data-panel="icu"]').click()
        text = Path(download.value.path()).read_text(encoding="utf-8-sig")
        assert text.startswith("date;territoire;série") and "/20" in text
        _shot(watch, "territory_69_bands")


def test_territory_signals_next_to_admissions(browser, server) -> None:
    """France: incidence, positivity, R(t) band from cases, growth and vaccination drawn;
    Rhône: incidence estimated from screening (dashed, said so and how, its région's beside
    it), no positivity (said in words, no empty chart), R(t) from admissions."""
    with _visit(browser, server + "/territoire/FR") as watch:
        page = watch.page
        for key in ("incidence", "positivity", "rt", "growth", "variants", "vaccination"):
            _wait_drawn(page, f"#chart-{key}")
            drawn = page.evaluate(f"document.querySelector('#chart-{key}').dataset.drawn")
            assert drawn == "1", key
        metas = page.evaluate("() => document.getElementById('chart-rt').data.map(t => t.meta)")
        for part in ("band", "rt-basis-1", "threshold"):
            assert part in metas, metas
        assert "à partir des cas confirmés" in page.locator("#note-rt").inner_text() or \
            "hospitalisations" in page.locator("#note-rt").inner_text()
        growth = page.locator("#note-growth").inner_text()
        assert "% par jour" in growth and "Calculé à partir des cas confirmés." in growth
        assert "dose" in page.locator("#note-vaccination").inner_text()
        assert "Niveau de risque au" in page.locator("#risk-line").inner_text()
        _shot(watch, "territory_FR_signals")
        page.goto(server + "/territoire/69")
        _wait_drawn(page, "#chart-rt")
        _wait_drawn(page, "#chart-incidence")
        _wait_drawn(page, "#chart-positivity")
        assert page.evaluate("document.querySelector('#chart-incidence').dataset.drawn") == "1"
        traces = page.evaluate("() => document.getElementById('chart-incidence').data"
                               ".map(t => [t.meta, t.name, (t.line || {}).dash || 'solid'])")
        assert ["estimate", "tous âges, estimé à partir du criblage", "dash"] in traces, traces
        assert ["comparison", "Auvergne-Rhône-Alpes : taux de la région", "dot"] in traces, traces
        note = page.locator("#note-incidence").inner_text()
        assert "(tous âges, estimé à partir du criblage)" in note
        assert "Taux estimé par Vigie" in note
        assert "Estimation disponible du 06/06/2021" in note
        assert "avant, pas de taux d'incidence quotidien pour ce territoire" in note
        assert "criblage" in page.locator("#meta-incidence").inner_text()
        assert page.evaluate("document.querySelector('#chart-positivity').dataset.drawn") == "empty"
        assert not page.locator("#chart-positivity").is_visible()
        assert "Pas de taux de positivité" in page.locator("#meta-positivity").inner_text()
        assert "Calculé à partir des hospitalisations." in page.locator("#note-growth").inner_text()
        rt_note = page.locator("#note-rt").inner_text()
        assert "estimé à partir des hospitalisations" in rt_note, rt_note
        assert "R(t) à partir des hospitalisations" in page.evaluate(
            "() => document.getElementById('chart-rt').data.map(t => t.name).join('|')")
        _shot(watch, "territory_69_signals")


def test_signal_notes_never_state_a_value_that_is_missing(browser, server) -> None:
    """Guadeloupe: its R(t) and growth series are dated but hold no value (too few cases, or
    masked); the notes say there is no value, never "R(t) = –" nor "croissance de 0,0 %"
    (null × 100), and the incidence note gives the last day with a value."""
    import re

    with _visit(browser, server + "/territoire/971") as watch:
        page = watch.page
        for key in ("rt", "growth", "incidence"):
            _wait_drawn(page, f"#chart-{key}")
        empty = page.evaluate("() => ['rt', 'growth'].filter(k => document.getElementById("
                              "'chart-' + k).data.every(t => t.meta === 'threshold' || "
                              "(t.y || []).every(v => v === null)))")
        assert empty, "Guadeloupe's R(t) or growth now has values: choose another territory"
        for key in ("rt", "growth", "incidence"):
            note = page.locator(f"#note-{key}").inner_text()
            assert not re.search(r"(=|:) –|– –", note), (key, note)
            if key in empty:
                assert note.startswith("Pas de valeur publiée pour ce territoire"), (key, note)
        assert "0,0 % par jour" not in page.locator("#note-growth").inner_text()


def test_map_colours_by_risk_level(browser, server) -> None:
    with _visit(browser, server + "/") as watch:
        page = watch.page
        _wait_drawn(page, "#national-chart")
        assert not page.locator("#legend-risk").is_visible()
        page.check('input[name="colour-by"][value="risk"]')
        assert page.evaluate("document.getElementById('map').dataset.mode") == "risk"
        assert page.locator("#legend-risk").is_visible()
        assert not page.locator("#legend-capacity").is_visible()
        risks = page.locator("#map a.dep").evaluate_all("els => els.map(e => e.dataset.risk)")
        assert len(risks) == 101 and sum(r != "-1" for r in risks) >= 90, risks
        fill = page.evaluate("getComputedStyle(document.querySelector("
                             "'#map a.dep:not([data-risk=\"-1\"]) path')).fill")
        assert fill not in ("rgb(217, 217, 217)", "")  # coloured, not the unknown grey
        assert "Niveau de risque au" in page.locator("#risk-meta").inner_text()
        # Départements have no daily cases: their incidence is estimated from screening, and said.
        assert "estimé à partir des tests positifs du criblage pour 101 département(s)" in \
            page.locator("#risk-meta").inner_text()
        assert "Taux d'incidence sur 7 jours (estimé" in \
            page.locator("#risk-table tbody").text_content()
        assert "(du " in page.locator("#risk-date-range").inner_text()
        page.fill("#risk-date", "02/11/2020")
        page.dispatch_event("#risk-date", "change")
        _wait(page, "() => document.getElementById('risk-meta').textContent"
                    ".includes('02/11/2020')")
        assert "criblage" not in page.locator("#risk-meta").inner_text()  # before June 2021
        assert problems(page.evaluate(SHOWN_TEXT)) == []  # risk legend, table, labels
        _shot(watch, "overview_risk")


def test_scenario_runs_from_the_page(browser, server, tokens) -> None:
    with _visit(browser, server + "/scenarios", tokens["planner"]) as watch:
        page = watch.page
        page.wait_for_selector("#run-selected")
        page.check("#pick-status_quo")
        page.check("#pick-curfew_18h")
        page.select_option("#run-territory", "69")
        page.click("#run-selected")
        page.wait_for_selector("#progress-box:not([hidden])")
        assert "Scénario n°" in page.locator("#progress-text").inner_text()
        _wait(page, "() => (document.querySelector('#compare-chart').dataset.runs || '')"
                    ".split(',').filter(Boolean).length === 2", timeout=180_000)
        metas = page.evaluate(
            "() => document.getElementById('compare-chart').data.map(t => t.meta)")
        assert metas.count("band90") == 2 and "capacity" in metas
        assert page.locator("#compare-table tbody tr").count() == 2
        # R actuel and R from admissions in the table; where R actuel came from and the levers
        # (none in these two) under it, in French.
        cells = page.locator("#compare-table tbody tr").first.locator("td").all_inner_texts()
        assert all("," in c for c in cells[2:4]), cells  # R medians, French decimals
        assert page.locator("#compare-r .run-r").count() == 2
        said = page.locator("#compare-r").inner_text()
        assert "R actuel estimé à partir des" in said and "sa région" in said
        assert "R estimé sur les seules hospitalisations" in said
        assert "Leviers : aucun" in said
        assert problems(page.evaluate(SHOWN_TEXT)) == []  # runs, comparison, explanations
        _shot(watch, "scenarios_planner_run")


@pytest.mark.parametrize("role", ["public", "analyst"])
def test_role_without_rights_sees_no_planner_controls(browser, server, tokens,
                                                      role: str) -> None:
    with _visit(browser, server + "/scenarios", tokens.get(role)) as watch:
        page = watch.page
        _wait(page, "() => document.body.dataset.role")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.body.dataset.role") == role
        for selector in ("#run-form", "#run-selected", "#editor", "#edit-text", "#library input"):
            assert page.locator(selector).count() == 0, selector
        if role == "analyst":
            assert page.locator("#runs-list").count() == 1  # analysts may read and compare
        else:
            assert page.locator("#runs-list").count() == 0
        _shot(watch, f"scenarios_{role}")


def test_planner_sees_the_editor(browser, server, tokens) -> None:
    with _visit(browser, server + "/scenarios", tokens["planner"], clean=False) as watch:
        page = watch.page
        page.wait_for_selector("#editor")
        page.click("#editor summary")
        page.select_option("#edit-from", "lockdown_2020_11")
        page.click("#edit-load")
        _wait(page, "() => document.getElementById('edit-text').value.includes('lockdown')")
        page.fill("#edit-text", '{"name": "broken", "territories": ["FR"], "horizon_days": -3}')
        page.click("#run-edited")
        # A definition the API refuses is explained on the page (the 400 itself is expected).
        _wait(page, "() => document.getElementById('edit-msg').textContent.length > 0")
        message = page.locator("#edit-msg").inner_text()
        assert message == ("Définition refusée : champ « horizon_days » : -3 est inférieur au "
                           "minimum (1).")
        assert all("400" in e or "status of 400" in e for e in watch.errors), watch.errors


def test_keyboard_path_through_the_map(browser, server) -> None:
    """Tab reaches the map (one stop), arrows move to a neighbour in that direction, typing a
    code jumps to it, the focused département is outlined and read out, Enter opens it."""
    with _visit(browser, server + "/") as watch:
        page = watch.page
        _wait(page, "document.getElementById('map').dataset.painted")
        page.focus('input[name="colour-by"]:checked')
        page.keyboard.press("Tab")
        focused = page.evaluate("() => [document.activeElement.dataset.code, "
                                "document.activeElement.getAttribute('aria-label')]")
        assert focused[0] == "01" and focused[1].startswith("Ain (01) : niveau "), focused
        assert "Ain (01)" in page.locator("#tile-info").inner_text()
        ring = page.locator("#focus-ring")
        assert len(ring.get_attribute("d")) > 50  # the outline follows the focus
        assert float(page.evaluate("getComputedStyle(document.getElementById('focus-ring'))"
                                   ".strokeWidth").replace("px", "")) >= 2

        def at() -> tuple[str, float, float]:
            return page.evaluate("() => { const a = document.activeElement; "
                                 "return [a.dataset.code, +a.dataset.cx, +a.dataset.cy]; }")

        start = at()
        page.keyboard.press("ArrowRight")
        east = at()
        assert east[0] != start[0] and east[1] > start[1], (start, east)
        page.keyboard.press("ArrowDown")
        south = at()
        assert south[2] > east[2], (east, south)
        # One Tab stop: the département left is the only one in the tab order.
        assert page.locator('#map a.dep[tabindex="0"]').count() == 1
        page.keyboard.type("69")
        assert at()[0] == "69"
        assert page.evaluate("document.activeElement.getAttribute('aria-label')").startswith(
            "Rhône (69) : niveau ")
        _shot(watch, "overview_keyboard_focus")
        page.keyboard.press("Enter")
        page.wait_for_url("**/territoire/69")
        _wait_drawn(page, "#chart-icu")


def test_precision_shows_the_retrospective_track_record(browser, server) -> None:
    with _visit(browser, server + "/precision") as watch:
        page = watch.page
        _wait(page, "document.getElementById('retro-groups').dataset.drawn === '2'")
        _wait_drawn(page, "#groups")
        section = page.locator("#retrospective")
        assert "rétrospectif : prévisions refaites après coup sur des données passées" in \
            section.inner_text().lower()
        assert section.locator("article.retro").count() == 2
        table = page.locator("#retro-table-0")
        heads = table.locator("thead th").all_inner_texts()
        assert heads == ["Niveau", "Période", "à 1 semaine", "à 2 semaines", "à 3 semaines",
                         "à 4 semaines"]
        rows = table.locator("tbody tr")
        assert rows.count() == 6
        first = rows.first.locator("th, td").all_inner_texts()
        assert first[:2] == ["France entière", "test (hors échantillon)"]
        assert first[2].startswith("0,50") and "90 % : 86 %" in first[2], first
        assert page.locator("#retro-table-1 thead th").all_inner_texts()[2:] == ["à 7 jours",
                                                                                  "à 14 jours"]
        verdict = section.locator(".verdict").first.inner_text()
        assert verdict.startswith("Sur la période de test (prévisions du 01/03/2021 au "
                                  "29/11/2021), pour la France entière, l'erreur des prévisions à "
                                  "1 semaine valait 0,50 fois celle de la méthode naïve"), verdict
        # Drawn too: one line per level and period, plus the reference at 1.
        names = page.evaluate("() => document.getElementById('retro-0').data.map(t => t.name)")
        assert "France entière, test (hors échantillon)" in names and len(names) == 7
        # Beside it, the live track record of the forecasts published here.
        assert page.locator("#live .tag").inner_text() == "en conditions réelles"
        _shot(watch, "precision_retrospective")
        assert problems(page.evaluate(SHOWN_TEXT)) == []
