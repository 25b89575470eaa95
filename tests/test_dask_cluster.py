"""Vigie on a real Dask cluster, deployed as a package.

The wheel is built from this checkout (``pip wheel``) and installed into a folder of its own
(``pip install --target``); a ``dask scheduler`` and two ``dask worker`` processes (the
packages' own command lines, one thread each, one of them without a nanny, so without the
nanny's ``OMP_NUM_THREADS=1``) import Vigie from that folder only, start in directories of
their own, without ``VIGIE_*`` in their environment, and cannot see Vigie's homes nor the data
folder: where the machine allows it they run in a mount namespace where those folders are
empty (``unshare --mount``); elsewhere an audit hook refuses every Python-level open of them.

Through that cluster, a calibrated département forecast (``python -m service forecast`` with
``VIGIE_DASK_ADDRESS``: the live fit's history and every backtest date's cube are shipped) and
the refresh job (the ``forecast`` job body, as the job scheduler runs it) give the numbers of
the same runs made in this process, to 1e-9.

Skipped, saying why, only when the scheduler or the workers cannot start.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.settings import PROJECT_ROOT, Settings
from tests.api_fixtures import home_sharing

pytestmark = pytest.mark.cluster

AS_OF = "2021-03-01"
TERRITORIES = ["35", "29"]
#: What the wheel must carry beside the code (one file of each kind the code reads).
DATA_FILES = ["scenarios/status_quo.yaml", "scenarios/measures_fr.csv",
              "features/risk_thresholds.yaml", "features/schemas/city_indicators.schema.json",
              "features/storage/migrations/script.py.mako",
              "features/storage/migrations/versions/0001_initial.py",
              "service/templates/base.html", "service/static/js/charts.js",
              "service/static/vendor/plotly/plotly-basic.min.js"]
PACKAGES = ["features", "models", "scenarios", "service"]
START_TIMEOUT_S = 120

# Loaded by each worker (--preload) where no mount namespace hides the homes.
_AUDIT_HOOK = '''
import os, sys
_HIDDEN = tuple(p.rstrip("/") + "/" for p in os.environ["HIDDEN_FROM_WORKERS"].split(os.pathsep))
def _refuse(event, args):
    if event in ("open", "os.listdir", "os.scandir", "sqlite3.connect") and args and \\
            isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0])) + "/"
        if path.startswith(_HIDDEN):
            raise PermissionError(f"hidden from the Dask workers: {path}")
sys.addaudithook(_refuse)
'''


def _copy_sources(dest: Path) -> Path:
    """What ``pip install .`` reads, copied (the build writes beside its sources)."""
    dest.mkdir()
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy(PROJECT_ROOT / name, dest / name)
    for package in PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    src = _copy_sources(base / "src")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                           "--no-build-isolation", "--no-index", "-q", "-w", str(base / "dist")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = (base / "dist").glob("vigie-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """Vigie installed from its wheel into a folder of its own (the workers' only path to it)."""
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "-q", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def test_the_wheel_holds_the_code_and_its_data_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        sources = {p.relative_to(PROJECT_ROOT).as_posix()
                   for p in (PROJECT_ROOT / package).rglob("*.py") if "__pycache__" not in p.parts}
        assert sources <= names, sorted(sources - names)[:5]
    assert set(DATA_FILES) <= names, sorted(set(DATA_FILES) - names)
    assert not [n for n in names if n.startswith(("tests/", "bench/", "notebooks/"))]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Dist: distributed==" in requires  # requirements.txt's pins


def _can_hide() -> bool:
    """Whether this machine lets a process run in its own mount namespace."""
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def _hidden(command: list[str], hidden: list[Path]) -> list[str]:
    """``command`` run where each of ``hidden`` is an empty folder."""
    mounts = " && ".join(f"mount -t tmpfs hidden {shlex.quote(str(p))}" for p in hidden)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'{mounts} && exec "$@"', "sh", *command]


