"""Load benchmark of ``GET /api/v1/forecasts`` for one territory (loopback only, bounded).

Starts, on 127.0.0.1, the API (``python -m service serve``, waitress, scheduler on) on a
throw-away copy of a home (catalog rows and forecast runs copied; cube files shared read-only)
and a static server (waitress, same threads) of the same JSON bytes. Then, with 32 concurrent
keep-alive clients (processes × threads):

1. static file: throughput and latency;
2. API, anonymous: throughput, p50 / p99 latency, ratio to the static throughput;
3. API with a token (every request audited through the audit journal,
   :mod:`service.audit_journal`): the same, and the audit rows counted against the answered
   requests (one each: none lost, none twice);
4. 2 and 3 again through two ``serve`` processes on the same home and database (clients split
   between them; ``--one-process`` skips them);
5. API while a forced ingest and the forecast refresh it chains run in the server's scheduler:
   every answer must be a 200 whose body names the run it came from, and all answers naming one
   run must be byte-identical (no torn reads).

1 to 4 are printed side by side (requests/s, p50, p99, ratio to the static throughput, the
machine's 1-minute load average at the start of each phase, and the server processes' CPU time
and context switches per request, read from ``/proc``: a cost that is waiting, threads handing
a lock or the interpreter lock to each other, moves the switches more than the CPU), then
whether each token row meets the aims. The static file is measured again after them; ratios
are to the mean of both.

Usage: ``python bench/api_load.py [--home VIGIE_HOME] [--clients 32] [--duration 8]
[--no-background] [--one-process] [--compare-fast-path] [--audit-sync write|fsync]
[--database sqlite|postgresql]``. ``--compare-fast-path``: 2 and 3 again through a ``serve``
process without the WSGI fast path of cached reads (:mod:`service.fastpath`), in the same run.
Aims: p99 < 50 ms, throughput ≥ 0.5 × static, with and without a token. Exits 1 on an error,
a torn read or an audit count that is not exact (not on a missed aim: the machine decides).

``--two-processes``: the public rate limit across processes instead. The catalog goes into a
throw-away schema of PostgreSQL (``VIGIE_BENCH_DATABASE_URL``, default the test database
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; the schema is dropped at the end), the
counters into Redis (``VIGIE_REDIS_URL``, default ``redis://127.0.0.1:6379/0``, under a random
key prefix deleted at the end), one home. All clients hammer from 127.0.0.1, one client address,
with the public limit (``--limit``, default 300 per minute):

1. reference: one ``serve`` process with Redis;
2. two ``serve`` processes on the same database, Redis and home, clients split between them;
3. the same two processes counting in memory (what every deployment did before Redis).

Prints requests/s, p50 / p99, the number of 200s and 429s and the share of 429s of each, and
exits 1 unless the two processes together let through the limit, not twice it.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

URL = "/api/v1/forecasts?target=icu&territory=75"

STATIC_APP = """
import sys
from waitress import serve
body = open(sys.argv[1], "rb").read()
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
serve(app, host="127.0.0.1", port=int(sys.argv[2]), threads=int(sys.argv[3]), ident="static")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def warm(port: int) -> None:
    """One anonymous read of :data:`URL` before a phase: a new process computes the served
    vintage's public masks on its first public read (seconds), which is no load figure."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("GET", URL)
    conn.getresponse().read()
    conn.close()


def wait_up(port: int, path: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not come up")


# ---------------------------------------------------------------------------- load
def _client_thread(port, path, stop_at, check, out, expect=(200,), headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat, errors, runs, codes = [], [], {}, {}
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        lat.append(time.perf_counter() - t0)
        codes[f"{port}:{resp.status}"] = codes.get(f"{port}:{resp.status}", 0) + 1
        if resp.status not in expect:
            errors.append(f"HTTP {resp.status}: {body[:200]!r}")
        elif check and resp.status == 200:
            try:
                doc = json.loads(body)
                run = doc["run"]["run_id"]
                if run != resp.getheader("X-Vigie-Run"):
                    errors.append("torn: header and body name different runs")
                if not doc["items"] or any(i["location"] != "75" or len(i["quantiles"]) != 23
                                           for i in doc["items"]):
                    errors.append("torn: incomplete items")
                runs.setdefault(run, set()).add(hashlib.blake2b(body, digest_size=8).hexdigest())
            except (ValueError, KeyError) as exc:
                errors.append(f"bad body: {exc}")
    out.append((lat, errors, {k: sorted(v) for k, v in runs.items()}, codes))


def _client_process(ports, path, threads, duration, check, queue, expect=(200,), first=0,
                    headers=None):
    stop_at = time.perf_counter() + duration
    out: list = []
    pool = [threading.Thread(target=_client_thread,
                             args=(ports[(first + i) % len(ports)], path, stop_at, check, out,
                                   expect, headers))
            for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    queue.put(out)


def load(port: int | list[int], path: str, clients: int, duration: float, check: bool = False,
         expect: tuple[int, ...] = (200,), token: str | None = None) -> dict:
    """``clients`` keep-alive clients (4 processes × threads) for ``duration`` seconds, spread
    evenly over ``port`` (one or several servers); ``expect``: the statuses that are no error;
    ``token``: every request authenticated with it (audited)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    ports = [port] if isinstance(port, int) else list(port)
    procs_n = min(4, clients)
    per = [clients // procs_n + (1 if i < clients % procs_n else 0) for i in range(procs_n)]
    queue: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_client_process,
                        args=(ports, path, n, duration, check, queue, expect, sum(per[:i]),
                              headers))
             for i, n in enumerate(per)]
    for p in procs:
        p.start()
    results = [item for _ in procs for item in queue.get()]
    for p in procs:
        p.join()
    lat = sorted(x for r in results for x in r[0])
    errors = [e for r in results for e in r[1]]
    runs: dict[str, set] = {}
    for r in results:
        for run, hashes in r[2].items():
            runs.setdefault(run, set()).update(hashes)
    codes: dict[str, int] = {}
    for r in results:
        for key, count in r[3].items():
            codes[key] = codes.get(key, 0) + count
    n = len(lat)
    return {
        "requests": n, "throughput_rps": round(n / duration, 1),
        "statuses": dict(sorted(codes.items())),
        "p50_ms": round(1000 * lat[n // 2], 2) if n else None,
        "p99_ms": round(1000 * lat[min(n - 1, int(n * 0.99))], 2) if n else None,
        "errors": len(errors), "error_examples": sorted(set(errors))[:5],
        "runs_seen": {k: len(v) for k, v in runs.items()},
        "torn_runs": [k for k, v in runs.items() if len(v) > 1],
    }


# ---------------------------------------------------------------------------- set-up
def prepare_home(source_home: Path, target: Path,
                 database_url: str | None = None) -> tuple[dict, str]:
    """Copy the catalog and forecast runs of ``source_home`` into a fresh home (its own SQLite
    database, or ``database_url``); admin token."""
    import sqlalchemy as sa

    from features.catalog import get_engine, vintages
    from features.settings import Settings
    from service.auth import create_token

    src = Settings.from_env(home=str(source_home))
    dst = Settings.from_env(home=str(target), data_dir=str(src.data_dir),
                            database_url=database_url or f"sqlite:///{target}/vigie.sqlite")
    with get_engine(src.database_url).connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(vintages))]
    if not rows:
        raise SystemExit(f"no cube vintage in {source_home}: run 'make run' (or ingest) first")
    with get_engine(dst.database_url).begin() as conn:
        for row in rows:
            conn.execute(vintages.insert().values(**row))
    if src.forecasts_dir.exists():
        shutil.copytree(src.forecasts_dir, dst.forecasts_dir)
    env = {"VIGIE_HOME": str(dst.home), "VIGIE_DATABASE_URL": dst.database_url,
           "VIGIE_DATA_DIR": str(dst.data_dir)}
    return env, create_token(get_engine(dst.database_url), "bench", "admin")


