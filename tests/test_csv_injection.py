"""CSV (formula) injection: text from a city file never runs as a formula in a spreadsheet.

Two lines of defence. The ingest refuses a city file whose free-text fields (``unit``,
``source``, ``licence``) start with ``= + - @`` or whose text fields hold a control character,
naming file, line, column, what was expected and found; the previous data stay served. And
every CSV export (API ``format=csv``, French Excel ``sep=;``, Hub CSV, ``cube export``)
prefixes an apostrophe to a text cell starting with ``= + - @``, tab or CR, for vintages
ingested before the rule and any other text; numbers stay numbers.

``tests/fixtures/city_indicators_synthetic_formula.csv`` is a synthetic file (made-up
indicators ``synthetic_*_probe``) carrying ``=HYPERLINK("http://evil","x")`` and DDE payloads.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

import pytest

from tests.api_fixtures import synthetic_runs
from tests.conftest import FIXTURES

SYNTHETIC = "city_indicators_synthetic_formula.csv"
HYPERLINK = '=HYPERLINK("http://evil","x")'
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?")
BASE_FILES = ("fr_departements_population.csv", "fr_communes_20k_population.csv",
              "fr_spf_hosp_incid_dep_daily.csv")


def formula_cells(cells) -> list[str]:
    """Cells a spreadsheet would evaluate: text starting with a formula character."""
    return [c for c in cells if isinstance(c, str) and c.lstrip(" ")[:1] in FORMULA_STARTS
            and not NUMBER.fullmatch(c.strip())]


def csv_cells(text: str, sep: str = ",") -> list[str]:
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=sep)
    return [cell for row in rows for cell in row]


def json_strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.fixture
def city_data(data_copy):
    """A small data folder: populations, hospital flows, the Rennes example and the
    synthetic file carrying formulas."""
    data = data_copy(*BASE_FILES)
    for name in ("city_indicators_rennes.csv", SYNTHETIC):
        shutil.copyfile(FIXTURES / name, data / name)
    return data


def exports(settings, monkeypatch, tmp_path) -> dict[str, list[str]]:
    """Every export of the served vintage that can carry a city file's text, as cells."""
    from features.catalog import get_engine
    from features.store import CubeStore
    from service.app import create_app
    from service.auth import create_token
    from service.cli import main as cli

    synthetic_runs(settings, CubeStore(settings).current_vintage()["id"])  # for the Hub CSV
    client = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()
    analyst = {"Authorization": "Bearer " + create_token(get_engine(settings.database_url),
                                                         "csv-analyst", "analyst")}
    out = {}
    r = client.get("/api/v1/indicators?per_page=500")
    assert r.status_code == 200
    out["json"] = json_strings(r.get_json())
    for name, query in (("csv", "format=csv"), ("excel_fr", "format=csv&sep=;")):
        r = client.get(f"/api/v1/indicators?{query}")
        assert r.status_code == 200
        out[name] = csv_cells(r.get_data(as_text=True), ";" if "sep=;" in query else ",")
    r = client.get("/api/v1/data?indicator=food_aid_requests&territory=35238&format=csv&sep=;",
                   headers=analyst)
    assert r.status_code == 200, r.get_json()
    out["data_excel_fr"] = csv_cells(r.get_data(as_text=True), ";")
    r = client.get("/api/v1/forecasts?territory=FR&format=hub", headers=analyst)
    assert r.status_code == 200
    out["hub"] = csv_cells(r.get_data(as_text=True))
    monkeypatch.setenv("VIGIE_HOME", str(settings.home))
    monkeypatch.setenv("VIGIE_DATABASE_URL", settings.database_url)
    target = tmp_path / "export.csv"
    assert cli(["cube", "export", "--indicator", "food_aid_requests", "--out",
                str(target)]) == 0
    out["cli"] = csv_cells(target.read_text())
    return out


