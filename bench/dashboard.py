"""Dashboard time to first chart, first visit and repeat visit, on loopback, in headless
Chromium; the partial Plotly bundle the pages load against the full one, in the same run.

    python bench/dashboard.py [--home VIGIE_HOME] [--runs 3] [--no-compare]

Serves the real app (waitress, loopback) on a home that already holds a cube vintage and
forecasts (``make run`` makes one; default ``$VIGIE_HOME`` or ``./var``), then for each page:

* page weight: requests, bytes on the wire (compressed where the server compresses) and
  decoded, every request of the first visit counted (HTML, CSS, JS, Plotly, page data);
* time to first chart: from navigation start to the first Plotly chart drawn
  (``Vigie.firstChartAt``, set by the pages) on a **first visit** (new browser context: empty
  HTTP cache, no compiled code) and on a **repeat visit** (same context, second navigation:
  assets from the browser's cache, immutable, not even revalidated) — median of ``--runs``.

Comparison (unless ``--no-compare``): a second server identical in every way except that its
``vendor/plotly/plotly-basic.min.js`` is the full 4.8 MB bundle (taken from the ``plotly``
Python package when it is installed: ``pip install plotly``), measured the same way; the last
line prints full / partial ratios. Aim: first visit under 1 s. Chromium is Debian's
(``tests/browser_setup.sh``).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = {"Vue d'ensemble": "/", "Territoire (69)": "/territoire/69",
         "Précision": "/precision", "Scénarios": "/scenarios", "Méthodes": "/methodes"}
CHART_PAGES = {"/", "/territoire/69", "/precision"}
BUNDLE = Path("vendor/plotly/plotly-basic.min.js")


def full_bundle() -> Path | None:
    """plotly.min.js (full bundle) of the ``plotly`` Python package, if installed."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    return path if path.exists() else None


def serve(settings, static_folder: Path | None = None) -> tuple[str, object]:
    from waitress.server import create_server

    from service.app import create_app

    app = create_app({"SETTINGS": settings, "RATELIMIT_ENABLED": False})
    if static_folder is not None:
        app.static_folder = str(static_folder)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = create_server(app, host="127.0.0.1", port=port, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{port}", server


def first_chart(page, timeout: float = 30.0) -> float | None:
    """``Vigie.firstChartAt`` once set (polled with ``evaluate``: the service's CSP forbids the
    ``eval`` Playwright's ``wait_for_function`` uses), None if the page draws no chart."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate("() => window.Vigie ? [Vigie.firstChartAt || null, "
                              "!!Vigie.noChart] : [null, false]")
        if value[0]:
            return float(value[0])
        if value[1]:  # the page has no chart to draw (nothing to score yet, no data)
            return None
        page.wait_for_timeout(20)
    return None


def measure(page, url: str, chart: bool) -> dict:
    sizes = {"wire": 0, "decoded": 0, "requests": 0}

    def on_finished(request) -> None:
        sizes["requests"] += 1
        try:
            s = request.sizes()
            sizes["wire"] += s["responseBodySize"] + s["responseHeadersSize"]
            response = request.response()
            sizes["decoded"] += len(response.body()) if response else 0
        except Exception:  # a request cancelled by the next navigation
            pass

    page.on("requestfinished", on_finished)
    page.goto(url)
    first = first_chart(page) if chart else None
    page.wait_for_load_state("networkidle")
    page.remove_listener("requestfinished", on_finished)
    return {**sizes, "first_chart_ms": first}


def run_pages(browser, base: str, runs: int) -> list[tuple]:
    # Warm the server's caches (cube, forecasts, compressed assets) once: the figure is the
    # browser's, not the first request after a restart.
    warm_up = browser.new_page()
    for path in PAGES.values():
        warm_up.goto(base + path)
        warm_up.wait_for_load_state("networkidle")
    warm_up.context.close()
    rows = []
    for name, path in PAGES.items():
        chart = path in CHART_PAGES
        cold, warm, weight = [], [], None
        for _ in range(runs):
            context = browser.new_context()
            page = context.new_page()
            first = measure(page, base + path, chart)
            second = measure(page, base + path, chart)
            context.close()
            weight = weight or first
            if first["first_chart_ms"] is not None:
                cold.append(first["first_chart_ms"])
            if second["first_chart_ms"] is not None:
                warm.append(second["first_chart_ms"])
        rows.append((name, weight, statistics.median(cold) if cold else None,
                     statistics.median(warm) if warm else None))
    return rows


def print_rows(title: str, rows: list[tuple]) -> None:
    def ms(v):
        return f"{v / 1000:.2f} s" if v is not None else "–"

    print(title)
    print(f"  {'page':<18} {'requests':>8} {'on the wire':>12} {'decoded':>10} "
          f"{'1st chart, 1st visit':>21} {'1st chart, repeat':>18}")
    for name, weight, cold_ms, warm_ms in rows:
        print(f"  {name:<18} {weight['requests']:>8} {weight['wire'] / 1e6:>9.2f} MB "
              f"{weight['decoded'] / 1e6:>7.2f} MB {ms(cold_ms):>21} {ms(warm_ms):>18}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="VIGIE_HOME holding a vintage and forecasts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-compare", action="store_true",
                        help="measure the served pages only, not the full Plotly bundle")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from features.settings import Settings
    from features.store import CubeStore
    from service.app import create_app

    settings = Settings.from_env(home=args.home) if args.home else Settings.from_env()
    try:
        CubeStore(settings).current_vintage()
    except LookupError:
        print(f"no cube vintage in {settings.home}: run 'make run' (or python -m service "
              "ingest, then forecast-all) first", file=sys.stderr)
        return 2
    static = Path(create_app({"SETTINGS": settings}).static_folder)
    full = None if args.no_compare else full_bundle()
    if not args.no_compare and full is None:
        print("full Plotly bundle not found (pip install plotly): comparison skipped",
              file=sys.stderr)
    results = {}
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        variants = [("partial", None)]
        if full is not None:
            folder = Path(tmp) / "static"
            shutil.copytree(static, folder)
            shutil.copyfile(full, folder / BUNDLE)
            variants.append(("full", folder))
        for label, folder in variants:
            base, server = serve(settings, folder)
            results[label] = (base, run_pages(browser, base, args.runs))
            server.close()
        browser.close()
    size = (static / BUNDLE).stat().st_size
    base, rows = results["partial"]
    print(f"Dashboard on loopback, home {settings.home}, median of {args.runs} runs")
    print_rows(f"Served: partial Plotly bundle ({size / 1e6:.1f} MB, {BUNDLE.name})", rows)
    if "full" in results:
        _, full_rows = results["full"]
        print_rows(f"Before: full Plotly bundle ({full.stat().st_size / 1e6:.1f} MB), "
                   "everything else identical", full_rows)
        ratios = []
        for (name, _, cold, warm), (_, _, cold_full, warm_full) in zip(rows, full_rows,
                                                                       strict=True):
            if cold and cold_full:
                ratios.append(f"{name}: first visit {cold_full / cold:.1f}×, repeat "
                              f"{(warm_full or 0) / (warm or 1):.1f}×")
        print("Full / partial bundle, time to first chart: " + "; ".join(ratios))
    slow = [name for name, _, cold, _ in rows if cold is not None and cold >= 1000]
    print("First visit, first chart under 1 s: " + ("yes, every chart page" if not slow
                                                    else "no: " + ", ".join(slow)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