def ensure_forecast(env: dict) -> None:
    """The benchmarked answer needs an icu forecast by département: make a fast one if absent."""
    from features.catalog import get_engine
    from features.settings import Settings
    from models.store import ForecastStore
    from service.jobs import enqueue, run_pending

    settings = Settings.from_env(home=env["VIGIE_HOME"], database_url=env["VIGIE_DATABASE_URL"])
    store = ForecastStore.from_settings(settings)
    if any(p.name.startswith("icu_daily_department_") for p in
           (store.root / "latest").glob("*.json")):
        return
    engine = get_engine(settings.database_url)
    enqueue(engine, "forecast", {"model": "baseline", "runs": [["icu", "daily"]],
                                 "levels": ["department"], "calibrate": False})
    print("no icu forecast by département in the home: making a baseline one", file=sys.stderr)
    run_pending(engine, settings)


def api_call(port, method, path, token, body=None) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {token}",
                          "Content-Type": "application/json"})
    return json.loads(conn.getresponse().read())


# ---------------------------------------------------------------------------- two processes
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


def _summary(run: dict, limit: int) -> dict:
    """requests/s, latency, 200s and 429s (in all and per server) of a rate-limited run."""
    ok = sum(v for k, v in run["statuses"].items() if k.endswith(":200"))
    limited = sum(v for k, v in run["statuses"].items() if k.endswith(":429"))
    per_server: dict[str, dict[str, int]] = {}
    for key, count in run["statuses"].items():
        port, status = key.split(":")
        per_server.setdefault(port, {})[status] = count
    return {"requests": run["requests"], "throughput_rps": run["throughput_rps"],
            "p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"], "ok_200": ok,
            "limited_429": limited, "share_429": round(limited / max(run["requests"], 1), 3),
            "ok_200_vs_limit": round(ok / limit, 2), "per_server": per_server,
            "errors": run["errors"], "error_examples": run["error_examples"]}


