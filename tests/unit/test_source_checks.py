"""The checks every source shares (features/sources/base.py) and a whole source's validation,
on files of a few lines written by the test: separators, encodings, headers, numbers, dates,
territory codes, duplicates, control characters and formula starts, each problem with its
line and column as an editor shows them; and the ingest's quarantine and raw store."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from features.errors import SourceError
from features.sources import base
from features.sources.base import Collector, ParseContext
from features.sources.spf_hospital_flows import SOURCE as FLOWS
from tests.unit.tiny import territories

TODAY = dt.date(2021, 6, 30)
COLUMNS = {"territory": ("dep", "dep_code"), "date": ("jour", "date"), "n": ("n",)}


def _read(tmp_path, text: str | bytes, name: str = "f.csv", **kw):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    check = Collector("test", path)
    return base.read_table(path, COLUMNS, check, **kw), check


def _problems(exc: pytest.ExceptionInfo) -> list[tuple]:
    return [(p.line, p.column, p.expected, p.found) for p in exc.value.problems]


def test_comma_and_semicolon_files_with_a_bom_read_the_same(tmp_path):
    comma, _ = _read(tmp_path, "dep,jour,n\n01,2021-01-01,3\n", "a.csv")
    semi, _ = _read(tmp_path, "\ufeffdep_code;date;n\r\n01;2021-01-01;3\r\n", "b.csv")
    for frame in (comma, semi):
        assert list(frame.columns) == ["territory", "date", "n"]
        assert frame.iloc[0].tolist() == ["01", "2021-01-01", "3"]  # codes stay text
    assert semi.attrs["original_columns"]["territory"] == "dep_code"


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    with pytest.raises(SourceError) as exc:
        _read(tmp_path, "dep,jour,n\n01,2021-01-01,3\n02,2021-01-01,\xe9\n".encode("latin-1"))
    [(line, _, expected, found)] = _problems(exc)
    assert line == 3 and expected == "UTF-8 text" and "byte 0xe9" in found


@pytest.mark.parametrize(("text", "expected", "found"), [
    ("", "a header line and data rows", "an empty file"),
    ("dep,jour,n\n", "data rows after the header", "only a header line"),
    ("dep,jour\n01,2021-01-01\n", "columns 'dep', 'jour', 'n'", "missing 'n'"),
    ("dep|jour|n\n01|2021-01-01|3\n", "separated by ',' or ';'", "wrong separator: '|'"),
])
def test_shape_problems_say_what_was_expected(tmp_path, text, expected, found):
    with pytest.raises(SourceError) as exc:
        _read(tmp_path, text)
    [problem] = exc.value.problems
    assert expected in problem.expected and found in problem.found


def test_a_truncated_last_line_is_reported(tmp_path):
    with pytest.raises(SourceError) as exc:
        _read(tmp_path, "dep,jour,n\n01,2021-01-01,3\n02,2021-0")
    [(line, _, expected, found)] = _problems(exc)
    assert line == 3 and expected == "3 fields" and "truncated" in found


def test_numbers_decimal_commas_counts_and_bounds(tmp_path):
    frame, check = _read(tmp_path, "dep,jour,n\n01,d,\"12,5\"\n02,d,-3\n03,d,2.5\n04,d,x\n"
                                   "05,d,\n06,d,7\n")
    values = base.to_number(frame, "n", check, count=True, maximum=10)
    assert values.iloc[0] == 12.5 and values.iloc[5] == 7.0
    found = [(p.line, p.expected, p.found) for p in check.problems]
    assert found == [(5, "a number", "'x'"), (6, "a value", "an empty cell"),
                     (3, "a count >= 0", "'-3'"), (2, "a whole number", "'12,5'"),
                     (4, "a whole number", "'2.5'"), (2, "a value <= 10", "'12,5'")]
    assert all(p.column == "n" for p in check.problems)


def test_more_than_ten_bad_values_are_counted_not_listed(tmp_path):
    rows = "".join(f"{i:02d},d,x\n" for i in range(1, 15))
    frame, check = _read(tmp_path, "dep,jour,n\n" + rows)
    base.to_number(frame, "n", check)
    assert len(check.problems) == base.MAX_PROBLEMS_PER_CHECK + 1
    assert check.problems[-1].found == "4 more such values"


def test_dates_iso_or_french_never_in_the_future(tmp_path):
    frame, check = _read(tmp_path, "dep,jour,n\n01,2021-01-02,1\n01,03/01/2021,1\n"
                                   "01,2021-13-01,1\n01,2021-07-01,1\n")
    dates = base.to_date(frame, "date", check, TODAY)
    assert dates.iloc[:2].tolist() == [pd.Timestamp("2021-01-02"), pd.Timestamp("2021-01-03")]
    assert [(p.line, p.column, p.found) for p in check.problems] == [
        (4, "jour", "'2021-13-01'"), (5, "jour", "'2021-07-01'")]
    assert "not after today (2021-06-30)" in check.problems[1].expected


def test_a_sliding_week_must_span_seven_days(tmp_path):
    frame = pd.DataFrame({"week": ["2020-10-06-2020-10-12", "2020-10-06-2020-10-13",
                                   "2020-10-06"]})
    check = Collector("test", tmp_path / "w.csv")
    end = base.window_end(frame, "week", check, TODAY)
    assert end.iloc[0] == pd.Timestamp("2020-10-12")
    assert [(p.line, p.expected.split(" (")[0]) for p in check.problems] == [
        (4, "a 7-day window like 2020-10-06-2020-10-12"), (3, "a window of 7 days")]


def test_unknown_and_retired_codes_once_each_with_their_first_line(tmp_path):
    frame = pd.DataFrame({"territory": ["35", "99", "20", "99", None]})
    check = Collector("test", tmp_path / "t.csv")
    base.check_territories(frame, "territory", check, territories())
    assert [(p.line, p.found) for p in check.problems] == [
        (3, "'99'"), (4, "'20' (retired: Corse, split into 2A and 2B in 1976)"),
        (6, "an empty cell")]


def test_exact_duplicates_are_dropped_conflicting_ones_refused(tmp_path):
    frame = pd.DataFrame({"territory": ["01", "01", "02"], "date": ["d", "d", "d"],
                          "n": [1.0, 1.0, 2.0]})
    check = Collector("test", tmp_path / "dups.csv")
    kept = base.drop_duplicates(frame, ["territory", "date"], ["n"], check)
    assert kept.index.tolist() == [0, 2] and check.problems == []
    assert check.warnings == ["dups.csv: dropped 1 exact duplicate rows"]
    clash = frame.assign(n=[1.0, 5.0, 2.0])
    check = Collector("test", tmp_path / "dups.csv")
    base.drop_duplicates(clash, ["territory", "date"], ["n"], check)
    [problem] = check.problems
    assert problem.line == 2 and "conflicting rows for territory=01, date=d on lines 2, 3" \
        in problem.found


def test_control_characters_and_formula_starts_are_refused(tmp_path):
    path = tmp_path / "city.csv"
    path.write_text('name,source\n"Ren\nnes",ok\nLyon,"a\tb"\n', encoding="utf-8")
    check = Collector("test", path)
    base.check_control_characters(path, check, ["name", "source"])
    assert [(p.line, p.column, p.found.split(": ")[1]) for p in check.problems] == [
        (2, "name", "U+000A at character 4"), (4, "source", "U+0009 at character 2")]
    frame = pd.DataFrame({"name": ["=HYPERLINK(x)", " +1", "Rennes", "@SUM", "-2", None]})
    check = Collector("test", path)
    base.check_formula_starts(frame, ["name", "absent"], check)
    assert [p.line for p in check.problems] == [2, 3, 5, 6]


def test_place_names_compare_without_accents_case_or_hyphens():
    assert base.name_key("Côtes-d’Armor") == base.name_key("COTES D'ARMOR") == "cotes d'armor"


def test_wide_to_tidy_drops_missing_values():
    frame = pd.DataFrame({"territory": ["01", "02"], "date": ["2021-01-01", "2021-01-02"],
                          "a": [1.0, np.nan], "b": [np.nan, 4.0]})
    tidy = base.to_tidy(frame, {"a": "ind_a", "b": "ind_b"})
    assert tidy[["territory", "indicator", "value"]].values.tolist() == [
        ["01", "ind_a", 1.0], ["02", "ind_b", 4.0]]
    assert tidy["date"].dtype == "datetime64[ns]"
    assert base.to_tidy(frame, {}).columns.tolist() == base.TIDY_COLUMNS


def test_a_source_lists_every_problem_of_its_file_at_once(tmp_path):
    path = tmp_path / "fr_spf_hosp_incid_dep_daily.csv"
    path.write_text("dep,jour,incid_hosp,incid_rea,incid_dc,incid_rad\n"
                    "35,2021-01-01,3,1,0,2\n"
                    "99,2021-01-01,3,1,0,2\n"
                    "22,2031-01-01,-1,1,0,2\n"
                    "69,2021-01-01,2.5,1,0,x\n", encoding="utf-8")
    ctx = ParseContext(territories(), TODAY)
    with pytest.raises(SourceError) as exc:
        FLOWS.load(path, ctx)
    found = {(p.line, p.column, p.expected.split(" (")[0]) for p in exc.value.problems}
    assert found == {(3, "dep", "a known INSEE territory code"),
                     (4, "jour", "a date not after today"),
                     (4, "incid_hosp", "a count >= 0"), (5, "incid_hosp", "a whole number"),
                     (5, "incid_rad", "a number")}
    assert exc.value.to_dict()["source"] == "spf_hospital_flows"
    good = tmp_path / "ok" / path.name
    good.parent.mkdir()
    good.write_text("dep,jour,incid_hosp,incid_rea,incid_dc,incid_rad\n35,2021-01-01,3,1,0,2\n"
                    "35,2021-01-01,3,1,0,2\n", encoding="utf-8")
    result = FLOWS.load(good, ctx)
    assert sorted(result.frame["indicator"]) == ["inc_death", "inc_discharge", "inc_hosp",
                                                 "inc_icu"]
    assert result.files[0].rows == 4 and len(result.files[0].sha256) == 64
    assert result.warnings == [f"{path.name}: dropped 1 exact duplicate rows"]
    assert result.summary()["first_date"] == "2021-01-01"


def test_quarantine_keeps_the_file_and_every_problem_and_raw_copies_are_content_addressed(
        tmp_path):
    from features.ingest import keep_raw, quarantine
    from features.settings import Settings

    settings = Settings.from_env(home=str(tmp_path / "home"), data_dir=str(tmp_path),
                                 database_url=f"sqlite:///{tmp_path}/unused.sqlite")
    bad = tmp_path / "flows.csv"
    bad.write_text("dep,jour\n", encoding="utf-8")
    error = SourceError("spf_hospital_flows", bad, [
        base.Problem("flows.csv", "columns 'dep', 'jour', 'incid_hosp'", "missing", line=1)])
    folder = quarantine(settings, "spf_hospital_flows", bad, error)
    assert folder.parent == settings.quarantine_dir and folder.name.endswith("_spf_hospital_flows")
    assert (folder / "flows.csv").read_text(encoding="utf-8") == "dep,jour\n"
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert report["problems"][0]["line"] == 1 and "rejected" in report["message"]
    raw = base.raw_file(bad)
    first = keep_raw(settings, raw)
    assert first == settings.raw_dir / raw.sha256[:2] / f"{raw.sha256}-flows.csv"
    assert keep_raw(settings, raw) == first and first.read_bytes() == bad.read_bytes()
