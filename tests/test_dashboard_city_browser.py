"""The city page in a real browser (headless Debian Chromium driven by Playwright, as
``test_dashboard_browser.py``): it loads clean and French, a keyboard reaches an EPCI's page
from the search, and the page draws the EPCI's own indicators (the SYNTHETIC Rennes/Bruz file,
:mod:`tests.city_fixtures`) with their forecast fans, its métropole's incidence and its
département's pressure (beds, ICU beds against capacity, the alert)."""

from __future__ import annotations

import pytest

from features.settings import Settings
from tests.city_fixtures import CITY_INDICATORS, RENNES_METROPOLE
from tests.dashboard_french import problems
from tests.test_dashboard_browser import (
    SHOWN_TEXT,
    _shot,
    _visit,
    _wait,
    _wait_drawn,
    browser,
    served,
)

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the module's browser fixture, shared with the dashboard's tests


@pytest.fixture(scope="module")
def server(city_settings: Settings):
    """The real app under waitress on a free loopback port, serving the city home (shared
    with test_dashboard_city: tests/api_fixtures.py)."""
    from service.app import create_app

    app = create_app({"SETTINGS": city_settings, "RATELIMIT_ENABLED": False,
                      "START_SCHEDULER": False})
    with served(app) as url:
        yield url


def _ready(page) -> None:
    _wait(page, "() => !!document.getElementById('city').dataset.ready", timeout=120_000)


@pytest.mark.parametrize("path", ["/ville", f"/ville/{RENNES_METROPOLE}", "/ville/35047"])
def test_city_pages_load_clean_and_french(browser, server, path: str) -> None:
    with _visit(browser, server + path) as watch:
        if path != "/ville":
            _ready(watch.page)
        watch.page.wait_for_load_state("networkidle")
        _shot(watch, "city" + path.replace("/", "_"))
        assert watch.page.locator("html").get_attribute("lang") == "fr"
        assert problems(watch.page.evaluate(SHOWN_TEXT)) == []


def test_keyboard_reaches_an_epci_and_its_page_draws_everything(browser, server) -> None:
    with _visit(browser, server + "/") as watch:
        page = watch.page
        # The overview loaded (leaving it while its data is in flight aborts that request,
        # which the watch would count as a failed request: seen once in .ci/run).
        page.wait_for_load_state("networkidle")
        # The navigation leads to the city search, by keyboard only.
        for _ in range(20):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent.trim()") == "Villes":
                break
        page.keyboard.press("Enter")
        page.wait_for_url("**/ville")
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "city-q":
                break
        assert page.evaluate("document.activeElement.id") == "city-q"
        page.keyboard.type("Rennes")
        page.keyboard.press("Enter")
        page.wait_for_url("**/ville?q=Rennes")
        # Several places match: the list is reached with Tab, the EPCI opened with Enter.
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent.trim()") == "Rennes Métropole":
                break
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/ville/{RENNES_METROPOLE}")
        _ready(page)
        assert page.locator("h1").inner_text().startswith("Rennes Métropole")
        panels = page.locator("#own-panels .panel.own")
        assert panels.count() == 2
        assert sorted(panels.evaluate_all("els => els.map(e => e.dataset.indicator)")) == \
            list(CITY_INDICATORS)
        food = page.locator('#own-panels [data-indicator="food_aid_requests"]')
        metas = food.locator(".chart").evaluate("el => el.data.map(t => t.meta)")
        for part in ("observed", "band90", "band50", "median"):
            assert part in metas, metas
        figures = food.locator(".figures").inner_text()
        assert "pour 100\u202f000 habitants" in figures and "somme partielle" in figures
        assert "2 commune(s) sur 43" in figures
        assert food.locator(".verdict").inner_text()
        _wait_drawn(page, "#chart-incidence")
        _wait_drawn(page, "#chart-icu")
        icu = page.evaluate("() => document.getElementById('chart-icu').data.map(t => t.meta)")
        assert "capacity" in icu and "median" in icu, icu
        assert page.locator("#pressure-name").inner_text() == "Ille-et-Vilaine (35)"
        assert page.locator("#alert-line").inner_text().startswith("Ille-et-Vilaine")
        assert page.locator("#verdict-unemployment").inner_text()
        _shot(watch, "city_rennes_metropole_keyboard")


def test_territory_page_draws_another_target_forecast_there(browser, server) -> None:
    """Ille-et-Vilaine's Territoire page offers, below its panels, the food-aid requests
    summed from its communes (« Autres prévisions ») and draws them with their forecast fan,
    in French, with no console error."""
    with _visit(browser, server + "/territoire/35") as watch:
        page = watch.page
        _wait_drawn(page, "#chart-other", timeout=120_000)
        assert page.locator("#panel-other").is_visible()
        assert page.locator("#other-target option").all_inner_texts() == [
            "Demandes d'aide alimentaire (hebdomadaire)"]
        traces = page.evaluate("() => document.getElementById('chart-other').data.map(t => t.meta)")
        assert "median" in traces, traces
        # No track record in this home: the verdict says so.
        assert page.locator("#verdict-other").inner_text().startswith("Pas encore évalué")
        assert "somme partielle : 2 commune(s)" in page.locator("#meta-other").inner_text()
        page.wait_for_load_state("networkidle")
        _shot(watch, "territory_35_other_forecast")
        assert problems(page.evaluate(SHOWN_TEXT)) == []