def two_processes(args, tmp: Path, server_log) -> int:
    """The public limit with one and with two ``serve`` processes on PostgreSQL and Redis."""
    import uuid

    import redis
    import sqlalchemy as sa

    from features.catalog import get_engine

    pg_base = os.environ.get("VIGIE_BENCH_DATABASE_URL") or os.environ.get(
        "VIGIE_TEST_DATABASE_URL") or PG_DEFAULT
    redis_url = os.environ.get("VIGIE_REDIS_URL") or REDIS_DEFAULT
    limit = int(args.limit.split()[0])
    tag = uuid.uuid4().hex[:10]
    schema = f"vigie_bench_{tag}"
    rds = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        rds.ping()
        admin = sa.create_engine(pg_base)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        print(f"two-process run needs PostgreSQL ({pg_base}) and Redis ({redis_url}): {exc}",
              file=sys.stderr)
        return 2
    sep = "&" if "?" in pg_base else "?"
    db_url = f"{pg_base}{sep}options=-csearch_path%3D{schema}"
    servers: list[subprocess.Popen] = []

    def start(n: int, storage: str, prefix: str) -> list[int]:
        ports = [free_port() for _ in range(n)]
        for port in ports:
            server_env = {**os.environ, **env, "PYTHONPATH": str(ROOT),
                          "VIGIE_API_RATELIMIT_PUBLIC": args.limit,
                          "VIGIE_API_RATELIMIT_KEY_PREFIX": prefix}
            server_env.pop("VIGIE_REDIS_URL", None)
            server_env.pop("VIGIE_API_RATELIMIT_STORAGE_URI", None)
            if storage == "redis":
                server_env["VIGIE_REDIS_URL"] = redis_url
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "service", "serve", "--port", str(port), "--threads",
                 str(args.threads), "--no-scheduler"], cwd=ROOT, env=server_env,
                stdout=subprocess.DEVNULL, stderr=server_log))
        for port in ports:
            wait_up(port, "/healthz")
        return ports

    def stop() -> None:
        while servers:
            proc = servers.pop()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    report: dict = {"url": URL, "limit": args.limit, "clients": args.clients,
                    "duration_s": args.duration, "server_threads": args.threads,
                    "database": f"{pg_base.split('@')[-1]} schema {schema}",
                    "redis": redis_url.split("@")[-1], "cpus": os.cpu_count()}
    try:
        env, _ = prepare_home(args.home.resolve(), tmp / "home", database_url=db_url)
        ensure_forecast(env)
        phases = (("one_process_redis", 1, "redis"), ("two_processes_redis", 2, "redis"),
                  ("two_processes_memory", 2, "memory"))
        for name, n, storage in phases:
            ports = start(n, storage, f"vigie-bench-{tag}-{name}")  # fresh counters per phase
            report[name] = _summary(load(ports, URL, args.clients, args.duration,
                                         expect=(200, 429)), limit)
            stop()
        ref = report["one_process_redis"]
        two = report["two_processes_redis"]
        report["two_vs_one"] = {
            "ok_200_ratio": round(two["ok_200"] / max(ref["ok_200"], 1), 2),
            "throughput_ratio": round(two["throughput_rps"] / max(ref["throughput_rps"], 1e-9),
                                      2),
            "p99_ratio": round((two["p99_ms"] or 0) / max(ref["p99_ms"] or 0, 1e-9), 2)}
        print(json.dumps(report, indent=2))
        # A fixed window counts exactly: the limit, give or take the requests in flight when a
        # window opens (none here: the whole run is inside one window).
        holds = (limit <= two["ok_200"] <= limit + 2 and ref["ok_200"] == limit
                 and two["errors"] == 0 and ref["errors"] == 0)
        print(f"limit {args.limit}: one process let {ref['ok_200']} through, two processes on "
              f"Redis {two['ok_200']}, two processes in memory "
              f"{report['two_processes_memory']['ok_200']}: "
              f"{'holds' if holds else 'DOES NOT HOLD'}", file=sys.stderr)
        return 0 if holds else 1
    finally:
        stop()
        get_engine(db_url).dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
        keys = list(rds.scan_iter(match=f"*vigie-bench-{tag}*", count=1000))
        if keys:
            rds.delete(*keys)
        rds.close()


