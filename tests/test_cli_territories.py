"""``forecast`` and ``backtest`` refuse territory codes as ``scenario run/compare`` do: a code
that is not a territory code before any data is read, a code absent from the cube or at another
level than ``--level`` once the cube is open and before any fit; each named with what was
expected, exit 2, nothing written."""

from __future__ import annotations

import pandas as pd
import pytest

EXPECTED = ("(expected FR, a région R84, a département 69, 2A, 971, an EPCI 243500139, "
            "a commune 35238)")


def _forecast(runner, out, level: str, *codes: str) -> tuple[int, str, str]:
    return runner(["forecast", "--target", "inc_hosp", "--level", level, "--territory", *codes,
                   "--as-of", "2021-01-04", "--model", "baseline", "--horizon", "1",
                   "--sequential", "--out", str(out)])


def _backtest(runner, out, level: str, *codes: str) -> tuple[int, str, str]:
    return runner(["backtest", "--target", "inc_hosp", "--level", level, "--territory", *codes,
                   "--start", "2020-12-07", "--end", "2020-12-14", "--model", "baseline",
                   "--horizon", "1", "--sequential", "--out", str(out)])


@pytest.mark.parametrize("command", [_forecast, _backtest])
def test_malformed_codes_are_refused_before_any_data_is_read(tmp_path, monkeypatch, runner,
                                                             command):
    # An empty home: had the command opened the cube, it would fail on the missing vintage.
    monkeypatch.setenv("VIGIE_HOME", str(tmp_path))
    monkeypatch.delenv("VIGIE_DATABASE_URL", raising=False)
    out = tmp_path / "x.csv"
    code, _, err = command(runner, out, "department", "69", "ZZ", "2C", "departments")
    assert code == 2
    for bad in ("ZZ", "2C", "departments"):  # scenario groups mean nothing to a forecast
        assert f"--territory: '{bad}' is not a territory code {EXPECTED}" in err
    assert "'69'" not in err and "Traceback" not in err and "vintage" not in err
    assert not out.exists()


@pytest.mark.parametrize("command", [_forecast, _backtest])
@pytest.mark.parametrize(("level", "codes", "words"), [
    ("department", ["ZZ"], ["'ZZ' is not a territory code"]),  # the example
    ("department", ["01", "99"], ["--territory: '99' is not a territory of the cube; expected "
                                  "the code of a département (--level department)"]),
    ("department", ["20"], ["'20' is not a territory of the cube (retired: Corse, split into "
                            "2A and 2B in 1976)"]),
    ("region", ["69"], ["--territory: '69' is a département, not a région (--level region): "
                        "use --level department"]),
    ("department", ["R84", "FR"], ["'R84' is a région, not a département (--level "
                                   "department): use --level region",
                                   "'FR' is France, not a département (--level department): "
                                   "use --level national"]),
    ("national", ["R94"], ["'R94' is a région, not France (--level national)"]),
])
def test_unknown_or_misplaced_codes_are_named(synthetic_home, runner, command, level, codes,
                                              words):
    out = synthetic_home / "x.csv"
    code, _, err = command(runner, out, level, *codes)
    assert code == 2, err
    for w in words:
        assert w in err
    assert "Traceback" not in err and "KeyError" not in err
    assert len(err.strip().splitlines()) == len(words)  # one line per bad code, no more
    assert not out.exists()


def test_good_codes_still_forecast(synthetic_home, runner):
    out = synthetic_home / "fc.csv"
    code, _, err = _forecast(runner, out, "region", "R84", "R94")
    assert code == 0, err
    assert set(pd.read_csv(out, dtype={"location": str})["location"]) == {"R84", "R94"}


def test_one_function_checks_codes_for_every_command():
    """``scenario run/compare`` (CLI and schema) and ``forecast``/``backtest`` share the check."""
    import inspect

    import features.territories as territories
    import scenarios.schema as schema
    from service.cli import forecasting
    from service.cli import scenarios as scenario_cli

    assert schema.territory_code_errors is territories.territory_code_errors
    for module in (forecasting, scenario_cli):
        assert "from features.territories import territory_code_errors" in \
            inspect.getsource(module)
    # The scenario schema's pattern is the shared one plus the groups.
    assert territories.territory_code_errors(["regions", "2A", "971"]) == []
    assert territories.territory_code_errors(["regions"], groups=()) != []
    assert schema.TERRITORY_PATTERN == (r"^(FR|R[0-9]{2,3}|[0-9]{2}|2A|2B|97[0-9]|departments|"
                                        r"metro_departments|regions)$")


@pytest.mark.parametrize("command", ["forecast", "backtest"])
def test_a_target_not_forecast_at_the_level_is_refused_before_any_fit(synthetic_home, runner,
                                                                     command):
    """Emergency visits are published for France and the régions only (SurSaUD): asked at
    --level department, the command says where they are forecast instead of failing in the
    fits with a traceback."""
    out = synthetic_home / "x.csv"
    dates = (["--as-of", "2021-01-04"] if command == "forecast"
             else ["--start", "2020-12-07", "--end", "2020-12-14"])
    code, _, err = runner([command, "--target", "er_visits", "--level", "department",
                           *dates, "--sequential", "--out", str(out)])
    assert code == 2
    assert err.strip() == ("--level: er_visits (weekly) is forecast at national, region only "
                           "(where the cube observes it), not at department")
    assert not out.exists()


@pytest.mark.parametrize("command", ["forecast", "backtest"])
def test_dates_before_any_data_are_a_clear_error(synthetic_home, runner, command):
    """A forecast date before the series starts: one error line, exit 2, no traceback (the
    fits used to raise NoHistoryError, and a backtest with every date skipped a KeyError)."""
    out = synthetic_home / "x.csv"
    dates = (["--as-of", "2000-01-03"] if command == "forecast"
             else ["--start", "2000-01-03", "--end", "2000-01-17"])
    code, _, err = runner([command, "--target", "inc_hosp", "--level", "region", *dates,
                           "--model", "baseline", "--sequential", "--out", str(out)])
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        "error: no inc_hosp (weekly) data at level region ")
    assert not out.exists()