class Cluster:
    """A scheduler and two workers started from the ``dask`` command line."""

    def __init__(self, base: Path, site: Path, hidden: list[Path]) -> None:
        self.base, self.procs, self.logs = base, [], []
        self.namespace = _can_hide()
        dask = Path(sys.executable).parent / "dask"
        if not dask.exists():
            pytest.skip(f"the dask command line is not installed beside {sys.executable}")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("VIGIE_") and k not in ("PYTHONPATH", "OMP_NUM_THREADS",
                                                           "OPENBLAS_NUM_THREADS",
                                                           "MKL_NUM_THREADS")}
        env.update(PYTHONPATH=str(site), HIDDEN_FROM_WORKERS=os.pathsep.join(map(str, hidden)))
        scheduler_file = base / "scheduler.json"
        preload = base / "hide_homes.py"
        preload.write_text(_AUDIT_HOOK)
        # The three start at once (their imports overlap): each worker waits for the
        # scheduler file, then joins the scheduler it names.
        self._start("scheduler", [str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--dashboard-address", ":0",
                                  "--scheduler-file", str(scheduler_file)], env, hidden)
        for i, nanny in enumerate(("--nanny", "--no-nanny")):
            self._start(f"worker{i}", [str(dask), "worker", "--scheduler-file",
                                       str(scheduler_file), "--nthreads", "1",
                                       "--nworkers", "1", nanny, "--name", f"worker{i}",
                                       "--no-dashboard", "--local-directory",
                                       str(base / f"worker{i}" / "scratch"),
                                       *([] if self.namespace else ["--preload", str(preload)])],
                        env, hidden)
        deadline = time.monotonic() + START_TIMEOUT_S
        self.address = None
        while self.address is None and time.monotonic() < deadline:
            self._check_alive()
            try:  # the file may be seen half-written
                self.address = json.loads(scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.2)
        if self.address is None:
            self.close()
            pytest.skip(f"the Dask scheduler did not start in {START_TIMEOUT_S} s: "
                        f"{self.tail()}")

    def _start(self, name: str, command: list[str], env: dict, hidden: list[Path]) -> None:
        cwd = self.base / name
        cwd.mkdir()
        log = open(self.base / f"{name}.log", "w")  # noqa: SIM115 - closed in close()
        self.logs.append(log)
        self.procs.append(subprocess.Popen(
            _hidden(command, hidden) if self.namespace else command, cwd=cwd, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def _check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                self.close()
                pytest.skip(f"a Dask process exited at start ({proc.returncode}): {self.tail()}")

    def tail(self) -> str:
        return " | ".join(p.read_text()[-600:] for p in sorted(self.base.glob("*.log")))

    def wait_for_workers(self, client) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(client.scheduler_info()["workers"]) < 2:
            self._check_alive()
            if time.monotonic() > deadline:
                self.close()
                pytest.skip(f"the Dask workers did not join in {START_TIMEOUT_S} s: "
                            f"{self.tail()}")
            time.sleep(0.2)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        # Right after a long job a process can sit on SIGTERM for its whole 30 s grace (seen
        # after the refresh job): what is left after 10 s is killed, nothing is asserted here.
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in self.logs:
            log.close()


@pytest.fixture(scope="module")
def homes(real_cube, tmp_path_factory) -> dict[str, Settings]:
    """Two homes serving the real cube's vintages: one fitting on the cluster, one here."""
    base = tmp_path_factory.mktemp("homes")
    return {"local": home_sharing(real_cube, base / "local"),
            "cluster": home_sharing(real_cube, base / "cluster"), "base": base}


@pytest.fixture(scope="module")
def cluster(site, homes, real_cube, tmp_path_factory):
    from dask.distributed import Client

    hidden = [homes["base"], real_cube.home, Path(real_cube.data_dir)]
    running = Cluster(tmp_path_factory.mktemp("cluster"), site, hidden)
    try:
        with Client(running.address, timeout=60) as client:
            running.wait_for_workers(client)
            running.client = client
            yield running
    finally:
        running.close()


def test_workers_run_the_installed_package_without_the_home(cluster, site, homes, real_cube):
    from models.parallel import on_worker

    home = str(real_cube.home)

    def where() -> dict:
        import models

        try:
            sees_home = bool(os.listdir(home))
        except OSError:
            sees_home = False
        return {"models": models.__file__, "cwd": os.getcwd(), "sees_home": sees_home,
                "vigie_env": sorted(k for k in os.environ if k.startswith("VIGIE_"))}

    seen = cluster.client.run(where)
    assert len(seen) == 2
    for info in seen.values():
        assert Path(info["models"]).is_relative_to(site), info
        assert not Path(info["cwd"]).is_relative_to(PROJECT_ROOT), info
        assert not info["vigie_env"] and not info["sees_home"], info
    scheduler = cluster.client.run_on_scheduler(lambda: __import__("models").__file__)
    assert Path(scheduler).is_relative_to(site)
    # The dashboard address the use cases log serves the dashboard.
    with urllib.request.urlopen(cluster.client.dashboard_link, timeout=60) as answer:
        assert answer.status == 200

    def pools() -> list[int]:
        import sklearn.ensemble  # noqa: F401 - its OpenMP runtime, as a fit loads it
        from threadpoolctl import threadpool_info

        return [p["num_threads"] for p in threadpool_info()]

    # Each worker, the one without a nanny too: every pool at one thread inside a task.
    for worker in seen:
        inside = cluster.client.submit(on_worker, pools, workers=[worker], pure=False).result()
        assert inside and set(inside) == {1}, (worker, inside)


def _forecast_env(settings: Settings, address: str = "") -> dict[str, str]:
    return {"VIGIE_HOME": str(settings.home), "VIGIE_DATABASE_URL": settings.database_url,
            "VIGIE_DATA_DIR": str(settings.data_dir), "VIGIE_DASK_ADDRESS": address}


def _rows(path: Path) -> pd.DataFrame:
    rows = pd.read_csv(path, dtype={"location": str})
    return rows.sort_values([c for c in rows.columns if c != "value"]).reset_index(drop=True)


def _same_numbers(local: pd.DataFrame, remote: pd.DataFrame) -> None:
    assert len(local) and list(local.columns) == list(remote.columns)
    keys = [c for c in local.columns if c != "value"]
    pd.testing.assert_frame_equal(local[keys], remote[keys])
    assert np.allclose(local["value"], remote["value"], rtol=0, atol=1e-9), \
        float(np.abs(local["value"] - remote["value"]).max())


def test_a_department_forecast_on_the_cluster_matches_the_local_one(cluster, homes, runner,
                                                                   tmp_path, monkeypatch):
    args = ["forecast", "--target", "inc_hosp", "--level", "department", "--territory",
            *TERRITORIES, "--as-of", AS_OF, "--model", "growth"]
    monkeypatch.setenv("VIGIE_LOG_LEVEL", "WARNING")
    code, _, err = runner([*args, "--sequential", "--out", str(tmp_path / "local.csv")],
                          env=_forecast_env(homes["local"]))
    assert code == 0, err
    code, _, err = runner([*args, "--out", str(tmp_path / "cluster.csv")],
                          env=_forecast_env(homes["cluster"], cluster.address))
    assert code == 0, err
    assert f"({cluster.address}), dashboard http" in err  # where to watch it
    local, remote = _rows(tmp_path / "local.csv"), _rows(tmp_path / "cluster.csv")
    assert set(local["location"]) == set(TERRITORIES)
    _same_numbers(local, remote)


def _published(settings: Settings) -> pd.DataFrame:
    from models.store import ForecastStore

    runs = ForecastStore.from_settings(settings).list_runs()
    assert runs
    frames = [run.read().assign(level=run.metadata["level"]) for run in runs]
    rows = pd.concat(frames, ignore_index=True)
    return rows.sort_values([c for c in rows.columns if c != "value"]).reset_index(drop=True)


def test_the_refresh_job_on_the_cluster_matches_a_local_refresh(cluster, homes, monkeypatch):
    """The ``forecast`` job (gbm: OpenMP, every territory of the hierarchy) on the cluster,
    against the same refresh made here on one thread."""
    from features.catalog import get_engine
    from service.jobs import enqueue, get_run, run_pending
    from service.usecases.forecasts import publish_forecasts

    params = {"model": "gbm", "runs": [["inc_hosp", "weekly"]],
              "levels": ["region", "department"], "calibrate": False}
    publish_forecasts(homes["local"], model="gbm", targets=params["runs"],
                      levels=params["levels"], calibrate=False, parallel=False,
                      actor="test:local")
    monkeypatch.setenv("VIGIE_JOB_ISOLATION", "thread")
    settings = Settings.from_env(home=str(homes["cluster"].home),
                                 data_dir=str(homes["cluster"].data_dir),
                                 database_url=homes["cluster"].database_url,
                                 dask_address=cluster.address)
    engine = get_engine(settings.database_url)
    run_id = enqueue(engine, "forecast", params)
    assert run_pending(engine, settings) == [(run_id, "ok")], get_run(engine, run_id)
    result = get_run(engine, run_id)["result"]
    assert len(result["runs"]) == 2 and not result["failed"], result
    _same_numbers(_published(homes["local"]), _published(settings))


@pytest.mark.parametrize("address", ["nonsense", "tcp://127.0.0.1:9"])
def test_an_unreachable_scheduler_is_a_configuration_error(homes, runner, tmp_path, address):
    import dask

    out = tmp_path / "forecast.csv"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code, _, err = runner(["forecast", "--target", "inc_hosp", "--level", "department",
                               "--territory", "35", "--as-of", AS_OF, "--model", "baseline",
                               "--out", str(out)], env=_forecast_env(homes["cluster"], address))
    assert code == 2, err
    assert (f"configuration error: cannot reach the Dask scheduler at '{address}' "
            "(VIGIE_DASK_ADDRESS): ") in err
    assert "Traceback" not in err and not out.exists()