# ---------------------------------------------------------------------------- read matrix
def _phase(port, path: str, args, check: bool = False, token: str | None = None,
           pids: tuple[int, ...] = ()) -> dict:
    """One load phase, with the 1-minute load average of the machine when it started and, for
    the server processes ``pids``, their CPU time and context switches per answered request
    (Linux ``/proc``; None elsewhere): a cost that shows up as waiting (threads handing a lock
    or the GIL to each other) moves the switches more than the CPU."""
    load_avg = round(os.getloadavg()[0], 2)
    before = _server_usage(pids)
    out = load(port, path, args.clients, args.duration, check=check, token=token)
    after = _server_usage(pids)
    out["loadavg_1min_at_start"] = load_avg
    n = max(out["requests"], 1)
    if before is not None and after is not None:
        out["server_cpu_us_per_request"] = round(1e6 * (after[0] - before[0]) / n, 1)
        out["server_switches_per_request"] = round((after[1] - before[1]) / n, 2)
    else:
        out["server_cpu_us_per_request"] = out["server_switches_per_request"] = None
    return out


def _server_usage(pids: tuple[int, ...]) -> tuple[float, int] | None:
    """CPU seconds (user + system, every thread) and context switches (voluntary and not,
    summed over the threads) of processes ``pids``; None without them or without ``/proc``."""
    if not pids:
        return None
    cpu, switches = 0.0, 0
    try:
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{pid}/task").iterdir():
                try:
                    for line in (task / "status").read_text().splitlines():
                        if line.startswith(("voluntary_ctxt_switches",
                                            "nonvoluntary_ctxt_switches")):
                            switches += int(line.split()[1])
                except OSError:
                    continue  # a thread that ended meanwhile
    except (OSError, ValueError, IndexError):
        return None
    return cpu, switches


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _reader_token(env: dict) -> str:
    """The token of the authenticated reads (an analyst, apart from the bench's admin token so
    that its audit rows can be counted)."""
    from features.catalog import get_engine
    from service.auth import create_token

    return create_token(get_engine(env["VIGIE_DATABASE_URL"]), "bench-reader", "analyst")


def audit_rows(env: dict, phase: dict, before: int, wait: float = 15.0) -> dict:
    """The audit rows of the reader's token against the requests it was answered: one each,
    none lost, none twice (the servers' journals ship within 0.1 s; waits up to
    ``wait`` seconds for them)."""
    import sqlalchemy as sa

    from features.catalog import get_engine
    from service.db import audit_log

    engine = get_engine(env["VIGIE_DATABASE_URL"])
    expected = phase["requests"]
    count_q = sa.select(sa.func.count()).select_from(audit_log).where(
        audit_log.c.actor == "bench-reader")
    # Checkouts before the audit journal have no request ids: every row counts as distinct.
    has_ids = "request_id" in {c["name"] for c in sa.inspect(engine).get_columns("audit_log")}
    ids_q = (sa.select(sa.func.count(sa.distinct(audit_log.c.request_id))) if has_ids
             else sa.select(sa.func.count())).select_from(audit_log).where(
        audit_log.c.actor == "bench-reader")
    deadline = time.time() + wait
    while True:
        with engine.connect() as conn:
            rows = conn.execute(count_q).scalar_one()
            distinct = conn.execute(ids_q).scalar_one()
        if rows - before >= expected or time.time() > deadline:
            break
        time.sleep(0.2)
    new = rows - before
    return {"rows": rows, "new_rows": new, "answered_requests": expected,
            "distinct_request_ids": distinct,
            "exact": new == expected and distinct == rows and phase["errors"] == 0}