def test_formula_text_in_a_city_file_is_refused_and_reaches_no_export(
        make_settings, city_data, monkeypatch, tmp_path):
    from features.ingest import run_ingest

    settings = make_settings(city_data)
    report = run_ingest(settings)

    found = exports(settings, monkeypatch, tmp_path)
    for name, cells in found.items():
        assert formula_cells(cells) == [], name
    assert not any("HYPERLINK" in c for cells in found.values() for c in cells)
    assert "CCAS de Rennes" in found["excel_fr"]  # the valid city file is served

    # The synthetic file was refused with every offending cell located.
    assert report.outcome == "partial"
    [failed] = [o for o in report.sources if o.status == "failed"]
    assert failed.source == "city_indicators" and failed.file == SYNTHETIC
    located = {(p["line"], p["column"]) for p in failed.problems}
    assert located == {(line, column) for line in (2, 3, 4, 5)
                       for column in ("unit", "source", "licence")}
    problem = next(p for p in failed.problems if (p["line"], p["column"]) == (2, "unit"))
    assert problem["file"] == SYNTHETIC
    assert problem["expected"].startswith("text not starting with =, +, - or @")
    assert problem["found"] == repr(HYPERLINK)
    assert failed.quarantined


def test_exports_neutralise_formulas_of_a_vintage_ingested_before_the_rule(
        make_settings, city_data, monkeypatch, tmp_path):
    """A vintage written before the ingest refused formulas still exports harmless CSV."""
    from features.ingest import run_ingest
    from features.sources import city_indicators

    monkeypatch.setattr(city_indicators, "check_formula_starts", lambda *a, **k: None,
                        raising=False)
    settings = make_settings(city_data)
    assert run_ingest(settings).outcome == "ok"

    found = exports(settings, monkeypatch, tmp_path)
    for name in ("csv", "excel_fr", "data_excel_fr", "hub", "cli"):
        assert formula_cells(found[name]) == [], name
    for name in ("csv", "excel_fr"):
        assert "'" + HYPERLINK in found[name]
        assert "'-2+3+cmd|' /C calc'!A0" in found[name]
        assert "'@SUM(1+1)*cmd|' /C calc'!A0" in found[name]
        assert "'+1+cmd|' /C calc'!A0" in found[name]
    # JSON is data, not a spreadsheet: it carries the text as the vintage holds it.
    assert HYPERLINK in found["json"]


def test_text_cells_are_neutralised_and_numbers_stay_numbers(app, tmp_path):
    import pandas as pd

    from service.api.formats import csv_response

    row = {"formula": HYPERLINK, "negative": -3.5, "whole": -7, "code_text": "-12",
           "dde": "-2+3+cmd|' /C calc'!A0", "at": "@SUM(A1)", "plus": "+33 1 23",
           "tab": "\tx", "cr": "\rx", "spaced": "  =1+1", "plain": "CCAS de Rennes",
           "dash": "-", "comma_text": "-4,5", "empty": None}
    with app.test_request_context():
        excel = csv_response([row], list(row), "t", ";").get_data(as_text=True)
        plain = csv_response([row], list(row), "t").get_data(as_text=True)
    expected = ["'" + HYPERLINK, "-3,5", "-7", "-12", "'-2+3+cmd|' /C calc'!A0",
                "'@SUM(A1)", "'+33 1 23", "'\tx", "'\rx", "'  =1+1", "CCAS de Rennes", "'-",
                "-4,5", ""]
    assert csv_cells(excel, ";")[len(row):] == expected
    expected[1] = "-3.5"
    assert csv_cells(plain)[len(row):] == expected

    from service.csv_safety import write_csv  # the command line's writer

    frame = pd.DataFrame({"location": ["FR", "=1+1"], "value": [-1.25, 3.0],
                          "target": ["1 wk ahead inc hosp", "@x"]})
    write_csv(frame, tmp_path / "f.csv", index=False)
    back = pd.read_csv(tmp_path / "f.csv")
    assert back["value"].tolist() == [-1.25, 3.0]  # still numbers
    assert back["location"].tolist() == ["FR", "'=1+1"]
    assert back["target"].tolist() == ["1 wk ahead inc hosp", "'@x"]


