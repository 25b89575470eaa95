"""Equivalence check: the same outputs before and after a refactor, on a fixed cube.

Issue 15 (one room per use case) is a structural step: the forecasts, scenarios and API answers
must not change. This script captures what a checkout of the code produces from the shared data
folder, and compares two captures file by file.

Usage::

    python bench/equivalence.py capture --code /tmp/baseline15 --out /tmp/equiv/before
    python bench/equivalence.py capture --code . --out /tmp/equiv/after
    python bench/equivalence.py compare /tmp/equiv/before /tmp/equiv/after
    python bench/equivalence.py normalise /tmp/equiv/before.raw /tmp/equiv/before

``capture --code DIR`` runs DIR's code (every step a subprocess with ``cwd=DIR`` and
``PYTHONPATH=DIR``, with this script's Python, so ``service``, ``features``, ``models`` and
``scenarios`` are imported from DIR; the API step checks it) on a fresh ``VIGIE_HOME`` in a
temporary folder (SQLite catalog), data from ``VIGIE_DATA_DIR`` or ``../shared/data``:

1. ``ingest --json``, ``cube export`` (inc_hosp, FR 69 13), ``cube vintages --json``;
2. ``forecast`` Hub CSVs: ``inc_hosp`` weekly national (calibrated, the default); weekly
   ``inc_hosp`` for départements 69 13 75 2A 971, daily ``hosp`` for 69 13, weekly
   ``er_visits`` for France (these three ``--no-calibration``: the conformal calibration refits
   every member on 10-26 past Mondays, minutes each on the shared machine);
3. ``forecast-all --target inc_hosp icu --level national department --no-calibration
   --no-trackrecord --json`` (the publish use case: runs in the forecast store + audit rows,
   which the API and the pages then serve; the track record job is not queued);
4. ``scenario run`` of status_quo (default as_of, FR 69 13), lockdown_2020_11 (its file's as_of,
   FR 69 13) and status_quo ``--as-of 2020-10-25`` (69 R84), ``scenario compare`` of both
   (69), each JSON written with ``--out``;
5. ``token create`` (admin, analyst), then the API and the dashboard of DIR through the Flask
   test client (``service.app.create_app`` with ``TESTING``, rate limits off, as the tests
   build it): two scenario runs submitted (the library status_quo, and lockdown_2020_11 for
   69 13 with 200 samples), run with a third, the service's own public status_quo, by
   ``python -m service jobs run scenario --param name=status_quo`` (which runs every job
   due), publish/unpublish of the second, then ~70 requests (public,
   analyst and admin; JSON, CSV with ``,`` and ``;``, Hub CSV, HTML pages and page data,
   OpenAPI, errors). Each answer is one ``api/NN_name.meta.json`` (method, path, role, status,
   headers) and one ``api/NN_name.body.<json|csv|html|txt>``.

Forecasts use ``--sequential`` (no Dask cluster) and every subprocess gets
``OMP/OPENBLAS/MKL/NUMEXPR_NUM_THREADS=1``, ``VIGIE_JOB_THREADS=1``, ``PYTHONHASHSEED=0`` and
``TZ=UTC``; no other ``VIGIE_*`` variable of the caller is passed on. The models and the
scenario engine use fixed seeds; with this environment two captures of the same code compare
equal (checked by capturing the baseline twice).

Normalisation (applied when the raw capture is written into OUT; everything else is kept
as produced):

* paths: the temporary ``VIGIE_HOME`` → ``<home>``, the capture's work folder → ``<work>``,
  DIR → ``<code>``;
* forecast run ids (``YYYYMMDDTHHMMSS.ffffffZ-xxxxxx``) → ``<run-k>`` and cube vintage ids
  (``YYYYMMDDTHHMMSSZ-xxxxxxxx``) → ``<vintage-k>``, k numbering the distinct ids of the
  capture in chronological (sorted) order, so the same run or vintage keeps one name in every
  file; other compact stamps ``YYYYMMDDTHHMMSS[.f]Z`` → ``<stamp>``;
* date-times (ISO ``YYYY-MM-DD[T ]HH:MM:SS[.f][Z|±HH:MM]``) → ``<datetime>``, HTTP dates
  (``Tue, 01 Dec 2026 19:16:38 GMT``) → ``<http-date>``; a plain date equal to the day the
  capture ran, ``YYYY-MM-DD`` or ``DD/MM/YYYY`` (only when after 2022, the end of the data)
  → ``<today>``;
* JSON keys that are durations (``elapsed``, ``duration``, ``took``, ``seconds``, names ending
  in ``_s``, ``_ms``, ``_seconds``) with a number, and every number under a ``timings`` or
  ``durations`` key → ``"<duration>"``; in command-line logs
  (stderr, text stdout) ``12.3s``/``12 ms``/``[  314 s]`` → ``<dur>`` and lines of Python warnings
  (``path.py:123: SomeWarning: …`` and the source line under it) are dropped (they name
  source lines, which a refactor moves);
* headers: ``ETag`` → ``<etag>`` (a hash of a body holding ids and times); ``Date``,
  ``Server`` and ``Content-Length`` dropped (the body is compared itself, and its raw length
  varies with the times in it); API tokens (created per capture, never written) →
  ``<token-ROLE>``.

The raw capture is kept beside OUT in ``OUT.raw`` (with ``NORMALISATION.json``: the paths and
days to replace) so that ``normalise OUT.raw OUT`` can apply amended rules again without
re-running anything.

``compare BEFORE AFTER``: every file of either side must exist on both; equal byte for byte,
or, for ``.json`` and ``.csv``, equal field by field with numbers within 1e-9 relative (1e-12
absolute near zero; CSV cells read with the file's separator, a decimal comma accepted). Prints
a table (files compared, identical, equal within 1e-9, different) and each different file with
its first differing field; exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REL_TOL = 1e-9
ABS_TOL = 1e-12

#: Command-line steps: (name, arguments of ``python -m service``, files written by --out).
#: ``{w}`` is the work folder of the capture (outputs land in ``{w}/cli``).
CLI_STEPS: list[tuple[str, list[str], list[str]]] = [
    ("ingest", ["ingest", "--json"], []),
    ("cube_export_inc_hosp", ["cube", "export", "--indicator", "inc_hosp", "--territory", "FR",
                              "69", "13", "--out", "{w}/cli/cube_export_inc_hosp.csv"],
     ["cube_export_inc_hosp.csv"]),
    ("cube_vintages", ["cube", "vintages", "--json"], []),
    ("forecast_inc_hosp_weekly_national", [
        "forecast", "--target", "inc_hosp", "--level", "national", "--sequential",
        "--out", "{w}/cli/forecast_inc_hosp_weekly_national.csv"],
     ["forecast_inc_hosp_weekly_national.csv"]),
    ("forecast_inc_hosp_weekly_department", [
        "forecast", "--target", "inc_hosp", "--level", "department", "--territory", "69", "13",
        "75", "2A", "971", "--no-calibration", "--sequential",
        "--out", "{w}/cli/forecast_inc_hosp_weekly_department.csv"],
     ["forecast_inc_hosp_weekly_department.csv"]),
    ("forecast_hosp_daily_department", [
        "forecast", "--target", "hosp", "--level", "department", "--territory", "69", "13",
        "--no-calibration", "--sequential", "--out", "{w}/cli/forecast_hosp_daily_department.csv"],
     ["forecast_hosp_daily_department.csv"]),
    ("forecast_er_visits_national", [
        "forecast", "--target", "er_visits", "--level", "national", "--no-calibration",
        "--sequential", "--out", "{w}/cli/forecast_er_visits_national.csv"],
     ["forecast_er_visits_national.csv"]),
    ("forecast_all", ["forecast-all", "--target", "inc_hosp", "icu", "--level", "national",
                      "department", "--no-calibration", "--no-trackrecord", "--sequential",
                      "--json"], []),
    ("scenario_status_quo", ["scenario", "run", "scenarios/status_quo.yaml", "--territory",
                             "FR", "69", "13", "--out", "{w}/cli/scenario_status_quo.json"],
     ["scenario_status_quo.json"]),
    ("scenario_lockdown_2020_11", ["scenario", "run", "scenarios/lockdown_2020_11.yaml",
                                   "--territory", "FR", "69", "13",
                                   "--out", "{w}/cli/scenario_lockdown_2020_11.json"],
     ["scenario_lockdown_2020_11.json"]),
    ("scenario_status_quo_2020_10_25", [
        "scenario", "run", "scenarios/status_quo.yaml", "--territory", "69", "R84", "--as-of",
        "2020-10-25", "--out", "{w}/cli/scenario_status_quo_2020_10_25.json"],
     ["scenario_status_quo_2020_10_25.json"]),
    ("scenario_compare", ["scenario", "compare", "scenarios/status_quo.yaml",
                          "scenarios/lockdown_2020_11.yaml", "--territory", "69",
                          "--out", "{w}/cli/scenario_compare.json"],
     ["scenario_compare.json"]),
]

#: Roles given a token by ``token create`` before the API step.
TOKEN_ROLES = ("admin", "analyst")

#: The API step, run with DIR's code (``python -c``; cwd and PYTHONPATH = DIR). Requests are
#: (name, role, method, path); ``{vintage}`` and ``{run}`` are filled from earlier answers.
API_SNIPPET = r'''
import json, os, subprocess, sys
from pathlib import Path

code = Path(os.environ["EQ_CODE"]).resolve()
out = Path(os.environ["EQ_API_OUT"])
tokens = json.loads(os.environ["EQ_TOKENS"])

import service
from service.app import create_app
assert Path(service.__file__).resolve().is_relative_to(code), service.__file__

app = create_app({"TESTING": True, "RATELIMIT_ENABLED": False})
client = app.test_client()
count = [0]


def headers_of(role):
    return {"Authorization": "Bearer " + tokens[role]} if role in tokens else {}


def call(name, role, method, path, body=None):
    count[0] += 1
    resp = client.open(path, method=method, headers=headers_of(role), json=body)
    ctype = resp.headers.get("Content-Type", "")
    ext = ("json" if "json" in ctype else "csv" if "csv" in ctype
           else "html" if "html" in ctype else "txt")
    stem = f"{count[0]:02d}_{name}"
    meta = {"method": method, "path": path, "role": role, "body": body,
            "status": resp.status_code,
            "headers": sorted([k, v] for k, v in resp.headers.items())}
    (out / f"{stem}.meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    data = resp.get_data()
    if ext == "json":
        try:
            data = json.dumps(json.loads(data), indent=1, ensure_ascii=False,
                              sort_keys=False).encode()
        except ValueError:
            ext = "txt"
    (out / f"{stem}.body.{ext}").write_bytes(data)
    return resp


# Scenario runs through the API, run by the job queue (a worker process), then published.
import yaml
lock = yaml.safe_load((code / "scenarios" / "lockdown_2020_11.yaml").read_text())
lock = {k: v for k, v in lock.items() if not k.startswith("_")}
lock.update(territories=["69", "13"], n_samples=200)
lock = json.loads(json.dumps(lock, default=str))  # YAML dates as the API reads them
r1 = call("scenario_submit_library", "admin", "POST", "/api/v1/scenarios/runs",
          {"name": "status_quo"})
r2 = call("scenario_submit_definition", "admin", "POST", "/api/v1/scenarios/runs",
          {"definition": lock})
jobs = subprocess.run([sys.executable, "-m", "service", "jobs", "run", "scenario", "--param",
                       "name=status_quo"], cwd=code, capture_output=True, text=True)
(out / "00_jobs_run.txt").write_text(f"exit {jobs.returncode}\n{jobs.stdout}")
sq, own = r1.get_json()["run_id"], r2.get_json()["run_id"]
call("scenario_publish", "admin", "POST", f"/api/v1/scenarios/runs/{own}/publish")
call("scenario_run_published", "analyst", "GET", f"/api/v1/scenarios/runs/{own}")
call("scenario_unpublish", "admin", "POST", f"/api/v1/scenarios/runs/{own}/unpublish")

vintage = client.get("/api/v1/vintages").get_json()["items"][0]["id"]
run = client.get("/api/v1/forecasts/runs?target=inc_hosp&level=national").get_json()
run = run["items"][0]["run_id"]
D = "/api/v1/data?indicator="
F = "/api/v1/forecasts?target="
NOV = "&start=2020-11-01&end=2020-11-30"
REQUESTS = [
    ("healthz", "public", "/healthz"),
    ("readyz", "public", "/readyz"),
    ("territories", "public", "/api/v1/territories?per_page=500"),
    ("territories_dep_csv", "public", "/api/v1/territories?level=department&format=csv"),
    ("territories_region_q", "public", "/api/v1/territories?level=region&q=auv"),
    ("territory_69", "public", "/api/v1/territories/69"),
    ("territory_unknown", "public", "/api/v1/territories/XX"),
    ("indicators", "public", "/api/v1/indicators"),
    ("indicator_inc_hosp", "public", "/api/v1/indicators/inc_hosp"),
    ("data_inc_hosp_daily", "public",
     D + "inc_hosp&territory=FR,69,13&start=2020-10-01&end=2020-12-31"),
    ("data_inc_hosp_weekly_csv", "public",
     D + "inc_hosp&frequency=weekly&territory=R84,69,48&format=csv"),
    ("data_hosp_csv_fr", "public",
     D + "hosp&territory=69,13&start=2020-10-01&end=2020-11-30&format=csv&sep=;"),
    ("data_small_counts_public", "public", D + "inc_hosp&territory=48,2A" + NOV),
    ("data_small_counts_admin", "admin", D + "inc_hosp&territory=48,2A" + NOV),
    ("data_rt", "public", D + "rt&territory=FR,R84&start=2021-01-01&end=2021-02-01"),
    ("data_incidence_estimated", "public",
     D + "incidence_rate_7d_estimated&territory=69,13&start=2021-11-15"),
    ("data_as_of", "public", D + "inc_hosp&territory=69&as_of=2021-01-01&start=2020-12-01"),
    ("data_epci", "public",
     D + "incidence_rate_7d&territory=200046977&start=2020-11-01&end=2020-11-15"),
    ("data_unknown_indicator", "public", D + "nope"),
    ("vintages", "public", "/api/v1/vintages"),
    ("vintage", "public", "/api/v1/vintages/" + vintage),
    ("forecasts_inc_hosp_national", "public", F + "inc_hosp&level=national"),
    ("forecasts_inc_hosp_dep_csv", "public",
     F + "inc_hosp&level=department&territory=69,13,48&format=csv"),
    ("forecasts_inc_hosp_dep_hub", "public", F + "inc_hosp&level=department&format=hub"),
    ("forecasts_inc_hosp_dep_admin", "admin", F + "inc_hosp&territory=48,69&horizon=2"),
    ("forecasts_icu_daily", "public", F + "icu&frequency=daily&level=department&territory=75,48"),
    ("forecasts_icu_daily_fr", "public", F + "icu&level=national&format=csv&sep=;"),
    ("forecasts_missing", "public", F + "er_visits&level=region"),
    ("forecast_runs", "public", "/api/v1/forecasts/runs"),
    ("forecast_run", "public", "/api/v1/forecasts/runs/" + run),
    ("alerts", "public", "/api/v1/alerts"),
    ("alerts_national", "public", "/api/v1/alerts?level=national"),
    ("alerts_csv", "public", "/api/v1/alerts?format=csv&sep=;"),
    ("alerts_scenario", "public", "/api/v1/alerts?source=scenario&level=national"),
    ("risk", "public", "/api/v1/risk"),
    ("risk_region_day", "public", "/api/v1/risk?level=region&date=2020-11-02"),
    ("risk_national_csv", "public", "/api/v1/risk?level=national&format=csv"),
    ("risk_dep_admin", "admin", "/api/v1/risk?level=department&date=2021-11-27&territory=69,13,75"),
    ("risk_series", "public", "/api/v1/risk/69?start=2020-10-01&end=2020-11-15"),
    ("risk_epci", "public", "/api/v1/risk?level=epci"),
    ("scenarios", "public", "/api/v1/scenarios"),
    ("scenario_runs_public", "public", "/api/v1/scenarios/runs"),
    ("scenario_runs", "analyst", "/api/v1/scenarios/runs"),
    ("scenario_run_library", "analyst", f"/api/v1/scenarios/runs/{sq}"),
    ("scenario_run_own", "analyst", f"/api/v1/scenarios/runs/{own}"),
    ("scenario_trajectories", "analyst",
     f"/api/v1/scenarios/runs/{own}/trajectories?territory=69&per_page=200"),
    ("scenario_trajectories_csv", "analyst",
     f"/api/v1/scenarios/runs/{sq}/trajectories?format=csv"),
    ("scenario_compare", "analyst", f"/api/v1/scenarios/compare?runs={sq},{own}&territory=69"),
    ("models", "public", "/api/v1/models"),
    ("models_leaderboard", "public", "/api/v1/models/leaderboard"),
    ("model_ensemble", "public", "/api/v1/models/ensemble"),
    ("jobs", "admin", "/api/v1/jobs"),
    ("job_runs", "admin", "/api/v1/jobs/runs"),
    ("audit", "admin", "/api/v1/audit?per_page=500"),
    ("audit_analyst_refused", "analyst", "/api/v1/audit"),
    ("audit_public_refused", "public", "/api/v1/audit"),
    ("openapi", "public", "/api/v1/openapi.json"),
    ("docs", "public", "/api/v1/docs"),
    ("page_overview", "public", "/"),
    ("page_territoire", "public", "/territoire"),
    ("page_territoire_69", "public", "/territoire/69"),
    ("page_scenarios", "public", "/scenarios"),
    ("page_precision", "public", "/precision"),
    ("page_methodes", "public", "/methodes"),
    ("pagedata_whoami", "analyst", "/tableau/moi"),
    ("pagedata_overview", "public", "/tableau/donnees/ensemble"),
    ("pagedata_risk", "public", "/tableau/donnees/risque"),
    ("pagedata_territory_69", "public", "/tableau/donnees/territoire/69"),
    ("pagedata_territory_fr_admin", "admin", "/tableau/donnees/territoire/FR"),
    ("pagedata_signals_69", "public", "/tableau/donnees/signaux/69"),
    ("pagedata_precision", "public", "/tableau/donnees/precision"),
    ("pagedata_execution", "analyst", f"/tableau/donnees/execution/{own}"),
    ("pagedata_scenario_definition", "public", "/tableau/donnees/scenario/status_quo"),
]
for name, role, path in REQUESTS:
    call(name, role, "GET", path)
'''

# ----------------------------------------------------------------------------- normalisation
# Not \b: an id inside a file name (``vigie_forecast_<run>.csv``) follows a word character.
RUN_ID = re.compile(r"(?<![0-9A-Za-z])\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}(?![0-9a-f])")
VINTAGE_ID = re.compile(r"(?<![0-9A-Za-z])\d{8}T\d{6}Z-[0-9a-f]{8}(?![0-9a-f])")
STAMP = re.compile(r"(?<![0-9A-Za-z])\d{8}T\d{6}(?:\.\d+)?Z")
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
HTTP_DATE = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT")
DURATION_KEY = re.compile(r"^(?:elapsed|duration|took|seconds)$|_(?:s|ms|seconds)$")
TIMINGS_KEY = re.compile(r"^(?:timings|durations)$")
LOG_DURATION = re.compile(r"\[\s*\d+(?:\.\d+)? ?s\]|\b\d+(?:\.\d+)? ?(?:s|ms)\b")
PY_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning: ")
DROPPED_HEADERS = {"date", "server", "content-length"}


class Normaliser:
    """The rules of the module docstring, with one numbering of run and vintage ids."""

    def __init__(self, replacements: dict[str, str], texts: list[str],
                 days: list[str]) -> None:
        # Longest first: a temporary home inside the work folder is replaced before it.
        self.replacements = sorted(replacements.items(), key=lambda kv: -len(kv[0]))
        runs = sorted({m for t in texts for m in RUN_ID.findall(self._paths(t))})
        vintages = sorted({m for t in texts for m in VINTAGE_ID.findall(self._paths(t))})
        self.ids = {v: f"<run-{k + 1}>" for k, v in enumerate(runs)}
        self.ids.update({v: f"<vintage-{k + 1}>" for k, v in enumerate(vintages)})
        days = sorted(d for d in set(days) if d > "2022-12-31")
        # ISO and French (dd/mm/yyyy, the dashboard's) spellings of the day of the capture.
        spelt = days + [f"{d[8:10]}/{d[5:7]}/{d[:4]}" for d in days]
        self.today = re.compile("|".join(re.escape(d) for d in spelt) or r"(?!x)x")

    def _paths(self, text: str) -> str:
        for old, new in self.replacements:
            text = text.replace(old, new)
        return text

    def text(self, text: str) -> str:
        text = self._paths(text)
        text = RUN_ID.sub(lambda m: self.ids[m.group(0)], text)
        text = VINTAGE_ID.sub(lambda m: self.ids[m.group(0)], text)
        text = STAMP.sub("<stamp>", text)
        text = DATETIME.sub("<datetime>", text)
        text = HTTP_DATE.sub("<http-date>", text)
        return self.today.sub("<today>", text)

    def log(self, text: str) -> str:
        kept, skip = [], False
        for line in text.splitlines():
            if skip:
                skip = False
                if line.startswith("  "):
                    continue
            if PY_WARNING.match(line):
                skip = True
                continue
            kept.append(LOG_DURATION.sub("<dur>", line))
        return self.text("\n".join(kept) + ("\n" if kept else ""))

    def json_value(self, value, timings: bool = False):
        if timings and isinstance(value, (int, float)) and not isinstance(value, bool):
            return "<duration>"
        if isinstance(value, dict):
            return {k: ("<duration>" if DURATION_KEY.search(str(k))
                        and isinstance(v, (int, float)) and not isinstance(v, bool)
                        else self.json_value(v, timings or bool(TIMINGS_KEY.match(str(k)))))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.json_value(v, timings) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def json(self, text: str) -> str:
        try:
            value = json.loads(text)
        except ValueError:
            return self.text(text)
        return json.dumps(self.json_value(value), indent=1, ensure_ascii=False) + "\n"

    def meta(self, text: str) -> str:
        meta = json.loads(text)
        headers = []
        for key, value in meta.get("headers", []):
            if key.lower() in DROPPED_HEADERS:
                continue
            if key.lower() == "etag":
                value = "<etag>"
            headers.append([key, value])
        meta["headers"] = headers
        return json.dumps(self.json_value(meta), indent=1, ensure_ascii=False) + "\n"

    def file(self, name: str, text: str) -> str:
        if name.endswith(".meta.json"):
            return self.meta(text)
        if name.endswith(".json"):
            return self.json(text)
        if name.endswith((".log", ".txt")):
            return self.log(text)
        return self.text(text)


# ----------------------------------------------------------------------------------- capture
def subprocess_env(code: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_")}
    data = os.environ.get("VIGIE_DATA_DIR") or str(ROOT.parent / "shared" / "data")
    env.update({
        "VIGIE_HOME": str(home), "VIGIE_DATA_DIR": data, "VIGIE_JOB_THREADS": "1",
        "PYTHONPATH": str(code), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
        "TZ": "UTC", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"})
    return env


def run_step(name: str, argv: list[str], code: Path, env: dict[str, str],
             timings: list[tuple[str, float]]) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=code, env=env, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    timings.append((name, elapsed))
    print(f"  {name:<40} exit {done.returncode}  {elapsed:6.1f} s", flush=True)
    return done


def api_step(code: Path, raw: Path, env: dict[str, str], python: str,
             timings: list[tuple[str, float]]) -> tuple[dict[str, str], bool]:
    """Tokens by ``token create``, then :data:`API_SNIPPET` with DIR's code: (tokens, ok)."""
    tokens = {}
    for role in TOKEN_ROLES:
        argv = [python, "-m", "service", "token", "create", "--role", role, "--name",
                f"equivalence-{role}"]
        done = run_step(f"token_{role}", argv, code, env, timings)
        found = re.findall(r"\S{30,}", done.stdout)
        if done.returncode != 0 or not found:
            raise SystemExit(f"token create failed: {done.stderr[-2000:]}")
        tokens[role] = found[-1]
    api_env = {**env, "EQ_CODE": str(code), "EQ_API_OUT": str(raw / "api"),
               "EQ_TOKENS": json.dumps(tokens)}
    done = run_step("api", [python, "-c", API_SNIPPET], code, api_env, timings)
    (raw / "api" / "00_api_step.stderr.log").write_text(done.stderr)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
    return tokens, done.returncode == 0


