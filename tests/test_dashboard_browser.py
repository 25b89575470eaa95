"""The dashboard in a real browser (headless Debian Chromium driven by Playwright).

One server and one browser for the module: the real ``create_app`` serving a home that shares
the session's real cube, with baseline forecasts made here (fast) and a scheduler that runs the
scenarios submitted from the page. Screenshots go to ``tests/_artifacts/`` (gitignored).

Chromium comes from Debian (``tests/browser_setup.sh``, run here when it is missing);
Playwright's own browser download is never used.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pandas as pd
import pytest

from features.settings import Settings

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = {"overview": "/", "territory": "/territoire/69", "scenarios": "/scenarios",
         "precision": "/precision", "methods": "/methodes"}


def _ensure_chromium() -> None:
    """Install Debian's Chromium when missing (CI machines start without it)."""
    if Path(CHROMIUM).exists():
        return
    script = Path(__file__).resolve().parent / "browser_setup.sh"
    if shutil.which("apt-get") is None:
        pytest.skip("no /usr/bin/chromium and no apt-get to install it (Debian 'chromium')")
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not Path(CHROMIUM).exists():
        pytest.skip(f"could not install Chromium with {script}: {done.stderr[-500:]}")


def _forecasts(settings: Settings) -> None:
    """Baseline forecasts (the fast model) of what the pages draw, plus past national runs for
    the accuracy page. Uncalibrated: calibration is the models' business, tested there."""
    from models.pipeline import default_opener, forecast, prepare
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
    from tests.api_fixtures import copy_catalog

    home = tmp_path_factory.mktemp("dashboard_home")
    settings = Settings.from_env(home=str(home), data_dir=str(real_cube.data_dir),
                                 database_url=f"sqlite:///{home}/vigie.sqlite")
    copy_catalog(real_cube, settings)
    _forecasts(settings)
    return settings


@pytest.fixture(scope="module")
def tokens(dash_home: Settings) -> dict[str, str]:
    from features.catalog import get_engine
    from service.auth import create_token

    engine = get_engine(dash_home.database_url)
    return {role: create_token(engine, f"browser-{role}", role)
            for role in ("analyst", "planner")}


@pytest.fixture(scope="module")
def server(dash_home: Settings, tokens):
    """The real app under waitress on a free loopback port, its scheduler running."""
    from waitress.server import create_server

    from service.app import create_app

    app = create_app({"SETTINGS": dash_home, "RATELIMIT_ENABLED": False,
                      "START_SCHEDULER": True,
                      "SCHEDULER": {"dispatch_interval": 0.3, "lock_ttl": 10.0,
                                    "schedules": {"ingest": None, "backtest": None}}})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = create_server(app, host="127.0.0.1", port=port, threads=8)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    srv.close()
    scheduler = app.extensions["vigie"].scheduler
    if scheduler is not None:
        scheduler.stop()


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


def _shot(watch: Watch, name: str) -> None:
    watch.page.screenshot(path=str(ARTIFACTS / f"dashboard_{name}.png"), full_page=True)


def _wait_drawn(page, selector: str, timeout: float = 20_000) -> None:
    page.wait_for_function(
        f"document.querySelector({selector!r}) && "
        f"document.querySelector({selector!r}).dataset.drawn", timeout=timeout)


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_clean(browser, server, name: str) -> None:
    watch = _page(browser)
    watch.page.goto(server + PAGES[name])
    ready = {"overview": "#national-chart", "territory": "#chart-icu",
             "precision": "#groups"}.get(name)
    if ready:
        _wait_drawn(watch.page, ready)
    watch.page.wait_for_load_state("networkidle")
    _shot(watch, name)
    assert watch.page.locator("h1").first.inner_text()
    assert watch.page.locator("html").get_attribute("lang") == "fr"
    watch.clean()
    watch.page.context.close()


def test_map_shows_every_departement(browser, server, dash_home: Settings) -> None:
    from features.store import CubeStore

    ds = CubeStore(dash_home).open("yearly")
    departements = {str(c) for c, lvl in zip(ds["territory"].values, ds["territory_level"].values,
                                             strict=True) if lvl == "department"}
    assert len(departements) == 101
    watch = _page(browser)
    watch.page.goto(server + "/")
    _wait_drawn(watch.page, "#national-chart")
    tiles = watch.page.locator("#map .tile")
    codes = set(tiles.evaluate_all("els => els.map(e => e.dataset.code)"))
    assert codes == departements
    levels = tiles.evaluate_all("els => els.map(e => e.dataset.level)")
    # Baseline ICU forecasts and DREES beds exist for (nearly) every département.
    assert sum(level != "unknown" for level in levels) >= 95, levels
    assert watch.page.locator("#map .tile rect").first.bounding_box()["width"] > 10
    # Clicking a tile opens its Territoire page.
    watch.page.locator('#map .tile[data-code="13"]').click()
    watch.page.wait_for_url("**/territoire/13")
    _wait_drawn(watch.page, "#chart-icu")
    _shot(watch, "territory_13_from_map")
    watch.clean()
    watch.page.context.close()


def test_fan_chart_draws_its_bands(browser, server) -> None:
    watch = _page(browser)
    watch.page.goto(server + "/territoire/69")
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
    assert "baseline" in meta and "version des données" in meta
    # Dates dd/mm/yyyy on the axis, French numbers.
    ticks = watch.page.locator("#chart-icu .xtick text").all_inner_texts()
    assert ticks and all(len(t.split("/")) == 3 for t in ticks if t), ticks
    with watch.page.expect_download() as download:
        watch.page.locator('button.dl-csv[data-panel="icu"]').click()
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert text.startswith("date;territoire;série") and "/20" in text
    _shot(watch, "territory_69_bands")
    watch.clean()
    watch.page.context.close()


