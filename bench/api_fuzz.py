"""Heavy schemathesis fuzz of the whole API, outside the test suite (minutes, not seconds).

Every operation of the OpenAPI document, as admin and as the anonymous public, in three modes:
``positive`` (valid inputs; status code, content type and body checked against the document),
``negative`` (schemathesis' invalid inputs) and ``mutate`` (valid inputs made hostile: unknown
parameters, CR/LF and other control characters in values, keys and path parameters, huge
numbers, far dates, repeated parameters, deep and 2 MiB JSON bodies). Prints, per role and mode,
the operations, the examples run and how many operations answered a 5xx, then each failure.
``tests/test_api_schemathesis.py`` is the bounded version the suite runs.

Usage: ``python bench/api_fuzz.py [--examples 60] [--roles admin,public]
[--modes positive,negative,mutate] [--only PATH-PART] [--home DIR] [--postgres URL]``.
The home (default a folder under the system temp dir) is ingested from ``VIGIE_DATA_DIR`` on
first use; ``--postgres`` runs on a fresh schema of that server, dropped at the end.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONTROL = ["\r\n", "\n", "\r", "\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9f", "\u2028", "\t"]
HUGE = ["99999999999999999999999", "-1", "1e308", "NaN", "inf", "0", "2147483648",
        "9999-12-31", "0001-01-01", "1677-09-21", "2262-04-12"]
KINDS = ("unknown", "unknownctl", "control", "huge", "dup", "pathctl", "deepbody", "bigbody")


def build_app(home: Path, postgres: str | None):
    """(app, admin token, cleanup) on ``home`` (ingested on first use)."""
    from features.catalog import get_engine
    from features.settings import Settings
    from features.store import CubeStore
    from service.app import create_app
    from service.auth import create_token

    settings = Settings.from_env(home=str(home), database_url=f"sqlite:///{home}/vigie.sqlite")
    if not (home / "vigie.sqlite").exists():
        from features.ingest import run_ingest
        from tests.api_fixtures import synthetic_runs

        report = run_ingest(settings)
        if report.outcome != "ok":
            raise SystemExit(f"ingest failed: {report.to_dict()}")
        synthetic_runs(settings, CubeStore(settings).current_vintage()["id"])

    def cleanup() -> None:
        pass

    if postgres:
        import sqlalchemy as sa

        from tests.api_fixtures import copy_catalog

        schema = f"api_fuzz_{uuid.uuid4().hex[:8]}"
        with sa.create_engine(postgres).begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in postgres else "?"
        pg = Settings.from_env(home=str(home),
                               database_url=f"{postgres}{sep}options=-csearch_path%3D{schema}")
        app = create_app({"TESTING": False, "SETTINGS": pg, "RATELIMIT_ENABLED": False})
        copy_catalog(settings, pg)
        settings = pg

        def cleanup() -> None:
            get_engine(pg.database_url).dispose()
            with sa.create_engine(postgres).begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    else:
        app = create_app({"TESTING": False, "SETTINGS": settings, "RATELIMIT_ENABLED": False})
    return app, create_token(get_engine(settings.database_url), "fuzz", "admin"), cleanup


def mutate(case, kind: str, seed: int) -> int:
    """Make ``case`` hostile in place; returns the depth of a raw deep body to send (0: none)."""
    rng = random.Random(seed)
    query = dict(case.query or {})
    deep = 0
    if kind == "unknown":
        for _ in range(rng.randint(1, 4)):
            query[f"x{rng.randint(0, 10**6)}"] = str(rng.random())
    elif kind == "unknownctl":
        query[rng.choice(["x", "utm_source", "callback", "k\x01"])] = \
            "v" + rng.choice(CONTROL) + "w"
    elif kind == "control":
        key = rng.choice(list(query) or ["format", "page", "zz"])
        query[key] = f"{query.get(key, 'a')}{rng.choice(CONTROL)}Set-Cookie: x=1"
    elif kind == "huge":
        key = rng.choice(list(query) or ["page", "per_page", "horizon", "start", "as_of"])
        query[key] = rng.choice(HUGE)
    elif kind == "dup":
        query = {k: [*v, *v] if isinstance(v, list) else [v, v] for k, v in query.items()}
    elif kind == "pathctl" and case.path_parameters:
        key = rng.choice(list(case.path_parameters))
        if isinstance(case.path_parameters[key], str):
            case.path_parameters[key] += rng.choice(CONTROL)
    elif kind == "deepbody":
        depth = rng.choice([40, 200, 5000, 100_000])
        if depth < 900:
            case.body = json.loads("[" * depth + "]" * depth)
        else:
            deep = depth
    elif kind == "bigbody":
        case.body = {"name": "x" * (2 * 1024 * 1024)}
    case.query = query
    return deep


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=60, help="examples per operation and mode")
    ap.add_argument("--roles", default="admin,public")
    ap.add_argument("--modes", default="positive,negative,mutate")
    ap.add_argument("--only", default="", help="operations whose label contains this")
    ap.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "vigie_api_fuzz")
    ap.add_argument("--postgres", help="a PostgreSQL URL: run on a fresh schema of it")
    args = ap.parse_args()
    app, token, cleanup = build_app(args.home, args.postgres)
    try:
        return run(app, token, args)
    finally:
        cleanup()


def run(app, token: str, args: argparse.Namespace) -> int:
    import schemathesis

    logging.disable(logging.CRITICAL)  # the server logs every 5xx it answers: counted below
    api = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    ops = [r.ok() for r in api.get_all_operations()]
    ops = [o for o in ops if args.only in o.label]
    client = app.test_client()
    summary = {}
    errors: dict[tuple, set] = collections.defaultdict(set)
    other: dict[tuple, set] = collections.defaultdict(set)
    for role in args.roles.split(","):
        headers = {"Accept-Encoding": "identity"}  # the WSGI transport does not decompress
        if role == "admin":
            headers["Authorization"] = f"Bearer {token}"
        for mode in args.modes.split(","):
            counter, start = [0], time.perf_counter()
            for op in ops:
                key = (role, mode, op.label)
                test = _test(op, mode, headers, key, client, args.examples, counter, errors,
                             other)
                try:
                    test()
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # hypothesis' own complaints
                    if "Unsatisfiable" not in type(exc).__name__:  # nothing negative to try
                        other[key].add(f"runner: {type(exc).__name__}: {str(exc)[:300]}")
            summary[(role, mode)] = (len(ops), counter[0],
                                     round(time.perf_counter() - start, 1))
    print("role mode operations examples seconds operations_with_5xx")
    for (role, mode), (n_ops, count, seconds) in summary.items():
        bad = sum(1 for k in errors if k[:2] == (role, mode))
        print(role, mode, n_ops, count, seconds, bad)
    print("\nserver errors:" if errors else "\nserver errors: none")
    for key, lines in sorted(errors.items()):
        print(" ", *key)
        for line in sorted(lines)[:4]:
            print("     ", line)
    print("\nother failures (conformance, positive mode):" if other else
          "\nother failures: none")
    for key, lines in sorted(other.items()):
        print(" ", *key)
        for line in sorted(lines)[:3]:
            print("     ", line)
    return 1 if errors else 0


def _test(op, mode: str, headers: dict, key: tuple, client, examples: int, counter: list,
          errors: dict, other: dict):
    """The Hypothesis test of one operation in one mode (a function per operation: @given
    takes no default arguments to bind loop variables with)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    generation = GenerationMode.NEGATIVE if mode == "negative" else GenerationMode.POSITIVE

    @given(case=op.as_strategy(generation_mode=generation), kind=st.sampled_from(KINDS),
           seed=st.integers(0, 10**6))
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), derandomize=True, phases=["generate"])
    def one(case, kind, seed):
        counter[0] += 1
        deep = mutate(case, kind, seed) if mode == "mutate" else 0
        if deep:
            resp = client.open(case.formatted_path, method=case.method,
                               data="[" * deep + "]" * deep,
                               headers={**headers, "Content-Type": "application/json"})
        else:
            resp = case.call(headers=headers)
        if resp.status_code >= 500:
            errors[key].add(f"{resp.status_code} {case.method} {case.formatted_path} "
                            f"q={str(case.query)[:200]}")
            return
        if mode == "positive":
            for check in (status_code_conformance, content_type_conformance,
                          response_schema_conformance):
                try:
                    case.validate_response(resp, checks=[check], headers=headers)
                except BaseException as exc:  # schemathesis raises failure groups
                    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
                    other[key].add(" | ".join(lines)[:600])

    return one


if __name__ == "__main__":
    sys.exit(main())
