"""``scenario run`` / ``scenario compare`` take ``--territory A B C`` as ``forecast`` does;
codes that are not territory codes, or not in the cube, are a clear error (exit 2)."""

from __future__ import annotations

import json

import pytest

from features.settings import Settings
from tests.scenario_helpers import synthetic_daily, with_cases

STATUS_QUO = "scenarios/status_quo.yaml"


@pytest.fixture
def scenario_home(tmp_path, monkeypatch):
    """``VIGIE_HOME`` holding one vintage of a synthetic daily cube with cases."""
    from features.store import CubeStore

    monkeypatch.setenv("VIGIE_HOME", str(tmp_path))
    monkeypatch.delenv("VIGIE_DATABASE_URL", raising=False)
    daily = with_cases(synthetic_daily(end="2020-10-24"), {"R84": 1.3, "R11": 1.1})
    CubeStore(Settings.from_env()).write_vintage({"daily": daily}, {},
                                                 {"data_dir": str(tmp_path)})
    return tmp_path


def test_run_takes_several_codes_after_one_flag(scenario_home, capsys):
    from service.cli import main

    out = scenario_home / "sq.json"
    assert main(["scenario", "run", STATUS_QUO, "--territory", "01", "69", "FR",
                 "--as-of", "2020-10-25", "--samples", "50", "--no-trajectories",
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["summary"]) == ["01", "69", "FR"]
    assert res["summary"]["FR"]["r_basis"]["basis"] == "cases"
    # The repeated form still works and adds up.
    assert main(["scenario", "run", STATUS_QUO, "--territory", "01", "--territory", "75",
                 "--as-of", "2020-10-25", "--samples", "50", "--no-trajectories",
                 "--out", str(out)]) == 0
    assert list(json.loads(out.read_text())["summary"]) == ["01", "75"]


def test_compare_takes_several_codes(scenario_home, capsys):
    from service.cli import main

    assert main(["scenario", "compare", STATUS_QUO, "scenarios/school_closure_2w.yaml",
                 "--territory", "69", "R84", "--as-of", "2020-10-25", "--samples", "50"]) == 0
    table = capsys.readouterr().out
    lines = [ln.split() for ln in table.splitlines()[1:]]
    assert {(ln[0], ln[1]) for ln in lines} == {
        (t, s) for t in ("69", "R84") for s in ("status_quo", "school_closure_2w")}


@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize(("codes", "words"), [
    (["69", "Lyon"], "--territory: 'Lyon' is not a territory code"),
    (["69", "99", "2C"], "'2C' is not a territory code"),
    (["69", "99"], "territories: not in the cube: ['99']"),
])
def test_unknown_codes_are_a_clear_error(scenario_home, capsys, command, codes, words):
    from service.cli import main

    out = ["--out", str(scenario_home / "x.json")] if command == "run" else []
    code = main(["scenario", command, STATUS_QUO, "--territory", *codes,
                 "--as-of", "2020-10-25", "--samples", "50", *out])
    assert code == 2
    assert words in capsys.readouterr().err
