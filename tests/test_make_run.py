"""``make run``: a forecast that fails does not stop the service (forecast-all exits 1: the
others are published and served); nothing to forecast (exit 2) stops before serving; and
forecast-all says each failure in one line.

The Makefile's own recipe is run (``make -n`` would not run the shell's exit-status test),
with ``PY`` a stand-in interpreter that records its arguments and answers ``forecast-all``
with the exit status under test."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_publication_audit import AS_OF
from tests.test_publication_audit import home as home  # the fixture

ROOT = Path(__file__).resolve().parent.parent


def _make_run(tmp_path: Path, forecast_status: int) -> tuple[int, str, list[str]]:
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    venv = tmp_path / "venv"
    venv.mkdir()
    calls = tmp_path / "calls"
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n"
                    f'echo "$*" >> "{calls}"\n'
                    f'case "$*" in *forecast-all*) exit {forecast_status};; esac\n'
                    "exit 0\n")
    fake.chmod(0o755)
    later = time.time() + 60  # installed: the stamp is newer than requirements.txt
    for stamp in (".installed-runtime", ".installed-dev"):
        (venv / stamp).touch()
        os.utime(venv / stamp, (later, later))
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "run", f"VENV={venv}", f"PY={fake}",
                           f"VIGIE_HOME={tmp_path / 'home'}", "PORT=8123"],
                          capture_output=True, text=True, timeout=60)
    said = calls.read_text().splitlines() if calls.exists() else []
    return done.returncode, done.stdout + done.stderr, said


def test_make_run_serves_what_was_published_when_a_forecast_failed(tmp_path):
    code, out, calls = _make_run(tmp_path, forecast_status=1)
    assert code == 0, out
    assert [c.split()[1] for c in calls] == ["service"] * 3
    assert [c.split()[2] for c in calls] == ["ingest", "forecast-all", "serve"]
    assert "--port 8123" in calls[-1]
    assert "some forecasts failed (see above); serving what was published" in out


def test_make_run_stops_when_nothing_can_be_forecast(tmp_path):
    code, _, calls = _make_run(tmp_path, forecast_status=2)
    assert code != 0
    assert [c.split()[2] for c in calls] == ["ingest", "forecast-all"]


def test_make_run_serves_after_a_clean_forecast(tmp_path):
    code, out, calls = _make_run(tmp_path, forecast_status=0)
    assert code == 0 and "failed" not in out
    assert [c.split()[2] for c in calls] == ["ingest", "forecast-all", "serve"]


def test_forecast_all_says_each_failure_in_one_line_and_publishes_the_others(
        home, runner, monkeypatch):
    """One level fails with a multi-line error: one line says so, the other levels are
    published, exit 1 (what make run serves through)."""
    from service.usecases import forecasts

    real = forecasts._Publication._publish_level

    def failing(self, group, level):
        if level == "region":
            raise ValueError("singular matrix\n  at line 3\nof the fit")
        return real(self, group, level)

    monkeypatch.setattr(forecasts._Publication, "_publish_level", failing)
    code, _, err = runner(["forecast-all", "--target", "inc_hosp", "--model", "baseline",
                           "--as-of", AS_OF, "--sequential"])
    assert code == 1, err
    lines = err.splitlines()
    said = [line for line in lines if "region" in line and "failed" in line]
    assert said[0] == ("error: forecast inc_hosp (weekly) region as of 2021-01-04 failed: "
                       "ValueError: singular matrix at line 3 of the fit"), err
    assert said[1].endswith("forecast-all: 2 published, 0 unchanged, 1 failed (inc_hosp "
                            "(weekly) region: their previous forecasts stay published) in "
                            + said[1].split(" in ")[-1]), err
    assert len(said) == 2 and "at line 3\n" not in err
