"""Two real ``python -m service serve`` processes on one PostgreSQL database, one Redis and one
``VIGIE_HOME`` are one service: the same answers to the same requests (public and with a token:
vintages, territories, indicators, data with its suppression, risk, forecasts, alerts), what
is written through one is read through the other (a token created while both run is accepted
by both, a job queued on one is seen and its run read on the other, the audit rows of one are
read on the other), a revoked token is refused by both, exactly one of them leads the
scheduler (``/readyz`` and ``/api/v1/jobs`` say which, and agree), and rate limits are shared
(one public bucket, one count of refused tokens).

Skipped, with the reason, only where PostgreSQL (``VIGIE_TEST_DATABASE_URL``) or Redis
(``VIGIE_TEST_REDIS_URL``) cannot be reached. The waits are hang guards, not speed limits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_rate_limits import redis_url  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
requests = pytest.importorskip("requests")

#: Refused tokens per client address and minute (shared through Redis by both processes).
AUTH_FAILURES = 6
#: Same requests, same answers: anonymous, then with the analyst token.
READS = (
    "/api/v1/vintages",
    "/api/v1/territories?per_page=1000",
    "/api/v1/indicators?per_page=1000",
    "/api/v1/data?indicator=inc_cases&territory=R94,FR&per_page=1000",
    "/api/v1/data?indicator=inc_cases&territory=R94&start=2020-11-01&end=2020-11-30&format=csv",
    "/api/v1/data?indicator=incidence_rate_7d&territory=FR,R84&per_page=200",
    "/api/v1/risk?level=region&date=2020-12-15",
    "/api/v1/forecasts?target=icu&territory=01&horizon=7",
    "/api/v1/forecasts?territory=FR&format=hub",
    "/api/v1/forecasts/runs",
    "/api/v1/alerts?territory=01,69",
    "/api/v1/territories/nowhere",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what: str, seconds: float = 60.0):
    """``check()`` until it returns something truthy (returned), else fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"not within {seconds:.0f} s: {what}")


def _ready(base: str) -> dict | None:
    try:
        r = requests.get(f"{base}/readyz", timeout=5)
    except requests.RequestException:
        return None
    return r.json() if r.status_code == 200 else None


