"""SI-DEP daily positives and tests (France, régions): real files, official format, bad input,
quarantine and last good file, and a source that is missing or stops early."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.ingest import run_ingest
from features.sources import spf_sidep
from features.sources.base import ParseContext
from features.sources.insee_territories import load_territories
from features.store import CubeStore
from tests.conftest import FIXTURES
from tests.source_helpers import assert_bad_case, broken_between_ingests, refusal

FRANCE, REGION = spf_sidep.SOURCES


@pytest.fixture(scope="module")
def ctx(data_dir):
    return ParseContext(load_territories(data_dir)[0], today=dt.date(2026, 11, 28))


def _by(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index(["territory", "date", "indicator"])["value"]


# ---------------------------------------------------------------------------------- real files
def test_real_france_file_matches_raw(data_dir, ctx):
    raw = pd.read_csv(data_dir / "fr_spf_sidep_fra_daily.csv", dtype={"cl_age90": str})
    raw = raw[raw["cl_age90"] == "0"]
    result = FRANCE.load(data_dir / "fr_spf_sidep_fra_daily.csv", ctx)
    frame = result.frame
    assert set(frame["territory"]) == {"FR"}
    totals = frame.groupby("indicator")["value"].sum()
    assert totals["inc_cases"] == raw["P"].sum() and totals["inc_tests"] == raw["T"].sum()
    assert frame["date"].min() == pd.Timestamp("2020-05-13")
    assert frame["date"].max() == pd.Timestamp("2021-12-31")
    specs = {s.name: s for s in result.indicators}
    assert specs["inc_cases"].aggregation == "sum" and specs["inc_cases"].count
    assert not specs["inc_cases"].stock


def test_real_region_file_maps_every_code(data_dir, ctx):
    raw = pd.read_csv(data_dir / "fr_spf_sidep_reg_daily.csv", dtype={"reg": str})
    frame = REGION.load(data_dir / "fr_spf_sidep_reg_daily.csv", ctx).frame
    codes = set(frame["territory"])
    # 13 metropolitan + 5 overseas régions, and SPF's 05/07/08 collectivités.
    assert codes == {"R11", "R24", "R27", "R28", "R32", "R44", "R52", "R53", "R75", "R76",
                     "R84", "R93", "R94", "R01", "R02", "R03", "R04", "R06", "975", "977",
                     "978"}
    values = _by(frame)
    for reg, code in (("84", "R84"), ("05", "975"), ("07", "977"), ("08", "978")):
        rows = raw[raw["reg"] == reg]
        assert values.loc[code].xs("inc_cases", level="indicator").sum() == rows["P"].sum()
        assert values.loc[code].xs("inc_tests", level="indicator").sum() == rows["T"].sum()
    # SPF's 05, 07, 08: each is the collectivité whose INSEE population is nearest its own.
    pops = raw.groupby("reg")["pop"].first()
    populations = ctx.territories.population(["975", "977", "978"])
    for reg, code in (("05", "975"), ("07", "977"), ("08", "978")):
        nearest = (np.log(populations) - np.log(pops[reg])).abs().idxmin()
        assert nearest == code == spf_sidep.SIDEP_REGION_CODES[reg]


# ------------------------------------------------------------------------- official format
def test_official_france_semicolon_bom_decimal_commas(ctx):
    path = FRANCE.locate(FIXTURES)
    assert path.name.startswith("sp-pos-quot-fra-")
    frame = FRANCE.load(path, ctx).frame
    values = _by(frame)
    assert len(frame) == 18  # 9 days x 2 indicators, age classes 09 and 89 left out
    assert values[("FR", pd.Timestamp("2021-11-20"), "inc_cases")] == 1000
    assert values[("FR", pd.Timestamp("2021-11-28"), "inc_tests")] == 1080 * 20


def test_official_region_codes_unpadded_and_collectivities(ctx):
    path = REGION.locate(FIXTURES)
    assert path.name.startswith("sp-pos-quot-reg-")
    frame = REGION.load(path, ctx).frame
    assert set(frame["territory"]) == {"R84", "R11", "975", "R01"}
    values = _by(frame)
    assert values[("R84", pd.Timestamp("2021-11-21"), "inc_cases")] == 101
    assert values[("975", pd.Timestamp("2021-11-21"), "inc_tests")] == 3


# ----------------------------------------------------------------------------- bad input
REG_VALID = (
    "reg,jour,cl_age90,pop,P,T,Ti,Tp,Td\n"
    "84,2021-11-20,0,8000000,100,2000,1.2,5.0,25.0\n"
    "84,2021-11-20,9,900000,3,50,0.3,6.0,5.5\n"
    "11,2021-11-20,0,12000000,200,3000,1.6,6.7,25.0\n"
    "05,2021-11-20,0,5997,0,3,0.0,0.0,50.0\n"
)
REG_NAME = "fr_spf_sidep_reg_daily.csv"

CASES = {
    "missing_tests_column": (REG_VALID.replace(",T,", ",Tests,"),
                             ["line 1", "missing 'T'", "'Tests'"]),
    "bad_number": (REG_VALID.replace("12000000,200,", "12000000,2o0,"),
                   ["line 4", "column 'P'", "expected a number", "found '2o0'"]),
    "negative_count": (REG_VALID.replace("100,2000", "100,-2000"),
                       ["line 2", "column 'T'", "a count >= 0", "'-2000'"]),
    "unknown_codes": (REG_VALID + "09,2021-11-20,0,1,1,1,1,1,1\n" + "99,2021-11-20,0,1,1,1,1,1,1\n",
                      ["line 6", "column 'reg'", "found '09'", "line 7", "found '99'",
                       "an INSEE région code"]),
    "bad_date": (REG_VALID.replace("11,2021-11-20", "11,2021-11-31"),
                 ["line 4", "column 'jour'", "'2021-11-31'"]),
    "conflicting_duplicate": (REG_VALID + "84,2021-11-20,0,8000000,101,2000,1.2,5.0,25.0\n",
                              ["one row per (reg, jour)", "reg=R84"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_region_file_is_reported_precisely(tmp_path, ctx, case):
    content, expected = CASES[case]
    assert_bad_case(REGION, tmp_path / REG_NAME, content, ctx, case, expected)


def test_valid_small_region_file_keeps_all_ages_only(tmp_path, ctx):
    path = tmp_path / REG_NAME
    path.write_text(REG_VALID)
    frame = REGION.load(path, ctx).frame
    assert len(frame) == 6
    assert _by(frame)[("R84", pd.Timestamp("2021-11-20"), "inc_cases")] == 100


def test_france_file_with_another_country_is_refused(tmp_path, ctx):
    path = tmp_path / "fr_spf_sidep_fra_daily.csv"
    path.write_text("fra,jour,cl_age90,pop,P,T\nFR,2021-11-20,0,1,1,1\nDE,2021-11-21,0,1,1,1\n")
    message = refusal(FRANCE, path, ctx)
    assert "line 3" in message and "'DE'" in message


# ------------------------------------------------------- quarantine, last good file, stopping
def test_broken_region_file_is_quarantined_and_last_good_kept(make_settings, data_copy):
    failed = broken_between_ingests(make_settings, data_copy, REG_NAME, "\n84,2021-06-01,0,",
                                    "\n84,2021-06-01,x,", "spf_sidep_region", "inc_cases",
                                    territory="R84")
    problem = failed.problems[0]
    assert problem["column"] == "cl_age90" and problem["found"] == "'x'"


def test_missing_or_stopped_sidep_files_do_not_stop_ingest(make_settings, data_copy):
    data = data_copy()
    (data / "fr_spf_sidep_fra_daily.csv").unlink()
    # The régional file stops early (as the real one did in 2022).
    reg = pd.read_csv(data / REG_NAME, dtype=str)
    reg[reg["jour"] <= "2021-06-30"].to_csv(data / REG_NAME, index=False)
    settings = make_settings(data)
    report = run_ingest(settings)
    assert report.outcome == "ok"
    assert {o.source: o.status for o in report.sources}["spf_sidep_france"] == "missing"
    daily = CubeStore(settings).open("daily")
    # France is not rebuilt from the three collectivités the régional file also holds.
    assert np.isnan(daily["inc_cases"].sel(territory="FR").values).all()
    r84 = daily["incidence_rate_7d"].sel(territory="R84").to_series().dropna()
    assert r84.index.max() == pd.Timestamp("2021-06-30")
