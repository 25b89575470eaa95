"""Benchmark: ``make run`` from start to serving, and the full forecast refresh, before / after.

Both are measured on fresh homes (``VIGIE_HOME`` under a temporary folder, the venv already
installed, data from ``VIGIE_DATA_DIR`` or ``../shared/data``). The reference is the code of
``--reference-commit``, extracted with ``git archive`` into a temporary folder and run in the
same script with the same Python.

The reference commit is the parent of the first commit of the refresh work (the one that
made pooled members fit once for every level).

* ``--make-run``: the run recipe's steps (ingest, forecast-all, serve) of each version, timed
  from the first command to ``/readyz`` answering 200, then whether ``/api/v1/alerts`` (the
  capacity alerts, which need the daily ICU forecasts) and ``/api/v1/forecasts`` of every
  published target answer; the server is then stopped. ``make``'s install step is left out
  (the venv is installed; the reference's Makefile would reinstall its own requirements). The
  current version runs ``make run`` itself (with ``PORT``), so the measured command is the
  one users type.
* ``--refresh``: the full refresh, every published target × level (weekly admissions and ICU
  admissions, beds and ICU beds at 7/14 days, emergency visits): the reference's
  ``models.pipeline.forecast`` per target × level on a Dask client (what its forecast job did;
  its forecast-all made only the two weekly admission targets), against ``forecast-all`` on a
  fresh home, then again with nothing changed, then ``--force`` (past forecasts reused from
  the backtest store), then the retrospective track record (``--trackrecord``).

Usage::

    python bench/make_run.py                       # both, reference from the previous code
    python bench/make_run.py --make-run --port 8765
    python bench/make_run.py --make-run --reference recorded --wait-trackrecord
    python bench/make_run.py --refresh --trackrecord
    python bench/make_run.py --make-run --reference recorded   # reference figure, not re-run

Prints a table of wall times and the ratio after / before; the machine's load average is
printed with each figure (2 cores shared with other work make single figures noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Figures of the reference measured by this script on this machine, printed when it is not
#: re-run (labelled as such): the previous make run to serving (its forecast-all made the two
#: weekly admission targets only, 6 target × level; alerts answered 404), 2026-12-01, load
#: average 1.5-1.8 from other work; its refresh of every published target × level at load 6.7.
RECORDED = {"make_run_s": 72.0, "forecast_all_s": 66.1, "ingest_s": 3.9, "refresh_s": 1030.0,
            "note": "recorded 2026-12-01 by this script, load 1.5-1.8; 2 weekly targets only"}
PUBLISHED = (("inc_hosp", "weekly"), ("inc_icu", "weekly"), ("hosp", "daily"),
             ("icu", "daily"), ("er_visits", "weekly"))


def _pending(path: Path) -> list | None:
    """The track record file's ``pending`` targets (None: not written or unreadable yet;
    a file written before the track record was published target by target has none)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("pending") or []
    except (OSError, ValueError):
        return None