def capture(code: Path, out: Path, python: str, keep_raw: bool) -> int:
    code, out = code.resolve(), out.resolve()
    if not (code / "service" / "__main__.py").exists():
        raise SystemExit(f"{code} is not a Vigie checkout")
    work = Path(tempfile.mkdtemp(prefix="vigie-equiv-"))
    home, raw = work / "home", work / "raw"
    for sub in ("cli", "api"):
        (raw / sub).mkdir(parents=True)
    env = subprocess_env(code, home)
    timings: list[tuple[str, float]] = []
    started = time.perf_counter()
    days = [dt.date.today().isoformat(), dt.datetime.now(dt.UTC).date().isoformat()]
    print(f"capture of {code} (home {home})", flush=True)
    failed = []
    for k, (name, args, _files) in enumerate(CLI_STEPS, start=1):
        argv = [python, "-m", "service", *[a.replace("{w}", str(raw)) for a in args]]
        done = run_step(name, argv, code, env, timings)
        stem = raw / "cli" / f"{k:02d}_{name}"
        is_json = "--json" in args
        Path(f"{stem}.meta.json").write_text(json.dumps(
            {"argv": argv[1:], "returncode": done.returncode}, indent=1))
        Path(f"{stem}.stdout.{'json' if is_json else 'txt'}").write_text(done.stdout)
        Path(f"{stem}.stderr.log").write_text(done.stderr)
        if done.returncode not in (0,):
            failed.append(name)
    tokens, ok = api_step(code, raw, env, python, timings)
    if not ok:
        failed.append("api")
    total = time.perf_counter() - started
    days.append(dt.date.today().isoformat())
    days.append(dt.datetime.now(dt.UTC).date().isoformat())
    (raw / "CAPTURE.txt").write_text(textwrap.dedent(f"""\
        code: {code}
        commit: {git_head(code)}
        captured: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}
        total: {total:.1f} s (load {os.getloadavg()[0]:.1f})
        failed steps: {', '.join(failed) or 'none'}
        """) + "".join(f"  {n:<40} {s:6.1f} s\n" for n, s in timings))
    # What the rules need to be applied again later (``normalise``); tokens are not kept.
    (raw / "NORMALISATION.json").write_text(json.dumps(
        {"paths": {str(home): "<home>", str(work): "<work>", str(code): "<code>"},
         "days": sorted(set(days))}, indent=1))
    files = normalise(raw, out, {tok: f"<token-{role}>" for role, tok in tokens.items()})
    raw_copy = Path(f"{out}.raw")
    if raw_copy.exists():
        shutil.rmtree(raw_copy)
    shutil.copytree(raw, raw_copy)
    if keep_raw:
        print(f"raw capture and home kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{files} files written to {out} (raw copy: {raw_copy}) in {total:.1f} s"
          f"{'; failed: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


def normalise(raw: Path, out: Path, extra: dict[str, str] | None = None) -> int:
    """Write the normalised copy of the raw capture ``raw`` into ``out`` (replaced)."""
    rules = json.loads((raw / "NORMALISATION.json").read_text())
    files = sorted(p for p in raw.rglob("*") if p.is_file() and p.parent != raw)
    texts = {p: p.read_text(encoding="utf-8") for p in files}
    norm = Normaliser({**rules["paths"], **(extra or {})}, list(texts.values()), rules["days"])
    if out.exists():
        shutil.rmtree(out)
    for path, text in texts.items():
        target = out / path.relative_to(raw)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(norm.file(path.name, text), encoding="utf-8")
    shutil.copyfile(raw / "CAPTURE.txt", out / "CAPTURE.txt")
    return len(files)


def git_head(code: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=code, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=code,
                           capture_output=True, text=True).stdout.strip()
    return (done.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


# ----------------------------------------------------------------------------------- compare
def close(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def diff_json(a, b, where: str = "$") -> str | None:
    """The first place where ``a`` and ``b`` differ (numbers within tolerance), or None."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None if a == b else f"{where}: {a!r} != {b!r}"
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return None if close(float(a), float(b)) else f"{where}: {a!r} != {b!r}"
    if type(a) is not type(b):
        return f"{where}: {short(a)} != {short(b)}"
    if isinstance(a, dict):
        if list(a) != list(b):
            missing = [k for k in a if k not in b] + [k for k in b if k not in a]
            return f"{where}: keys differ {missing[:5] or 'in order'}"
        for key in a:
            found = diff_json(a[key], b[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            found = diff_json(x, y, f"{where}[{k}]")
            if found:
                return found
        return None
    return None if a == b else f"{where}: {short(a)} != {short(b)}"


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def number(cell: str) -> float | None:
    for candidate in (cell, cell.replace(",", ".")):
        try:
            return float(candidate)
        except ValueError:
            continue
    return None


def diff_csv(a: str, b: str) -> str | None:
    sep = ";" if a.lstrip("\ufeff").split("\n", 1)[0].count(";") else ","
    rows_a = list(csv.reader(io.StringIO(a), delimiter=sep))
    rows_b = list(csv.reader(io.StringIO(b), delimiter=sep))
    header = rows_a[0] if rows_a else []
    if len(rows_a) != len(rows_b):
        return f"{len(rows_a)} lines != {len(rows_b)}"
    for line, (ra, rb) in enumerate(zip(rows_a, rows_b, strict=True), start=1):
        if len(ra) != len(rb):
            return f"line {line}: {len(ra)} cells != {len(rb)}"
        for col, (x, y) in enumerate(zip(ra, rb, strict=True)):
            if x == y:
                continue
            nx, ny = number(x), number(y)
            if nx is not None and ny is not None and close(nx, ny):
                continue
            name = header[col] if col < len(header) else str(col)
            return f"line {line}, column {name!r}: {x!r} != {y!r}"
    return None


def diff_text(a: str, b: str) -> str:
    for line, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False),
                                  start=1):
        if x != y:
            col = next((k for k, (p, q) in enumerate(zip(x, y, strict=False)) if p != q),
                       min(len(x), len(y)))
            return (f"line {line}, col {col + 1}: {x[max(0, col - 30):col + 50]!r} != "
                    f"{y[max(0, col - 30):col + 50]!r}")
    return f"{len(a.splitlines())} lines != {len(b.splitlines())}"


def compare(before: Path, after: Path) -> int:
    names_a = {p.relative_to(before).as_posix() for p in before.rglob("*") if p.is_file()}
    names_b = {p.relative_to(after).as_posix() for p in after.rglob("*") if p.is_file()}
    names_a.discard("CAPTURE.txt")
    names_b.discard("CAPTURE.txt")
    identical, within, different = [], [], []
    for name in sorted(names_a | names_b):
        if name not in names_b:
            different.append((name, "missing in AFTER"))
            continue
        if name not in names_a:
            different.append((name, "missing in BEFORE"))
            continue
        a, b = (before / name).read_bytes(), (after / name).read_bytes()
        if a == b:
            identical.append(name)
            continue
        ta, tb = a.decode("utf-8", "replace"), b.decode("utf-8", "replace")
        found: str | None
        if name.endswith(".json"):
            try:
                found = diff_json(json.loads(ta), json.loads(tb))
            except ValueError:
                found = diff_text(ta, tb)
        elif name.endswith(".csv"):
            found = diff_csv(ta, tb)
        else:
            found = diff_text(ta, tb)
        if found is None:
            within.append(name)
        else:
            different.append((name, found))
    total = len(names_a | names_b)
    print(f"{'files compared':<28}{total:>6}")
    print(f"{'identical (bytes)':<28}{len(identical):>6}")
    print(f"{'equal within 1e-9':<28}{len(within):>6}")
    print(f"{'different':<28}{len(different):>6}")
    for name in within:
        print(f"  within 1e-9: {name}")
    for name, why in different:
        print(f"  DIFFERENT {name}: {why}")
    return 1 if different else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="run DIR's code on a fresh home and write its outputs")
    cap.add_argument("--code", type=Path, required=True, help="checkout whose code is run")
    cap.add_argument("--out", type=Path, required=True, help="folder to write (replaced)")
    cap.add_argument("--python", default=sys.executable, help="interpreter (default: this one)")
    cap.add_argument("--keep-raw", action="store_true", help="keep the raw capture and home")
    nor = sub.add_parser("normalise", help="apply the rules again to a kept raw capture")
    nor.add_argument("raw", type=Path, help="OUT.raw of a capture")
    nor.add_argument("out", type=Path, help="folder to write (replaced)")
    cmp_ = sub.add_parser("compare", help="compare two captures; exit 1 on any difference")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "capture":
        return capture(args.code, args.out, args.python, args.keep_raw)
    if args.command == "normalise":
        print(f"{normalise(args.raw, args.out)} files written to {args.out}")
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