def _broken_rennes() -> str:
    """The Rennes example with control characters: a tab (line 2), BEL (3), NUL (4), a CR LF
    inside a quoted cell (record starting on line 5, which then ends on line 6), DEL (7) and
    the C1 character NEL (9)."""
    lines = (FIXTURES / "city_indicators_rennes.csv").read_text().splitlines()
    lines[1] = lines[1].replace("CCAS de Rennes", "CCAS\tde Rennes")
    lines[2] = lines[2].replace("CCAS de Rennes", "CCAS de\x07Rennes")
    lines[3] = lines[3].replace("requests/week", "requests/\x00week")
    lines[4] = lines[4].replace("SIAO 35", '"SIAO\r\n35"')
    lines[5] = lines[5].replace("calls/week", "calls/week\x7f")
    lines[7] = lines[7].replace("Ville de Rennes", "Ville de Rennes\x85")
    return "\n".join(lines) + "\n"


def test_control_characters_refuse_the_file_and_the_previous_vintage_stays(
        make_settings, data_copy):
    from features.errors import Problem, SourceError
    from features.ingest import run_ingest
    from features.store import CubeStore
    from service.app import create_app

    data = data_copy(*BASE_FILES)
    target = data / "city_indicators_rennes.csv"
    shutil.copyfile(FIXTURES / "city_indicators_rennes.csv", target)
    settings = make_settings(data)
    assert run_ingest(settings).outcome == "ok"
    before = CubeStore(settings).open("weekly")["food_aid_requests"].copy()

    # One tab in a source name (which the ingest used to take as is): refused, located.
    text = (FIXTURES / "city_indicators_rennes.csv").read_text()
    target.write_text(text.replace("SIAO 35", "SIAO\t35", 1))
    report = run_ingest(settings)
    assert report.outcome == "partial"
    [failed] = [o for o in report.sources if o.status == "failed"]
    assert [(p["file"], p["line"], p["column"]) for p in failed.problems] == [
        (target.name, 5, "source")]
    assert str(SourceError("city_indicators", target, [Problem(**failed.problems[0])])) == (
        "source 'city_indicators' rejected:\n  city_indicators_rennes.csv, line 5, column "
        "'source': expected text without control characters (tab, line break, U+0000-U+001F, "
        "U+007F-U+009F), found 'SIAO\\t35': U+0009 at character 5")

    # Every kind at once, a line break inside a quoted cell shifting the lines after it.
    with open(target, "w", encoding="utf-8", newline="") as fh:
        fh.write(_broken_rennes())
    report = run_ingest(settings)
    assert report.outcome == "partial"
    [failed] = [o for o in report.sources if o.status == "failed"]
    assert failed.source == "city_indicators" and failed.file == target.name
    got = [(p["line"], p["column"], p["found"].rsplit(": ", 1)[1]) for p in failed.problems]
    assert got == [(2, "source", "U+0009 at character 5"),
                   (3, "source", "U+0007 at character 8"),
                   (4, "unit", "U+0000 at character 10"),
                   (5, "source", "U+000D at character 5"),
                   (7, "unit", "U+007F at character 11"),
                   (9, "source", "U+0085 at character 16")]
    assert all(p["file"] == target.name and p["expected"].startswith(
        "text without control characters") for p in failed.problems)
    folders = sorted(p for p in settings.quarantine_dir.iterdir()  # named by time
                     if p.name.endswith("city_indicators"))
    assert len(folders) == 2
    quarantined = json.loads((folders[-1] / "report.json").read_text())
    assert [p["line"] for p in quarantined["problems"]] == [2, 3, 4, 5, 7, 9]

    # The last good file is served on: same values, same text.
    after = CubeStore(settings).open("weekly")["food_aid_requests"]
    assert after.equals(before) and after.attrs["source"] == "CCAS de Rennes"
    client = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()
    entries = [i for i in client.get("/api/v1/indicators?per_page=500").get_json()["items"]
               if i["name"] == "food_aid_requests"]
    assert entries and entries[0]["source"] == "CCAS de Rennes"
