"""The command line under bad input: every option and file it reads is checked before any
work, and a refusal is one line naming what was expected and what was found, exit 2, no
traceback, nothing written. Found by feeding the commands what an outsider would type
(a word for a date, 0 or -5 for a count, a binary or foreign CSV to ``score``, a huge
``--samples`` or ``--horizon``)."""

from __future__ import annotations

import pytest

SCENARIO = "scenarios/status_quo.yaml"


@pytest.mark.parametrize(("args", "message"), [
    (["cube", "export", "--indicator", "inc_hosp", "--as-of", "notadate", "--out", "x.csv"],
     "argument --as-of: expected a date YYYY-MM-DD, found 'notadate'"),
    (["cube", "info", "--as-of", "2021-02-30"],
     "argument --as-of: expected a date YYYY-MM-DD, found '2021-02-30'"),
    (["forecast", "--target", "inc_hosp", "--as-of", "lundi", "--out", "x.csv"],
     "argument --as-of: expected a date YYYY-MM-DD"),
    (["forecast", "--target", "inc_hosp", "--horizon", "0", "--out", "x.csv"],
     "argument --horizon: expected a whole number of 1 or more, found '0'"),
    (["backtest", "--target", "inc_hosp", "--start", "2021-03-01", "--end", "x",
      "--out", "x.csv"], "argument --end: expected a date YYYY-MM-DD, found 'x'"),
    (["backtest", "--target", "inc_hosp", "--start", "2021-03-01", "--end", "2021-03-08",
      "--every", "0", "--out", "x.csv"],
     "argument --every: expected a whole number of 1 or more, found '0'"),
    (["forecast-all", "--as-of", "2021-13-01"], "argument --as-of: expected a date"),
    (["scenario", "run", SCENARIO, "--samples", "-5", "--out", "s.json"],
     "argument --samples: expected a whole number of 1 or more, found '-5'"),
    (["jobs", "history", "--limit", "0"], "argument --limit: expected a whole number"),
])
def test_malformed_options_are_usage_errors(synthetic_home, capsys, args, message):
    from service.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([a if not a.endswith((".csv", ".json")) else str(synthetic_home / a)
              for a in args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not (synthetic_home / "x.csv").exists()
    assert not (synthetic_home / "s.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["scenario", "run", SCENARIO, "--territory", "69", "--samples", "100000000", "--out",
      "s.json"], "n_samples: 100000000 is greater than the maximum of 5000"),
    (["forecast", "--target", "inc_hosp", "--horizon", "100000", "--sequential", "--out",
      "x.csv"], "--horizon: inc_hosp is forecast at most 4 wk ahead; got 100000"),
])
def test_sizes_beyond_the_limits_are_refused_before_any_work(synthetic_home, runner, args,
                                                             message):
    code, _, err = runner([a if not a.endswith((".csv", ".json")) else str(synthetic_home / a)
                           for a in args])
    assert code == 2 and message in err and "Traceback" not in err
    assert not (synthetic_home / "x.csv").exists()
    assert not (synthetic_home / "s.json").exists()


def _hub_rows(target: str = "1 wk ahead inc hosp", value: str = "12.5") -> str:
    header = "forecast_date,target,target_end_date,location,type,quantile,value\n"
    return header + f"2020-12-07,{target},2020-12-12,FR,quantile,0.5,{value}\n"


@pytest.mark.parametrize(("content", "message"), [
    (b"a,b\n1,2\n", "missing column(s) forecast_date, target"),
    (b"\xff\xfe\x00garbage", "not a UTF-8 CSV file"),
    (_hub_rows(value="abc").encode(), "line 2, column 'value': expected a number, found 'abc'"),
    (_hub_rows().replace("2020-12-07", "07/12/2020").encode(),
     "line 2, column 'forecast_date': expected a date YYYY-MM-DD, found '07/12/2020'"),
    (_hub_rows(target="1 wk ahead nonsense").encode(),
     "unknown Hub target '1 wk ahead nonsense'"),
])
def test_score_names_what_is_wrong_with_the_file(synthetic_home, runner, content, message):
    path = synthetic_home / "forecasts.csv"
    path.write_bytes(content)
    code, _, err = runner(["score", str(path)])
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"error: {path}") and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_score_of_a_missing_file_or_a_folder(synthetic_home, runner):
    for path, words in ((synthetic_home / "none.csv", "no such file"),
                        (synthetic_home, "not a UTF-8 CSV file")):
        code, _, err = runner(["score", str(path)])
        assert code == 2 and err.startswith(f"error: {path}: {words}"), err
