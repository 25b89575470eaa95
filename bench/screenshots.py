"""Every dashboard page of a running ``serve``, in headless Chromium: a full-page screenshot of
each (docs/figures/), its console errors, the English it shows, its time to first chart.

    python bench/screenshots.py [--base http://127.0.0.1:8000] [--home VIGIE_HOME]
                                [--out docs/figures] [--suffix _en_cours] [--no-scenario-run]

The server is the one ``make run`` starts (or ``python -m service serve``) on a home holding a
cube vintage and forecasts; ``--home`` is that home (default ``$VIGIE_HOME`` or ``./var``): the
script creates a planner token there to run a scenario from the Scénarios page, and revokes it
at the end. The pages are those of the dashboard blueprint: the script stops, naming it, when a
page route of ``service.dashboard`` has no visit below (routes under ``/tableau/`` are page
data, fetched by the pages themselves).

For each visit (a new browser context, 1280 px wide, French locale):

* console errors, uncaught page errors, failed requests and HTTP answers ≥ 400 (the same watch
  as ``tests/test_dashboard_browser.py``; the deliberate 404 page expects its own 404);
* the English, ISO dates, decimal points and unspaced thousands a reader sees or hears once the
  scripts have run (``tests/dashboard_french.py``'s checker on the browser suite's SHOWN_TEXT);
* time to first chart: from navigation start to the first Plotly chart drawn
  (``Vigie.firstChartAt``), ``–`` on pages that draw none; the server warmed first by one
  visit of every page unless ``--no-warm-up`` (a new browser context each time: the browser's
  cache is empty);
* ``<out>/<name><suffix>.png``: full page (the Méthodes page: its first 4,000 pixels, the
  whole is 15,000), reduced to a 256-colour palette (Pillow) and optimised.

Prints one table (page → errors, English, first chart, PNG size) and exits 1 when a page had a
console error or English text. ``--suffix _en_cours`` keeps a second set of screenshots, e.g. the
accuracy page right after ``make run``, while the retrospective track record is computed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard import first_chart  # noqa: E402
from tests.dashboard_french import problems  # noqa: E402
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, SHOWN_TEXT  # noqa: E402

WIDTH = 1280


@dataclass
class Visit:
    """One screenshot: ``path`` visited, ``ready`` (JavaScript) awaited before the shot,
    ``act`` done on the page first (``"risk"``, ``"scenario"``), ``status`` expected."""

    name: str
    path: str
    route: str
    ready: str | None = None
    act: str | None = None
    status: int = 200
    max_height: int | None = None  # a long text page: its first pixels only
    errors: list[str] = field(default_factory=list)
    english: list[str] = field(default_factory=list)
    first_chart_ms: float | None = None
    png_bytes: int = 0


def _drawn(selector: str) -> str:
    return (f"() => !!(document.querySelector({selector!r}) && "
            f"document.querySelector({selector!r}).dataset.drawn)")


PAINTED = "() => !!document.getElementById('map').dataset.painted"
RETRO_DONE = ("() => { const g = document.getElementById('retro-groups'); "
              "return !!(g && (g.dataset.drawn || g.textContent.trim())); }")


def visits() -> list[Visit]:
    return [
        Visit("01_vue_ensemble_alertes", "/", "/", PAINTED),
        Visit("02_vue_ensemble_risque", "/", "/", PAINTED, act="risk"),
        Visit("03_territoire_france", "/territoire", "/territoire", _drawn("#chart-icu")),
        Visit("04_territoire_region_84", "/territoire/84", "/territoire/<code>",
              _drawn("#chart-icu")),
        Visit("05_territoire_rhone_69", "/territoire/69", "/territoire/<code>",
              _drawn("#chart-icu")),
        Visit("06_territoire_guadeloupe_971", "/territoire/971", "/territoire/<code>",
              _drawn("#chart-icu")),
        Visit("07_territoire_inconnu_404", "/territoire/99", "/territoire/<code>", status=404),
        Visit("08_villes", "/ville", "/ville"),
        Visit("09_ville_metropole_lyon_200046977", "/ville/200046977", "/ville/<code>",
              "() => !!(window.Vigie && (Vigie.firstChartAt || Vigie.noChart))"),
        Visit("10_ville_rennes_metropole_243500139", "/ville/243500139", "/ville/<code>",
              "() => !!(window.Vigie && (Vigie.firstChartAt || Vigie.noChart))"),
        Visit("11_scenarios", "/scenarios", "/scenarios", "() => !!document.body.dataset.role"),
        Visit("12_scenarios_execution", "/scenarios", "/scenarios",
              "() => !!document.body.dataset.role", act="scenario"),
        Visit("13_precision", "/precision", "/precision", RETRO_DONE),
        Visit("14_methodes", "/methodes", "/methodes", max_height=4000),
    ]


def page_routes() -> set[str]:
    """The dashboard blueprint's page routes (not its page data under /tableau/)."""
    from flask import Flask

    from service.dashboard import bp

    app = Flask("routes", template_folder=None)
    app.register_blueprint(bp)
    return {rule.rule for rule in app.url_map.iter_rules()
            if rule.endpoint.startswith("dashboard.") and not rule.rule.startswith("/tableau/")}