def flask_only(args, server_env: dict, server_log, servers: list, env: dict, before: int,
               reader: str) -> dict:
    """Anonymous and token reads through one more ``serve`` process (same home and database)
    without the fast path: every request through Flask, as before service/fastpath.py."""
    port = free_port()
    servers.append(subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--threads",
         str(args.threads), "--no-scheduler"], cwd=ROOT,
        env={**server_env, "VIGIE_API_FAST_PATH": "false"}, stdout=subprocess.DEVNULL,
        stderr=server_log))
    try:
        wait_up(port, "/healthz")
        warm(port)
        pid = (servers[-1].pid,)
        out = {"flask_only": _phase(port, URL, args, check=True, pids=pid),
               "flask_only_token": _phase(port, URL, args, check=True, token=reader,
                                          pids=pid)}
        out["audit_flask_only"] = audit_rows(env, out["flask_only_token"], before)
        return out
    finally:
        _stop(servers.pop())


def read_matrix(report: dict) -> list[dict]:
    """Static vs anonymous vs authenticated reads, one and two serve processes."""
    starts_ends = [report[k]["throughput_rps"] for k in ("static", "static_end") if k in report]
    reference = sum(starts_ends) / len(starts_ends)
    rows = []
    for key, label in (("static", "static file, start"), ("static_end", "static file, end"),
                       ("api", "1 serve, anonymous"), ("api_token", "1 serve, token"),
                       ("flask_only", "1 serve, anon, no fast"),
                       ("flask_only_token", "1 serve, token, no fast"),
                       ("two_processes", "2 serve, anonymous"),
                       ("two_processes_token", "2 serve, token")):
        if key not in report:
            continue
        phase = report[key]
        rows.append({"phase": label, "throughput_rps": phase["throughput_rps"],
                     "p50_ms": phase["p50_ms"], "p99_ms": phase["p99_ms"],
                     "vs_static": round(phase["throughput_rps"] / max(reference, 1e-9), 3),
                     "errors": phase["errors"],
                     "server_cpu_us_per_request": phase.get("server_cpu_us_per_request"),
                     "server_switches_per_request": phase.get("server_switches_per_request"),
                     "loadavg_1min": phase["loadavg_1min_at_start"]})
    return rows


def print_matrix(report: dict) -> None:
    """The read matrix as a table, and the targets (p99 < 50 ms, ≥ 0.5 × static)."""
    print(f"\n{report['clients']} clients, GET {report['url']}, {report['duration_s']:g} s "
          f"per phase, {report['server_threads']} threads per server, database "
          f"{report['database']}, audit journal AUDIT_SYNC={report['audit_sync']}, "
          f"{report['cpus']} CPUs")
    print(f"{'phase':<24}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'× static':>10}{'errors':>8}"
          f"{'load 1m':>9}{'srv µs/req':>12}{'switch/req':>12}")
    for row in report["read_matrix"]:
        cpu, switches = row["server_cpu_us_per_request"], row["server_switches_per_request"]
        print(f"{row['phase']:<24}{row['throughput_rps']:>9.1f}{row['p50_ms']:>9.2f}"
              f"{row['p99_ms']:>9.2f}{row['vs_static']:>10.3f}{row['errors']:>8d}"
              f"{row['loadavg_1min']:>9.2f}"
              f"{'-' if cpu is None else f'{cpu:.0f}':>12}"
              f"{'-' if switches is None else f'{switches:.1f}':>12}")
    for row in report["read_matrix"]:
        if "token" in row["phase"]:
            met = row["p99_ms"] < 50 and row["vs_static"] >= 0.5
            print(f"{row['phase']}: p99 < 50 ms and >= 0.5 x static: "
                  f"{'met' if met else 'NOT met'}")
    for key in ("audit_one_process", "audit_flask_only", "audit_two_processes"):
        if key in report:
            audit = report[key]
            print(f"{key}: {audit['new_rows']} audit rows for {audit['answered_requests']} "
                  f"answered token requests ({'exact' if audit['exact'] else 'NOT EXACT'})")


