"""``serve``: the API (and dashboard) behind waitress, a production WSGI server, with the
scheduler running in the process (it runs jobs only while it holds the database lease, so
several ``serve`` processes share one scheduler)."""

from __future__ import annotations

import argparse
import logging
import signal

log = logging.getLogger(__name__)

#: The thread switch interval of a serving process (ms). A request thread that made a system call
#: (the audit journal's write, a lock it waited for) waits for the interpreter lock while another
#: thread runs Python, up to this interval. Authenticated reads of bench/api_load.py, one serve,
#: alternated runs (2026-12-02, load 2-5): with Python's 5 ms p99 61-76 ms, 1,319-1,491 req/s
#: and 12-18 context switches a request; with 0.5 ms p99 37-47 ms, 1,641-1,984 req/s, 9-11.
GIL_SWITCH_MS = 0.5


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="serve the API and dashboard (waitress) and run the scheduled jobs",
        description="Serve the HTTP API on HOST:PORT with waitress. The scheduler starts too, "
                    "unless --no-scheduler: with several processes on one database only the "
                    "holder of the database lease runs jobs.")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    serve.add_argument("--gil-switch-ms", type=float, default=GIL_SWITCH_MS,
                       help="the interpreter's thread switch interval in milliseconds "
                            f"(sys.setswitchinterval; default {GIL_SWITCH_MS:g}, Python's 5)")
    serve.add_argument("--no-scheduler", action="store_true",
                       help="serve only; leave jobs to another process")
    serve.set_defaults(func=cmd_serve)


def warm_up(app) -> None:
    """Load the served vintage's tables before the first client waits for them (requests that
    spend no client's rate-limit budget)."""
    from service.ratelimit import INTERNAL_REQUEST

    with app.test_client() as client:
        for path in ("/api/v1/territories?per_page=1", "/api/v1/indicators?per_page=1"):
            try:
                client.get(path, environ_base={INTERNAL_REQUEST: True})
            except Exception:  # nothing ingested yet: readyz says so, serving goes on
                log.debug("warm-up of %s failed", path, exc_info=True)


def cmd_serve(args: argparse.Namespace) -> int:
    import sys

    from waitress import serve

    from service.app import create_app

    # Queue-depth warnings fire on every burst of concurrent clients: noise, not news.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    if args.gil_switch_ms <= 0:
        raise SystemExit("serve: --gil-switch-ms must be positive")
    sys.setswitchinterval(args.gil_switch_ms / 1000)
    app = create_app({"START_SCHEDULER": not args.no_scheduler})
    warm_up(app)

    def _terminate(signum, frame):
        raise KeyboardInterrupt  # run the finally below: release the lease at once

    signal.signal(signal.SIGTERM, _terminate)
    log.info("Vigie API on http://%s:%d/api/v1/docs", args.host, args.port)
    try:
        # waitress buffers a whole body before the app sees it (1 GB by default): refuse at
        # 8 × the largest body a route takes (the app's limit, or an upload's: plain 413);
        # bodies between the two get the app's JSON 413.
        largest = max(app.config.get("MAX_CONTENT_LENGTH") or 1 << 27,
                      app.extensions["vigie"].settings.upload_max_bytes)
        serve(app, host=args.host, port=args.port, threads=args.threads,
              ident="vigie", channel_timeout=60, max_request_body_size=8 * largest)
    except KeyboardInterrupt:
        pass
    finally:
        scheduler = app.extensions["vigie"].scheduler
        if scheduler is not None:
            scheduler.stop()
    return 0