def test_territory_signals_next_to_admissions(browser, server) -> None:
    """France: incidence, positivity, R(t) band from cases, growth and vaccination drawn;
    Rhône: incidence estimated from screening (dashed, said so and how, its région's beside
    it), no positivity (said in words, no empty chart), R(t) from admissions."""
    watch = _page(browser)
    page = watch.page
    page.goto(server + "/territoire/FR")
    for key in ("incidence", "positivity", "rt", "growth", "variants", "vaccination"):
        _wait_drawn(page, f"#chart-{key}")
        assert page.evaluate(f"document.querySelector('#chart-{key}').dataset.drawn") == "1", key
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
    assert "(tous âges, estimé à partir du criblage)" in note and "Taux estimé par Vigie" in note
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
    watch.clean()
    page.context.close()


def test_map_colours_by_risk_level(browser, server) -> None:
    watch = _page(browser)
    page = watch.page
    page.goto(server + "/")
    _wait_drawn(page, "#national-chart")
    assert not page.locator("#legend-risk").is_visible()
    page.check('input[name="colour-by"][value="risk"]')
    assert page.evaluate("document.getElementById('map').dataset.mode") == "risk"
    assert page.locator("#legend-risk").is_visible()
    assert not page.locator("#legend-capacity").is_visible()
    risks = page.locator("#map .tile").evaluate_all("els => els.map(e => e.dataset.risk)")
    assert len(risks) == 101 and sum(r != "-1" for r in risks) >= 90, risks
    fill = page.evaluate("getComputedStyle(document.querySelector("
                         "'#map .tile:not([data-risk=\"-1\"]) rect')).fill")
    assert fill not in ("rgb(217, 217, 217)", "")  # coloured, not the unknown grey
    assert "Niveau de risque au" in page.locator("#risk-meta").inner_text()
    # Départements have no daily cases: their incidence is estimated from screening, and said.
    assert "estimé à partir des tests positifs du criblage pour 101 département(s)" in \
        page.locator("#risk-meta").inner_text()
    assert "Taux d'incidence sur 7 jours (estimé" in \
        page.locator("#risk-table tbody").text_content()
    page.fill("#risk-date", "2020-11-02")
    page.dispatch_event("#risk-date", "change")
    page.wait_for_function("() => document.getElementById('risk-meta').textContent"
                           ".includes('02/11/2020')")
    assert "criblage" not in page.locator("#risk-meta").inner_text()  # before June 2021
    _shot(watch, "overview_risk")
    watch.clean()
    page.context.close()


def test_scenario_runs_from_the_page(browser, server, tokens) -> None:
    watch = _page(browser, tokens["planner"])
    page = watch.page
    page.goto(server + "/scenarios")
    page.wait_for_selector("#run-selected")
    page.check("#pick-status_quo")
    page.check("#pick-curfew_18h")
    page.select_option("#run-territory", "69")
    page.click("#run-selected")
    page.wait_for_selector("#progress-box:not([hidden])")
    assert "Scénario n°" in page.locator("#progress-text").inner_text()
    page.wait_for_function(
        "() => (document.querySelector('#compare-chart').dataset.runs || '').split(',')"
        ".filter(Boolean).length === 2", timeout=90_000)
    metas = page.evaluate("() => document.getElementById('compare-chart').data.map(t => t.meta)")
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
    _shot(watch, "scenarios_planner_run")
    watch.clean()
    page.context.close()


@pytest.mark.parametrize("role", ["public", "analyst"])
def test_role_without_rights_sees_no_planner_controls(browser, server, tokens,
                                                      role: str) -> None:
    watch = _page(browser, tokens.get(role))
    page = watch.page
    page.goto(server + "/scenarios")
    page.wait_for_function("() => document.body.dataset.role")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.body.dataset.role") == role
    for selector in ("#run-form", "#run-selected", "#editor", "#edit-text", "#library input"):
        assert page.locator(selector).count() == 0, selector
    if role == "analyst":
        assert page.locator("#runs-list").count() == 1  # analysts may read and compare
    else:
        assert page.locator("#runs-list").count() == 0
    _shot(watch, f"scenarios_{role}")
    watch.clean()
    page.context.close()


def test_planner_sees_the_editor(browser, server, tokens) -> None:
    watch = _page(browser, tokens["planner"])
    page = watch.page
    page.goto(server + "/scenarios")
    page.wait_for_selector("#editor")
    page.click("#editor summary")
    page.select_option("#edit-from", "lockdown_2020_11")
    page.click("#edit-load")
    page.wait_for_function("() => document.getElementById('edit-text').value.includes('lockdown')")
    page.fill("#edit-text", '{"name": "broken", "territories": ["FR"], "horizon_days": -3}')
    page.click("#run-edited")
    # A definition the API refuses is explained on the page (the 400 itself is expected).
    page.wait_for_function("() => document.getElementById('edit-msg').textContent.length > 0")
    message = page.locator("#edit-msg").inner_text()
    assert "Définition refusée" in message and "horizon_days" in message
    assert all("400" in e or "status of 400" in e for e in watch.errors), watch.errors
    page.context.close()