def pg_schema() -> tuple[str, Callable[[], None]]:
    """A throw-away schema of PostgreSQL: its URL, and the function that drops it."""
    import uuid

    import sqlalchemy as sa

    from features.catalog import get_engine

    pg_base = os.environ.get("VIGIE_BENCH_DATABASE_URL") or os.environ.get(
        "VIGIE_TEST_DATABASE_URL") or PG_DEFAULT
    schema = f"vigie_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_base else "?"
    url = f"{pg_base}{sep}options=-csearch_path%3D{schema}"

    def drop() -> None:
        get_engine(url).dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    return url, drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path,
                        default=Path(os.environ.get("VIGIE_HOME", ROOT / "var")))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=8, help="server threads (both servers)")
    parser.add_argument("--no-background", action="store_true")
    parser.add_argument("--background-timeout", type=float, default=150.0)
    parser.add_argument("--two-processes", action="store_true",
                        help="the public rate limit with one and two serve processes sharing "
                             "PostgreSQL and Redis (see above), instead of the load run")
    parser.add_argument("--limit", default="300 per minute",
                        help="public rate limit of the --two-processes run")
    parser.add_argument("--one-process", action="store_true",
                        help="skip the reads through two serve processes")
    parser.add_argument("--compare-fast-path", action="store_true",
                        help="also read through one serve process without the WSGI fast path "
                             "of cached reads (VIGIE_API_FAST_PATH=false, service/fastpath.py)")
    parser.add_argument("--audit-sync", choices=("write", "fsync"), default="write",
                        help="the servers' audit journal policy (VIGIE_API_AUDIT_SYNC)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the load run's database: an SQLite file in the throw-away home, "
                             "or a throw-away schema of VIGIE_BENCH_DATABASE_URL (default the "
                             "test database)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vigie-bench-"))
    servers: list[subprocess.Popen] = []
    cleanups: list = []
    log_path = Path(tempfile.gettempdir()) / "vigie_api_load_server.log"
    server_log = log_path.open("w")
    try:
        if args.two_processes:
            return two_processes(args, tmp, server_log)
        db_url = None
        if args.database == "postgresql":
            db_url, drop_schema = pg_schema()
            cleanups.append(drop_schema)
        env, token = prepare_home(args.home.resolve(), tmp / "home", database_url=db_url)
        ensure_forecast(env)
        reader = _reader_token(env)
        api_port, static_port = free_port(), free_port()
        server_env = {**os.environ, **env, "PYTHONPATH": str(ROOT),
                      "VIGIE_API_RATELIMIT_ENABLED": "false",
                      "VIGIE_API_AUDIT_SYNC": args.audit_sync}
        servers.append(subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(api_port),
             "--threads", str(args.threads)], cwd=ROOT, env=server_env,
            stdout=subprocess.DEVNULL, stderr=server_log))
        wait_up(api_port, "/healthz")
        conn = http.client.HTTPConnection("127.0.0.1", api_port)
        conn.request("GET", URL)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit(f"{URL} answered {resp.status}: {body[:300]!r}")
        static = tmp / "forecast.json"
        static.write_bytes(body)
        servers.append(subprocess.Popen(
            [sys.executable, "-c", STATIC_APP, str(static), str(static_port),
             str(args.threads)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_up(static_port, "/")

        report: dict = {"url": URL, "clients": args.clients, "duration_s": args.duration,
                        "server_threads": args.threads, "body_bytes": len(body),
                        "cpus": os.cpu_count(), "database": args.database,
                        "audit_sync": args.audit_sync}
        api_pid, static_pid = (servers[0].pid,), (servers[1].pid,)
        report["static"] = _phase(static_port, "/", args, pids=static_pid)
        report["api"] = _phase(api_port, URL, args, check=True, pids=api_pid)
        report["throughput_ratio_vs_static"] = round(
            report["api"]["throughput_rps"] / max(report["static"]["throughput_rps"], 1e-9), 3)
        report["api_token"] = _phase(api_port, URL, args, check=True, token=reader,
                                     pids=api_pid)
        report["audit_one_process"] = audit_rows(env, report["api_token"], 0)
        if args.compare_fast_path:
            report.update(flask_only(args, server_env, server_log, servers, env,
                                     report["audit_one_process"]["rows"], reader))
        if not args.one_process:
            second = free_port()
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "service", "serve", "--port", str(second),
                 "--threads", str(args.threads), "--no-scheduler"], cwd=ROOT, env=server_env,
                stdout=subprocess.DEVNULL, stderr=server_log))
            wait_up(second, "/healthz")
            warm(second)
            both = [api_port, second]
            pids = (*api_pid, servers[-1].pid)
            report["two_processes"] = _phase(both, URL, args, check=True, pids=pids)
            report["two_processes_token"] = _phase(both, URL, args, check=True, token=reader,
                                                   pids=pids)
            previous = report.get("audit_flask_only") or report["audit_one_process"]
            report["audit_two_processes"] = audit_rows(
                env, report["two_processes_token"], previous["rows"])
            _stop(servers.pop())
        # The static file again at the end: the machine's load drifts over a run, so the ratios
        # are to the mean of the two static phases.
        report["static_end"] = _phase(static_port, "/", args, pids=static_pid)
        report["read_matrix"] = read_matrix(report)

        if not args.no_background:
            fast = {"model": "baseline", "runs": [["icu", "daily"]], "levels": ["department"],
                    "calibrate": False}
            ingest = api_call(api_port, "POST", "/api/v1/jobs/ingest/run", token,
                              {"params": {"force": True, "forecast_params": fast}})
            started = time.time()
            phases = []
            while time.time() - started < args.background_timeout:
                phases.append(load(api_port, URL, args.clients, min(args.duration, 5),
                                   check=True))
                ing = api_call(api_port, "GET", f"/api/v1/jobs/runs/{ingest['id']}", token)
                chained = (ing.get("result") or {}).get("forecast_run")
                if ing["status"] in ("failed", "interrupted"):
                    break
                if chained:
                    fc = api_call(api_port, "GET", f"/api/v1/jobs/runs/{chained}", token)
                    if fc["status"] in ("ok", "failed", "interrupted"):
                        phases.append(load(api_port, URL, args.clients, 2, check=True))
                        break
            runs: dict[str, int] = {}
            for ph in phases:
                for k, v in ph["runs_seen"].items():
                    runs[k] = max(runs.get(k, 0), v)
            lat_p99 = max((p["p99_ms"] or 0) for p in phases) if phases else None
            report["during_ingest_and_forecast"] = {
                "seconds": round(time.time() - started, 1),
                "requests": sum(p["requests"] for p in phases),
                "throughput_rps": round(sum(p["requests"] for p in phases) /
                                        max(time.time() - started, 1e-9), 1),
                "worst_window_p99_ms": lat_p99,
                "errors": sum(p["errors"] for p in phases),
                "error_examples": sorted({e for p in phases for e in p["error_examples"]})[:5],
                "runs_served": sorted(runs),
                "torn_runs": sorted({t for p in phases for t in p["torn_runs"]}),
                "ingest_status": ing["status"],
                "forecast_status": fc["status"] if chained else None,
            }
        print(json.dumps(report, indent=2))
        print_matrix(report)
        reads = [report[k] for k in ("api", "api_token", "flask_only", "flask_only_token",
                                     "two_processes", "two_processes_token") if k in report]
        audits = [report[k] for k in ("audit_one_process", "audit_flask_only",
                                      "audit_two_processes") if k in report]
        ok = (all(r["errors"] == 0 and not r["torn_runs"] for r in reads)
              and all(a["exact"] for a in audits)
              and (args.no_background or (report["during_ingest_and_forecast"]["errors"] == 0
                   and not report["during_ingest_and_forecast"]["torn_runs"])))
        return 0 if ok else 1
    finally:
        for proc in servers:
            _stop(proc)
        for cleanup in cleanups:
            cleanup()
        server_log.close()
        print(f"server log: {log_path}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
