"""Scenario YAML schema: the library is valid; bad files are rejected naming field and problem."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scenarios import ScenarioValidationError, list_library, load_definition, resolve
from service.cli import main as cli_main

REQUIRED = {"status_quo", "lockdown_2020_11", "curfew_18h", "school_closure_2w", "relaxation"}

GOOD = """
name: ok
territories: [FR, "69"]
as_of: 2020-10-25
interventions:
  - {type: lockdown, start: 2020-10-30, end: 2020-12-14}
"""

BAD = [
    # (yaml text, expected field path, expected words in the problem)
    ("territories: [FR]\n", "(top level)", "'name' is a required property"),
    ("name: x\nhorizon: 10\n", "horizon", "unknown field"),
    ("name: x\nhorizon_days: 0\n", "horizon_days", "less than the minimum"),
    ("name: x\nterritories: [Lyon]\n", "territories[0]", "does not match"),
    ("name: x\ninterventions: [{type: lockdwn, start: 0}]\n", "interventions[0].type",
     "is not one of"),
    ("name: x\ninterventions: [{type: lockdown}]\n", "interventions[0]",
     "'start' is a required property"),
    ("name: x\ninterventions: [{type: curfew, start: '2020-13-01'}]\n",
     "interventions[0].start", "not a valid date"),
    ("name: x\ninterventions: [{type: curfew, start: 2020-11-10, end: 2020-11-01}]\n",
     "interventions[0].end", "before start"),
    ("name: x\ninterventions: [{type: curfew, start: 5, end: 2}]\n",
     "interventions[0].end", "before start"),
    ("name: x\ninterventions: [{type: custom, start: 0}]\n", "interventions[0].effect",
     "needs an explicit effect"),
    ("name: x\ninterventions: [{type: lockdown, start: 0, effect: {transmission: -1.5}}]\n",
     "interventions[0].effect.transmission", "less than or equal to the minimum"),
    ("name: x\ninterventions: [{type: lockdown, start: 0, effect: {transmision: -0.5}}]\n",
     "interventions[0].effect.transmision", "unknown field"),
    ("name: x\ninterventions: [{type: lockdown, start: 0, effect: guessed}]\n",
     "interventions[0].effect", "'history' was expected"),
    ("name: x\ninterventions: [{type: curfew, hour: 23, start: 0}]\n",
     "interventions[0].hour", "no history estimate"),
    ("name: x\ninterventions: [{type: lockdown, start: 0, lifts: [lockdown]}]\n",
     "interventions[0].lifts", "only a relaxation"),
    ("name: x\ncapacity: {icu: {'69': -5}}\n", "capacity.icu.69", "less than the minimum"),
    ("name: x\ncapacity: {icu: lots}\n", "capacity.icu", "'cube' was expected"),
    ("name: x\nparameters: {gi_mean: -1}\n", "parameters.gi_mean", "less than or equal"),
    ("name: x\nparameters: {gi_median: 5}\n", "parameters.gi_median", "unknown field"),
    ("name: x\nas_of: 2020-02-30\n", "as_of", "not a valid date"),
    ("- just\n- a list\n", "(top level)", "expected a mapping"),
    ("name: [unclosed\n", "(file)", "not valid YAML"),
]


def test_library_holds_the_required_scenarios_and_all_are_valid():
    names = {item["name"] for item in list_library()}
    assert names >= REQUIRED
    for item in list_library():
        scen = resolve(item["path"], as_of="2021-03-28")
        assert scen.horizon_days > 0 and scen.territories


def test_lockdown_2020_11_is_the_november_lockdown_from_history():
    scen = resolve(Path("scenarios/lockdown_2020_11.yaml"))
    assert scen.as_of == pd.Timestamp("2020-10-25")
    (iv,) = scen.interventions
    assert (iv.type, iv.effect) == ("lockdown", "history")
    assert iv.start == pd.Timestamp("2020-10-30") and iv.end == pd.Timestamp("2020-12-14")


def test_relative_dates_resolve_against_as_of():
    scen = resolve(Path("scenarios/school_closure_2w.yaml"), as_of="2021-01-10")
    (iv,) = scen.interventions
    assert iv.start == pd.Timestamp("2021-01-13")
    assert iv.end == pd.Timestamp("2021-01-26")  # 14 days inclusive


def test_good_file_loads(tmp_path):
    p = tmp_path / "good.yaml"
    p.write_text(GOOD)
    d = load_definition(p)
    assert d["interventions"][0]["start"] == "2020-10-30"


@pytest.mark.parametrize(("text", "field", "problem"), BAD)
def test_bad_files_are_rejected_naming_field_and_problem(tmp_path, text, field, problem):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioValidationError) as info:
        load_definition(p)
    msg = str(info.value)
    assert str(p) in msg  # the file
    assert any(line.split(": ", 2)[1] == field and problem in line
               for line in msg.splitlines()), msg


def test_missing_as_of_is_named():
    with pytest.raises(ScenarioValidationError, match="as_of: missing"):
        resolve({"name": "x"})


def test_cli_reports_invalid_file_with_field(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\ninterventions: [{type: lockdwn, start: 0}]\n")
    code = cli_main(["scenario", "run", str(p), "--out", str(tmp_path / "o.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "interventions[0].type" in err and "lockdwn" in err


def _numeric_leaves(node, path="$"):
    """Every sub-schema of SCHEMA that accepts a number, with its path."""
    if isinstance(node, dict):
        types = node.get("type")  # under "properties", "type" is a field's sub-schema
        types = types if isinstance(types, list) else [types] if isinstance(types, str) else []
        if {"number", "integer"} & set(types):
            yield path, node
        for key, value in node.items():
            yield from _numeric_leaves(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _numeric_leaves(value, f"{path}[{i}]")


def test_every_number_has_bounds():
    """No scenario field accepts an unbounded number (a typo must be refused, not projected)."""
    from scenarios import SCHEMA

    leaves = list(_numeric_leaves(SCHEMA))
    assert len(leaves) > 30
    for path, node in leaves:
        assert "maximum" in node or "exclusiveMaximum" in node, path
        assert "minimum" in node or "exclusiveMinimum" in node, path


@pytest.mark.parametrize(("text", "where"), [
    ("name: x\nseed: 99999999999\n", "seed"),
    ("name: x\nparameters: {gi_mean: 50}\n", "parameters.gi_mean"),
    ("name: x\nparameters: {ihr: 2.9}\n", "parameters.ihr"),
    ("name: x\ncapacity: {icu: 5000000}\n", "capacity.icu"),
    ("name: x\ninterventions: [{type: lockdown, start: 0, duration_days: 5000}]\n",
     "interventions[0].duration_days"),
    ("name: x\ninterventions: [{type: lockdown, start: 99999}]\n", "interventions[0].start"),
])
def test_large_values_are_refused(tmp_path, text, where):
    f = tmp_path / "big.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioValidationError) as err:
        load_definition(f)
    assert any(e.startswith(f"{where}:") and "maximum" in e for e in err.value.errors), \
        err.value.errors


# ---------------------------------------------------------------------------- bounds on work
def _sized_leaves(node, kind: str, path="$"):
    """Every sub-schema of SCHEMA of type ``kind`` (string or array), with its path."""
    if isinstance(node, dict):
        types = node.get("type")
        types = types if isinstance(types, list) else [types] if isinstance(types, str) else []
        if kind in types:
            yield path, node
        for key, value in node.items():
            yield from _sized_leaves(value, kind, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _sized_leaves(value, kind, f"{path}[{i}]")


def test_every_list_and_free_text_has_a_length_bound():
    """A definition comes from any planner through the API: no list or text is unbounded."""
    from scenarios import SCHEMA

    arrays = list(_sized_leaves(SCHEMA, "array"))
    assert len(arrays) >= 4
    for path, node in arrays:
        assert "maxItems" in node, path
    for path, node in _sized_leaves(SCHEMA, "string"):
        if "integer" in (node.get("type") or []) or path.endswith(".if"):
            continue  # a date (ISO pattern or bounded days), or the test of an if/then/else
        assert "maxLength" in node or "pattern" in node or "enum" in node \
            or "const" in node, path


def _errors(definition: dict) -> list[str]:
    from scenarios import validate_definition

    with pytest.raises(ScenarioValidationError) as err:
        validate_definition(definition, "api")
    return err.value.errors


@pytest.mark.parametrize(("parameters", "where"), [
    ({"max_los": 181}, "parameters.max_los"), ({"max_delay": 61}, "parameters.max_delay"),
    ({"max_gi": 31}, "parameters.max_gi"), ({"max_los": 10**12}, "parameters.max_los"),
])
def test_truncations_have_epidemiological_maxima(parameters, where):
    errors = _errors({"name": "x", "parameters": parameters})
    assert any(e.startswith(f"{where}:") and "maximum" in e for e in errors), errors


@pytest.mark.parametrize(("definition", "where", "words"), [
    ({"name": "x", "interventions": [{"type": "lockdown", "start": i} for i in range(21)]},
     "interventions", "too long"),
    ({"name": "x", "territories": [f"{i:02d}" for i in range(1, 96)] + ["FR"] * 26},
     "territories", "too long"),
    ({"name": "x" * 101}, "name", "too long"),
    ({"name": "x", "description": "d" * 2001}, "description", "too long"),
    ({"name": "x", "interventions": [{"type": "lockdown", "start": 0, "label": "l" * 201}]},
     "interventions[0].label", "too long"),
    ({"name": "x", "interventions": [{"type": "relaxation", "start": 0,
                                      "lifts": ["curfew", "curfew"]}]},
     "interventions[0].lifts", "non-unique"),
    ({"name": "x", "as_of": "0001-01-01"}, "as_of", "does not match"),
    ({"name": "x", "interventions": [{"type": "lockdown", "start": "9999-01-01"}]},
     "interventions[0].start", "does not match"),
    ({"name": "x", "interventions": [{"type": "lockdown", "start": "2020-01-01",
                                      "end": "2022-06-01"}]},
     "interventions[0].end", "at most 730"),
    ({"name": "x", "interventions": [{"type": "lockdown", "start": -3000, "end": 3000}]},
     "interventions[0].end", "at most 730"),
    ({"name": "x", "parameters": {"gi_mean": float("nan")}}, "parameters.gi_mean",
     "not a finite number"),
    ({"name": "x", "capacity": {"icu": float("inf")}}, "capacity.icu", ""),
])
def test_sizes_dates_and_non_finite_numbers_are_refused(definition, where, words):
    errors = _errors(definition)
    assert any(e.startswith(f"{where}:") and words in e for e in errors), errors


def test_run_size_is_capped_and_the_library_fits():
    """territories × samples × days is what the engine's memory grows with (a planner's run of
    every département, 5,000 samples, 180 days and max_delay 120 reached 9 GB)."""
    from scenarios.schema import MAX_CELLS, run_size, validate_definition

    heavy = {"name": "x", "territories": ["departments"], "n_samples": 5000,
             "horizon_days": 180, "parameters": {"max_delay": 60}}
    errors = _errors(heavy)
    assert any("too large a run" in e and f"{run_size(heavy):,}" in e for e in errors), errors
    assert run_size(heavy) == 101 * 5000 * (7 + 60 + 180)
    # Every département at the defaults (500 samples, 42 days) still runs.
    validate_definition({"name": "x", "territories": ["departments"]})
    for item in list_library():
        assert run_size(load_definition(item["path"])) <= MAX_CELLS / 10, item["name"]
    # A territory override from the command line is held to the same cap.
    with pytest.raises(ScenarioValidationError, match="too large a run"):
        resolve({"name": "x", "n_samples": 5000, "horizon_days": 180}, as_of="2021-01-15",
                 territories=["departments", "regions"])


def test_as_of_outside_the_century_is_refused():
    for day in ("1500-01-01", "2262-04-12"):
        with pytest.raises(ScenarioValidationError, match="as_of"):
            resolve({"name": "x"}, as_of=day)


# ---------------------------------------------------------------------------- YAML bounds
def _alias_bomb(levels: int = 4) -> str:
    lines = ["name: bomb", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 8) + "]")
    lines.append(f"description: *a{levels - 1}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "words"), [
    (_alias_bomb(), "anchors and aliases"),
    ("name: &n x\ndescription: y\n", "anchors and aliases"),
    ("name: x\ndescription: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 32"),
    ("name: x\ndescription: " + "[" * 100_000 + "\n", "nested deeper than 32"),
    ("name: x\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(40)) + "  " * 40 + "v: 1\n",
     "nested deeper than 32"),
    ("name: x\ndescription: |\n" + "  " + "x" * 300_000 + "\n", "larger than 256 KiB"),
])
def test_yaml_aliases_depth_and_size_are_refused(tmp_path, text, words):
    f = tmp_path / "hostile.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioValidationError) as err:
        load_definition(f)
    assert err.value.source == str(f)
    assert any(e.startswith("(file):") and words in e for e in err.value.errors), \
        err.value.errors


def test_cli_answers_an_alias_bomb_naming_the_file(tmp_path, capsys):
    """Nine levels of aliases stand for 8**9 = 134 million strings: refused while composing
    (before, the definition's deep copy never ended)."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb(9))
    code = cli_main(["scenario", "run", str(bomb), "--out", str(tmp_path / "o.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert str(bomb) in err and "aliases" in err
    assert not (tmp_path / "o.json").exists()


def test_python_m_service_refuses_a_hostile_file_before_loading_the_data_stack(tmp_path):
    """``python -m service scenario run`` checks the file with PyYAML alone, before the command
    line imports pandas, xarray and the ingest (the check must not need them)."""
    import subprocess
    import sys

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb(9))
    probe = ("import runpy, sys; sys.argv = ['service', 'scenario', 'run', sys.argv[1], "
             "'--out', sys.argv[2]]\n"
             "try:\n    runpy.run_module('service', run_name='__main__')\n"
             "except SystemExit as exit:\n"
             "    heavy = sorted(m for m in ('pandas', 'xarray', 'features.ingest') "
             "if m in sys.modules)\n"
             "    print('exit', exit.code, 'heavy', heavy)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(bomb), str(tmp_path / "o.json")],
                          capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).resolve().parent.parent))
    assert "exit 2 heavy []" in done.stdout, (done.stdout, done.stderr[-2000:])
    assert str(bomb) in done.stderr and "aliases" in done.stderr