def _wait(page, expression: str, timeout_s: float) -> bool:
    """Poll ``expression`` (the CSP forbids the eval behind ``wait_for_function``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.evaluate(expression):
            return True
        page.wait_for_timeout(50)
    return False


def _run_scenario(page, visit: Visit) -> None:
    page.wait_for_selector("#run-selected", timeout=30_000)
    page.check("#pick-status_quo")
    page.check("#pick-curfew_18h")
    page.select_option("#run-territory", "69")
    page.click("#run-selected")
    done = ("() => (document.querySelector('#compare-chart').dataset.runs || '')"
            ".split(',').filter(Boolean).length === 2")
    if not _wait(page, done, 300):
        visit.errors.append("scenario runs not drawn after 300 s")


def shoot(browser, base: str, visit: Visit, out: Path, suffix: str,
          token: str | None) -> None:
    context = browser.new_context(viewport={"width": WIDTH, "height": 900}, locale="fr-FR")
    if token and visit.act == "scenario":
        context.add_init_script(f"sessionStorage.setItem('vigie.token', {token!r});")
    page = context.new_page()
    expected = base + visit.path

    def on_response(r) -> None:
        if r.status >= 400 and not (r.status == visit.status and r.url == expected):
            visit.errors.append(f"HTTP {r.status}: {r.url}")

    page.on("console", lambda m: m.type == "error" and not (
        visit.status != 200 and f"status of {visit.status}" in m.text)
        and visit.errors.append(m.text))
    page.on("pageerror", lambda e: visit.errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: visit.errors.append(f"request failed: {r.url} "
                                                           f"{r.failure}"))
    page.on("response", on_response)
    try:
        response = page.goto(expected)
        if response is not None and response.status != visit.status:
            visit.errors.append(f"page answered {response.status}, expected {visit.status}")
        visit.first_chart_ms = first_chart(page, timeout=60)
        if visit.ready and not _wait(page, visit.ready, 120):
            visit.errors.append(f"not ready after 120 s: {visit.ready}")
        if visit.act == "risk":
            page.check('input[name="colour-by"][value="risk"]')
            page.wait_for_timeout(500)
        elif visit.act == "scenario":
            _run_scenario(page, visit)
        page.wait_for_load_state("networkidle")
        visit.english = problems(page.evaluate(SHOWN_TEXT))
        path = out / f"{visit.name}{suffix}.png"
        height = page.evaluate("() => document.documentElement.scrollHeight")
        clip = ({"x": 0, "y": 0, "width": WIDTH, "height": visit.max_height}
                if visit.max_height and height > visit.max_height else None)
        page.screenshot(path=str(path), full_page=True, clip=clip)
        visit.png_bytes = optimise(path)
    except Exception as exc:  # one page's failure is a row of the table, not the end
        visit.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        context.close()


def optimise(path: Path) -> int:
    """Reduce ``path`` to a 256-colour palette PNG, optimised; its size in bytes."""
    try:
        from PIL import Image
    except ImportError:
        return path.stat().st_size
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                              dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    return path.stat().st_size


def planner_token(home: str | None) -> tuple[str, int, object] | None:
    from features.catalog import get_engine
    from features.settings import Settings
    from service.auth import create_token, list_tokens

    settings = Settings.from_env(home=home) if home else Settings.from_env()
    engine = get_engine(settings.database_url)
    name = f"bench-screenshots-{int(time.time())}"
    token = create_token(engine, name, "planner")
    token_id = next(t["id"] for t in list_tokens(engine) if t["name"] == name)
    return token, token_id, engine


def print_table(rows: list[Visit], out: Path, suffix: str) -> None:
    print(f"{'page':<40} {'HTTP':>4} {'console errors':>14} {'English':>7} "
          f"{'1st chart':>9} {'PNG':>8}")
    for v in rows:
        chart = f"{v.first_chart_ms / 1000:.2f} s" if v.first_chart_ms else "–"
        print(f"{v.name + suffix:<40} {v.status:>4} {len(v.errors):>14} {len(v.english):>7} "
              f"{chart:>9} {v.png_bytes / 1000:>5.0f} KB")
    for v in rows:
        for line in v.errors + v.english:
            print(f"  {v.name}: {line}")
    print(f"screenshots in {out}/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the running serve, e.g. http://127.0.0.1:8000 "
                        "(default: the home served here, without the scheduler: no scenario "
                        "run)")
    parser.add_argument("--home", help="its VIGIE_HOME (a planner token is made there)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    parser.add_argument("--suffix", default="", help="added to every PNG name")
    parser.add_argument("--no-scenario-run", action="store_true")
    parser.add_argument("--only", nargs="+", help="names (prefixes) of the visits to make")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="measure the server cold (by default every page is visited once "
                             "first: the time to first chart is then the browser's)")
    args = parser.parse_args()

    plan = visits()
    missing = page_routes() - {v.route for v in plan}
    if missing:
        print(f"dashboard page routes with no visit here: {', '.join(sorted(missing))}",
              file=sys.stderr)
        return 2
    server = None
    if args.base is None:  # serve the home here: no scheduler, so no scenario run
        from bench.dashboard import serve
        from features.settings import Settings

        settings = Settings.from_env(home=args.home) if args.home else Settings.from_env()
        args.base, server = serve(settings)
        args.no_scenario_run = True
    if args.no_scenario_run:
        plan = [v for v in plan if v.act != "scenario"]
    if args.only:
        plan = [v for v in plan if any(v.name.startswith(p) for p in args.only)]
    made = None if args.no_scenario_run else planner_token(args.home)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            if not args.no_warm_up:
                warm = browser.new_page()
                for path in dict.fromkeys(v.path for v in plan):
                    warm.goto(args.base.rstrip("/") + path)
                    warm.wait_for_load_state("networkidle")
                warm.context.close()
            for visit in plan:
                shoot(browser, args.base.rstrip("/"), visit, out, args.suffix,
                      made[0] if made else None)
                print(f"  {visit.name}: {len(visit.errors)} errors, {len(visit.english)} "
                      "English", file=sys.stderr)
            browser.close()
    finally:
        if made:
            from service.auth import revoke_token

            revoke_token(made[2], made[1])
        if server is not None:
            server.close()
    print_table(plan, out, args.suffix)
    return 1 if any(v.errors or v.english for v in plan) else 0


if __name__ == "__main__":
    sys.exit(main())
