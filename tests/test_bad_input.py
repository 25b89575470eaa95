"""Bad input gets a clear error naming file, line, column, what was expected and what was found.

Every broken file here is made by the test from a small valid one, so each case shows exactly
what is wrong with it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from features.errors import SourceError
from features.sources import city_indicators, spf_hospital_flows
from features.sources.base import ParseContext
from features.sources.insee_territories import load_territories
from tests.source_helpers import assert_bad_case, assert_says, refusal

VALID = (
    "dep,jour,incid_hosp,incid_rea,incid_dc,incid_rad\n"
    "01,2020-03-19,1,0,0,0\n"
    "01,2020-03-20,0,0,0,1\n"
    "2A,2020-03-19,4,1,0,2\n"
    "2A,2020-03-20,3,0,1,0\n"
)
NAME = "fr_spf_hosp_incid_dep_daily.csv"


@pytest.fixture(scope="module")
def ctx(data_dir):
    return ParseContext(load_territories(data_dir)[0], today=dt.date(2026, 11, 28))


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / NAME
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_valid_file_passes(tmp_path, ctx):
    result = spf_hospital_flows.SOURCE.load(_write(tmp_path, VALID), ctx)
    assert len(result.frame) == 16


CASES = {
    "missing_column": (
        VALID.replace("incid_rea", "incid_reanimation"),
        ["line 1", "expected columns", "'incid_rea'", "missing 'incid_rea'",
         "'incid_reanimation'"]),
    "wrong_separator": (
        VALID.replace(",", "|"),
        ["line 1", "separated by ',' or ';'", "single column", "wrong separator"]),
    "wrong_encoding": (
        VALID.replace("2A,2020-03-19", "2A,2020-03-19").encode("utf-8")
        + "2B,2020-03-19,1,0,0,0 # Haute-Corse Bastia é\n".encode("latin-1"),
        ["line 6", "expected UTF-8 text", "0xe9", "Latin-1"]),
    "non_numeric_count": (
        VALID.replace("2A,2020-03-19,4,", "2A,2020-03-19,4a,"),
        ["line 4", "column 'incid_hosp'", "expected a number", "found '4a'"]),
    "negative_count": (
        VALID.replace("01,2020-03-20,0,0,0,1", "01,2020-03-20,0,-3,0,1"),
        ["line 3", "column 'incid_rea'", "expected a count >= 0", "found '-3'"]),
    "conflicting_duplicate": (
        VALID + "01,2020-03-19,7,0,0,0\n",
        ["line 2", "expected one row per (dep, jour)", "dep=01", "jour=2020-03-19",
         "lines 2, 6"]),
    "future_date": (
        VALID + "01,2027-01-05,1,0,0,0\n",
        ["line 6", "column 'jour'", "not after today (2026-11-28)", "'2027-01-05'"]),
    "unparseable_date": (
        VALID + "01,2020-13-45,1,0,0,0\n",
        ["line 6", "column 'jour'", "expected a date like 2020-03-19", "'2020-13-45'"]),
    "unknown_territory": (
        VALID + "99,2020-03-19,1,0,0,0\n20,2020-03-19,1,0,0,0\n",
        ["line 6", "column 'dep'", "expected a known INSEE territory code", "'99'",
         "line 7", "'20' (retired"]),
    "empty_file": (
        "",
        ["expected a header line and data rows", "found an empty file"]),
    "header_only": (
        "dep,jour,incid_hosp,incid_rea,incid_dc,incid_rad\n",
        ["expected data rows after the header", "only a header line"]),
    "truncated_file": (
        VALID + "2A,2020-03-21,5,",
        ["line 6", "6 fields", "the file looks truncated"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_reported_precisely(tmp_path, ctx, case):
    content, expected = CASES[case]
    assert_bad_case(spf_hospital_flows.SOURCE, tmp_path / NAME, content, ctx, case, expected)


def test_exact_duplicates_are_dropped_with_a_warning(tmp_path, ctx):
    result = spf_hospital_flows.SOURCE.load(
        _write(tmp_path, VALID + "01,2020-03-19,1,0,0,0\n"), ctx)
    assert len(result.frame) == 16
    assert any("1 exact duplicate" in w for w in result.warnings)


def test_all_problems_reported_at_once(tmp_path, ctx):
    content = VALID.replace("01,2020-03-20,0,0,0,1", "01,2020-03-20,x,-1,0,1") + \
        "99,2020-03-19,1,0,0,0\n"
    with pytest.raises(SourceError) as info:
        spf_hospital_flows.SOURCE.load(_write(tmp_path, content), ctx)
    problems = info.value.problems
    assert {(p.line, p.column) for p in problems} >= {(3, "incid_hosp"), (3, "incid_rea"),
                                                     (6, "dep")}
    assert all(p.file == NAME for p in problems)


CITY_VALID = (
    "territory_code,date,indicator,value,unit,source,frequency,aggregation\n"
    "35238,2020-11-07,food_aid_requests,412,requests/week,CCAS,weekly,sum\n"
    "35238,2020-11-14,food_aid_requests,455,requests/week,CCAS,weekly,sum\n"
)

CITY_CASES = {
    "bad_indicator_name": (CITY_VALID.replace("food_aid_requests,455", "Food Aid,455"),
                           ["line 3", "column 'indicator'", "'Food Aid'"]),
    "unknown_commune": (CITY_VALID.replace("35238,2020-11-14", "35999,2020-11-14"),
                        ["line 3", "column 'territory_code'", "'35999'"]),
    "weekly_not_saturday": (CITY_VALID.replace("2020-11-14", "2020-11-13"),
                            ["line 3", "a Saturday", "Friday"]),
    "two_units": (CITY_VALID.replace("455,requests/week", "455,requests"),
                  ["one unit per indicator", "'food_aid_requests'"]),
    "negative_count": (CITY_VALID.replace(",412,", ",-412,"),
                       ["line 2", "column 'value'", "a count >= 0", "found '-412'"]),
    "every_rule_at_once": (CITY_VALID.replace("35238,2020-11-07,food_aid_requests,412",
                                              "35999,2020-11-07,food_aid_requests,-412"),
                           ["line 2", "'35999'", "found '-412'"]),
    "bad_enum": (CITY_VALID.replace("weekly,sum\n35238,2020-11-14", "weekly,avg\n35238,2020-11-14"),
                 ["line 2", "column 'aggregation'", "one of sum, population_mean, none", "'avg'"]),
    "shadows_builtin": (CITY_VALID.replace("food_aid_requests", "inc_hosp"),
                        ["not used by Vigie's own sources", "'inc_hosp'"]),
    "missing_required": (CITY_VALID.replace("unit,source", "unit,publisher"),
                         ["line 1", "missing 'source'"]),
}


@pytest.mark.parametrize("case", sorted(CITY_CASES))
def test_city_file_bad_input(tmp_path, ctx, case):
    content, expected = CITY_CASES[case]
    path = tmp_path / "city_indicators_test.csv"
    path.write_text(content, encoding="utf-8")
    assert_says(refusal(city_indicators.SOURCE, path, ctx), expected, case)