@pytest.fixture
def two_serves(pg_url, redis_url, tmp_path):  # noqa: F811 (the fixture imported above)
    """The shared home (the synthetic signals cube and small forecast runs, catalogued in
    PostgreSQL), its Settings, and the base URLs of two ``serve`` processes on it."""
    from features.settings import Settings
    from features.store import CubeStore
    from tests.api_fixtures import synthetic_runs
    from tests.synthetic_cube import signals_cube

    url, prefix = redis_url
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings.from_env(home=str(home), data_dir=str(home), database_url=pg_url,
                                 redis_url=url)
    vintage = CubeStore(settings).write_vintage(signals_cube(), {}, {"data_dir": str(home)})
    synthetic_runs(settings, vintage)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIE_HOME": str(home),
           "VIGIE_DATA_DIR": str(home), "VIGIE_DATABASE_URL": pg_url, "VIGIE_REDIS_URL": url,
           "VIGIE_API_RATELIMIT_KEY_PREFIX": prefix,
           "VIGIE_API_RATELIMIT_AUTH_FAILURES": f"{AUTH_FAILURES} per minute"}
    ports = [_free_port(), _free_port()]
    procs = []
    try:
        for i, port in enumerate(ports):
            log = open(tmp_path / f"serve-{i}.log", "w")  # noqa: SIM115 (closed below)
            procs.append((subprocess.Popen(
                [sys.executable, "-m", "service", "serve", "--port", str(port),
                 "--threads", "4"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                log))
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for (proc, _), base in zip(procs, bases, strict=True):
            _wait(lambda b=base, p=proc: p.poll() is not None or _ready(b),
                  f"{base}/readyz answering 200")
            assert proc.poll() is None, (tmp_path / "serve-0.log").read_text()[-3000:]
        yield settings, bases
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)  # releases the scheduler lease
        for proc, log in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _token(settings, name: str, role: str) -> tuple[int, dict]:
    from service.usecases.tokens import create_token, list_tokens

    secret = create_token(settings, name, role, actor="test")
    token_id = next(t["id"] for t in list_tokens(settings) if t["name"] == name)
    return token_id, {"Authorization": f"Bearer {secret}"}


def test_two_serve_processes_are_one_service(two_serves):
    from service.usecases.tokens import revoke_token

    settings, (a, b) = two_serves
    refused = []  # every 401 answered, by either process

    def get(base: str, path: str, headers: dict | None = None) -> requests.Response:
        r = requests.get(base + path, headers=headers or {}, timeout=30)
        if r.status_code == 401:
            refused.append(base)
        return r

    # Exactly one scheduler leader, and both processes name the same one.
    leaders = _wait(lambda: (lambda s: s if sorted(s) == ["leader", "standby"] else None)(
        [_ready(base)["checks"]["scheduler"] for base in (a, b)]), "one leader, one standby")
    _, admin = _token(settings, "two-serves-admin", "admin")
    jobs = [get(base, "/api/v1/jobs", admin).json()["scheduler"] for base in (a, b)]
    assert jobs[0]["holder"] == jobs[1]["holder"] is not None
    assert [j["this_process_leads"] for j in jobs] == [s == "leader" for s in leaders]

    # The same answers, anonymous and with a token created while both run.
    analyst_id, analyst = _token(settings, "two-serves-analyst", "analyst")
    for headers in (None, analyst):
        for path in READS:
            one, two = get(a, path, headers), get(b, path, headers)
            assert (one.status_code, one.content) == (two.status_code, two.content), path
            assert one.status_code == (404 if path.endswith("nowhere") else 200), path
    public = get(a, READS[3]).json()
    private = get(b, READS[3], analyst).json()
    assert any(i["suppressed"] for i in public["items"])  # the answers compared differ by role
    assert not any(i["suppressed"] for i in private["items"])

    # Written through one, read through the other: a queued job and its run.
    queued = requests.post(f"{a}/api/v1/jobs/prune/run", json={"params": {"dry_run": True}},
                           headers=admin, timeout=30)
    assert queued.status_code == 202, queued.text
    run_id = queued.json()["id"]
    seen = get(b, f"/api/v1/jobs/runs/{run_id}", admin).json()
    assert {k: seen[k] for k in ("job", "params", "queued_at", "requested_by")} == \
        {k: queued.json()[k] for k in ("job", "params", "queued_at", "requested_by")}
    done = _wait(lambda: (lambda r: r if r["status"] in ("ok", "failed") else None)(
        get(b, f"/api/v1/jobs/runs/{run_id}", admin).json()), f"job run {run_id} finished")
    assert done["status"] == "ok", done
    assert done["worker"] == jobs[0]["holder"]  # run by the leader, whichever received it
    assert get(a, f"/api/v1/jobs/runs/{run_id}", admin).json() == done
    # The audit rows of requests answered by one are read through the other.
    _wait(lambda: any(row["path"] == f"/api/v1/jobs/runs/{run_id}"
                      for row in get(a, "/api/v1/audit?actor=two-serves-admin&per_page=200",
                                     admin).json()["items"]),
          "the audit rows of process B read through process A", 20)

    # A token both processes accepted (and may have cached) is refused by both once revoked.
    assert [get(base, "/api/v1/vintages", analyst).status_code for base in (a, b)] == [200, 200]
    assert revoke_token(settings, analyst_id, actor="test")
    for base in (a, b):
        _wait(lambda b_=base: get(b_, "/api/v1/vintages", analyst).status_code == 401,
              f"the revoked token refused by {base}", 10)

    # One public bucket: each answer, from either process, leaves one request fewer.
    left = [int(get(base, "/api/v1/vintages").headers["X-RateLimit-Remaining"])
            for base in (a, b, a, b)]
    assert left == [left[0] - i for i in range(4)], left
    # One count of refused tokens: past AUTH_FAILURES (both processes together), both say 429.
    codes = []
    while len(refused) < AUTH_FAILURES and len(codes) < 2 * AUTH_FAILURES:
        codes.append(get((a, b)[len(codes) % 2], "/api/v1/vintages",
                         {"Authorization": "Bearer vg_not_a_token"}).status_code)
    assert len(refused) == AUTH_FAILURES, (refused, codes)
    assert [get(base, "/api/v1/vintages", {"Authorization": "Bearer vg_guess"}).status_code
            for base in (a, b)] == [429, 429]
