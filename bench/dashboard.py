"""Dashboard page weight and time to first chart, on loopback, in headless Chromium.

    python bench/dashboard.py [--home VIGIE_HOME] [--runs 3]

Serves the real app (waitress, loopback) on a home that already holds a cube vintage and
forecasts (``make run`` makes one; default ``$VIGIE_HOME`` or ``./var``), then for each page:

* page weight: bytes on the wire (gzip where the server compresses) and decoded, every request
  of the page counted (HTML, CSS, JS, Plotly, page data);
* time to first chart: from navigation start to the first Plotly chart drawn
  (``Vigie.firstChartAt``, set by the pages), cold (new browser profile: empty HTTP and code
  caches) and warm (same profile, second visit) — median of ``--runs``.

Aim: under 1 s on loopback. Chromium is Debian's (``tests/browser_setup.sh``).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = {"Vue d'ensemble": "/", "Territoire (69)": "/territoire/69",
         "Précision": "/precision", "Scénarios": "/scenarios", "Méthodes": "/methodes"}
CHART_PAGES = {"/", "/territoire/69", "/precision"}


def serve(settings) -> tuple[str, object]:
    from waitress.server import create_server

    from service.app import create_app

    app = create_app({"SETTINGS": settings, "RATELIMIT_ENABLED": False})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = create_server(app, host="127.0.0.1", port=port, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{port}", server


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
    first = None
    if chart:
        page.wait_for_function("window.Vigie && window.Vigie.firstChartAt", timeout=60_000)
        first = page.evaluate("Vigie.firstChartAt")
    page.wait_for_load_state("networkidle")
    page.remove_listener("requestfinished", on_finished)
    return {**sizes, "first_chart_ms": first}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="VIGIE_HOME holding a vintage and forecasts")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from features.settings import Settings
    from features.store import CubeStore

    settings = Settings.from_env(home=args.home) if args.home else Settings.from_env()
    try:
        CubeStore(settings).current_vintage()
    except LookupError:
        print(f"no cube vintage in {settings.home}: run 'make run' (or python -m service "
              "ingest, then forecast) first", file=sys.stderr)
        return 2
    base, server = serve(settings)
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        # Warm the server's caches (cube, forecasts, compressed Plotly) once: the figure is
        # the browser's, not the first request after a restart.
        warm_up = browser.new_page()
        for path in PAGES.values():
            warm_up.goto(base + path)
            warm_up.wait_for_load_state("networkidle")
        warm_up.context.close()
        for name, path in PAGES.items():
            chart = path in CHART_PAGES
            cold, warm, weight = [], [], None
            for _ in range(args.runs):
                context = browser.new_context()
                page = context.new_page()
                first = measure(page, base + path, chart)
                second = measure(page, base + path, chart)
                context.close()
                weight = weight or first
                if chart:
                    cold.append(first["first_chart_ms"])
                    warm.append(second["first_chart_ms"])
            rows.append((name, weight, statistics.median(cold) if cold else None,
                         statistics.median(warm) if warm else None))
        browser.close()
    server.close()
    print(f"Dashboard on loopback ({base}), home {settings.home}, median of {args.runs} runs")
    print(f"{'page':<18} {'requests':>8} {'on the wire':>12} {'decoded':>10} "
          f"{'1st chart cold':>15} {'1st chart warm':>15}")
    for name, weight, cold_ms, warm_ms in rows:
        def ms(v):
            return f"{v / 1000:.2f} s" if v is not None else "–"

        print(f"{name:<18} {weight['requests']:>8} {weight['wire'] / 1e6:>9.2f} MB "
              f"{weight['decoded'] / 1e6:>7.2f} MB {ms(cold_ms):>15} {ms(warm_ms):>15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