def _wait_track_record(path: Path, started: float, timeout: float) -> dict:
    """Seconds from ``started`` to the track record's first scores (the file written with
    its first target) and to the complete file (nothing pending)."""
    first = None
    while time.perf_counter() - started < timeout:
        pending = _pending(path)
        if pending is not None and first is None:
            first = time.perf_counter() - started
        if pending == []:
            return {"track record first scores after": f"{first:.0f} s",
                    "track record complete after": f"{time.perf_counter() - started:.0f} s"}
        time.sleep(1)
    return {"track record first scores after": "timeout" if first is None else f"{first:.0f} s",
            "track record complete after": "timeout"}


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def reference_commit() -> str:
    """The parent of the first commit of this work (the one that made the pooled members fit
    once for every level, before the publish use case)."""
    out = subprocess.run(["git", "log", "--format=%H", "-S", "pooled_cache", "--",
                          "models/pipeline.py"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    if not out:
        raise SystemExit("no commit introduces pooled_cache: pass --reference-commit")
    return f"{out[-1]}^"


def extract(commit: str, folder: Path) -> Path:
    """The tree of ``commit`` in ``folder`` (git archive: no change to the checkout)."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "VIGIE_HOME": str(home)}
    env.pop("VIGIE_DATABASE_URL", None)
    env.setdefault("VIGIE_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str], label: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise SystemExit(f"{label} failed ({done.returncode}):\n{tail}")
    print(f"  {label:<52} {elapsed:7.1f} s  ({load()})", flush=True)
    return elapsed


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def serve_until_ready(cmd: list[str], cwd: Path, env: dict[str, str], port: int,
                      started: float, timeout: float = 1200.0,
                      wait_for: Path | None = None) -> tuple[float, dict]:
    """Start ``cmd`` (make run or serve), wait for /readyz 200, check the pages' APIs (and,
    with ``wait_for``, wait for that file: the track record computed while serving), stop
    the process group. Returns (seconds from ``started`` to ready, what answered)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    ready = None
    try:
        while time.perf_counter() - started < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
            if _get(f"{base}/readyz")[0] == 200:
                ready = time.perf_counter() - started
                break
            time.sleep(0.5)
        if ready is None:
            raise SystemExit(f"not serving after {timeout:.0f} s")
        answers = {}
        status, body = _get(f"{base}/api/v1/alerts?level=department")
        items = json.loads(body).get("items", []) if status == 200 else []
        answers["alerts"] = f"{status}, {sum(i.get('capacity') is not None for i in items)} " \
                            f"départements with a capacity"
        for name, frequency in PUBLISHED:
            status, _ = _get(f"{base}/api/v1/forecasts?target={name}&frequency={frequency}"
                             f"&level=national&per_page=1")
            answers[f"forecasts {name}"] = status
        if wait_for is not None:
            answers.update(_wait_track_record(wait_for, started, timeout))
            status, _ = _get(f"{base}/precision")
            answers["/precision"] = status
        return ready, answers
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def make_run_before(tree: Path, home: Path, port: int) -> tuple[float, dict]:
    env = env_for(home)
    py = sys.executable
    started = time.perf_counter()
    timed([py, "-m", "service", "ingest"], tree, env, "reference: ingest")
    timed([py, "-m", "service", "forecast-all"], tree, env, "reference: forecast-all")
    return serve_until_ready([py, "-m", "service", "serve", "--port", str(port)], tree, env,
                             port, started)


def make_run_after(home: Path, port: int, wait_trackrecord: bool = False
                   ) -> tuple[float, dict]:
    env = env_for(home)
    env["VENV"] = str(Path(sys.executable).parent.parent)
    # "After installation": a requirements file newer than its stamp is installed first,
    # untimed (nothing to download when the venv is up to date).
    subprocess.run(["make", "--no-print-directory", "install", f"VENV={env['VENV']}"],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    return serve_until_ready(["make", "--no-print-directory", "run", f"PORT={port}",
                              f"VENV={env['VENV']}"], ROOT, env, port, started,
                             wait_for=home / "models" / "retrospective.json"
                             if wait_trackrecord else None)


REFERENCE_REFRESH = textwrap.dedent("""
    import json, sys, time, logging
    import pandas as pd
    logging.basicConfig(level=logging.ERROR)
    from models.forecasting import forecast
    from models.parallel import dask_client
    from models.preparation import default_opener, prepare
    from models.targets import get_target
    opener = default_opener()
    out = {}
    with dask_client() as client:
        for name, frequency in json.loads(sys.argv[1]):
            target = get_target(name, frequency)
            for level in target.levels:
                y, _ = prepare(opener(target.frequency, None), target, level)
                day = pd.Timestamp(y["date"].values[-1]) + pd.Timedelta(days=1)
                if target.unit == "wk":
                    day += pd.Timedelta(days=(0 - day.weekday()) % 7)
                t0 = time.perf_counter()
                forecast(target, level, day, "ensemble", opener, client=client)
                out[f"{name} {frequency} {level}"] = round(time.perf_counter() - t0, 1)
                print(f"{name} {frequency} {level} {out[f'{name} {frequency} {level}']}",
                      file=sys.stderr, flush=True)
    print(json.dumps(out))
""")


def refresh(tree: Path | None, work: Path, trackrecord: bool) -> dict:
    py = sys.executable
    figures = {}
    if tree is not None:
        home = work / "ref-refresh"
        env = env_for(home)
        timed([py, "-m", "service", "ingest"], tree, env, "reference: ingest")
        started = time.perf_counter()
        done = subprocess.run([py, "-c", REFERENCE_REFRESH, json.dumps(PUBLISHED)], cwd=tree,
                              env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"reference refresh failed:\n{done.stderr[-3000:]}")
        figures["before"] = time.perf_counter() - started
        figures["before_parts"] = json.loads(done.stdout.splitlines()[-1])
        print(f"  {'reference: every published target × level':<52} "
              f"{figures['before']:7.1f} s  ({load()})", flush=True)
    home = work / "new-refresh"
    env = env_for(home)
    timed([py, "-m", "service", "ingest"], ROOT, env, "ingest")
    figures["after"] = timed([py, "-m", "service", "forecast-all", "--no-trackrecord"], ROOT,
                             env, "forecast-all, fresh home")
    figures["unchanged"] = timed([py, "-m", "service", "forecast-all", "--no-trackrecord"],
                                 ROOT, env, "forecast-all again, nothing changed")
    figures["forced"] = timed([py, "-m", "service", "forecast-all", "--no-trackrecord",
                               "--force"], ROOT, env, "forecast-all --force (history reused)")
    if trackrecord:
        figures["trackrecord"] = timed([py, "-m", "service", "trackrecord"], ROOT, env,
                                       "trackrecord (after forecast-all)")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--make-run", action="store_true", help="time make run to serving")
    parser.add_argument("--refresh", action="store_true", help="time the full refresh")
    parser.add_argument("--trackrecord", action="store_true",
                        help="with --refresh: also time the retrospective track record")
    parser.add_argument("--reference", choices=("run", "recorded"), default="run",
                        help="re-run the previous code (default) or print the recorded figure")
    parser.add_argument("--reference-commit", help="default: the parent of the commit adding "
                                                   "service/usecases/forecasts.py")
    parser.add_argument("--wait-trackrecord", action="store_true",
                        help="with --make-run: keep serving until the retrospective track "
                             "record is written, and say when")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = parser.parse_args(argv)
    if not (args.make_run or args.refresh):
        args.make_run = args.refresh = True
    work = Path(tempfile.mkdtemp(prefix="vigie-make-run-"))
    tree = None
    if args.reference == "run":
        commit = args.reference_commit or reference_commit()
        tree = extract(commit, work / "reference")
        print(f"reference: {commit} extracted in {tree}")
    print(f"data: {env_for(work)['VIGIE_DATA_DIR']}; homes under {work}")
    rows = []
    try:
        if args.make_run:
            print("make run, from start to serving:")
            if tree is not None:
                before, answers = make_run_before(tree, work / "ref-run", args.port)
                label = "reference (same script)"
            else:
                before, answers = RECORDED["make_run_s"], {"note": RECORDED["note"]}
                label = "reference (recorded figure)"
            print(f"  {label:<52} {before:7.1f} s  answers: {answers}")
            after, answers = make_run_after(work / "new-run", args.port,
                                            args.wait_trackrecord)
            print(f"  {'make run (this version)':<52} {after:7.1f} s  ({load()}) answers: "
                  f"{answers}")
            rows.append(("make run → serving", before, after, label))
        if args.refresh:
            print("full forecast refresh (every published target × level):")
            figures = refresh(tree, work, args.trackrecord)
            before = figures.get("before", RECORDED["refresh_s"])
            label = ("reference (same script)" if "before" in figures
                     else "reference (recorded, load 6.7)")
            rows.append(("refresh, fresh home", before, figures["after"], label))
            rows.append(("refresh, nothing changed", before, figures["unchanged"], label))
            rows.append(("refresh, --force", before, figures["forced"], label))
            if "before_parts" in figures:
                print("  reference per target × level (s):",
                      json.dumps(figures["before_parts"]))
            if "trackrecord" in figures:
                print(f"  retrospective track record after it: {figures['trackrecord']:.1f} s")
        print(f"\n{'measure':<28} {'before (s)':>10} {'after (s)':>10} {'after/before':>13}"
              "  reference")
        for name, before, after, label in rows:
            print(f"{name:<28} {before:10.1f} {after:10.1f} {after / before:13.2f}  {label}")
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
