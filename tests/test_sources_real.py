"""Every source on the real published files of the shared data folder."""

from __future__ import annotations

import pandas as pd
import pytest

from features.sources import BY_NAME, SOURCES
from features.sources.base import ParseContext
from features.sources.insee_territories import load_territories


@pytest.fixture(scope="module")
def ctx(data_dir):
    return ParseContext(load_territories(data_dir)[0])


@pytest.fixture(scope="module")
def loaded(data_dir, ctx):
    out = {}
    for source in SOURCES:
        path = source.locate(data_dir)
        if path is not None:
            out[source.name] = source.load(path, ctx)
    return out


def test_every_shipped_source_is_found(loaded):
    expected = set(BY_NAME) - {"city_indicators"}  # no city file is shipped with the data
    assert expected <= set(loaded)


def test_tidy_frames_have_the_contract_types(loaded):
    for name, result in loaded.items():
        frame = result.frame
        assert list(frame.columns) == ["territory", "date", "indicator", "value"], name
        assert frame["date"].dtype == "datetime64[ns]", name
        assert frame["value"].dtype == "float64", name
        assert frame["territory"].map(type).eq(str).all(), name
        assert not frame.duplicated(["territory", "date", "indicator"]).any(), name
        assert {spec.name for spec in result.indicators} >= set(frame["indicator"]), name


def test_spf_flows_totals_match_raw_file(loaded, data_dir):
    raw = pd.read_csv(data_dir / "fr_spf_hosp_incid_dep_daily.csv", dtype={"dep": str})
    frame = loaded["spf_hospital_flows"].frame
    totals = frame.groupby("indicator")["value"].sum()
    assert totals["inc_hosp"] == raw["incid_hosp"].sum()
    assert totals["inc_icu"] == raw["incid_rea"].sum()
    assert totals["inc_death"] == raw["incid_dc"].sum()
    assert totals["inc_discharge"] == raw["incid_rad"].sum()
    assert frame["territory"].nunique() == 102  # 101 départements + 978 Saint-Martin
    assert {"01", "2A", "2B", "971", "976"} <= set(frame["territory"])


def test_bed_stocks(loaded):
    stocks = loaded["spf_bed_occupancy"].frame
    assert set(stocks["indicator"]) == {"hosp", "icu"}
    assert stocks["territory"].nunique() == 100
    bfc = loaded["spf_bed_occupancy_bfc"].frame
    assert set(bfc["territory"]) == {"21", "25", "39", "58", "70", "71", "89", "90"}
    assert bfc["date"].min() == pd.Timestamp("2020-03-18")


def test_sursaud_weeks_are_labelled_by_saturday(loaded):
    for name in ("sursaud_region", "sursaud_france"):
        frame = loaded[name].frame
        assert (frame["date"].dt.dayofweek == 5).all()
    regions = loaded["sursaud_region"].frame
    assert regions["territory"].str.match(r"^R\d{2}$").all()
    assert regions["territory"].nunique() == 18
    assert loaded["sursaud_france"].frame["territory"].eq("FR").all()


def test_mobility_levels(loaded):
    frame = loaded["google_mobility"].frame
    codes = set(frame["territory"])
    assert "FR" in codes and "R84" in codes and "69" in codes
    assert len([c for c in codes if c.startswith("R")]) == 13
    assert frame["value"].min() >= -100


def test_oxcgrt_france_daily(loaded):
    frame = loaded["oxcgrt"].frame
    assert frame["territory"].eq("FR").all()
    lockdown = frame[(frame["indicator"] == "stringency_index")
                     & (frame["date"] == pd.Timestamp("2020-04-01"))]["value"].item()
    assert lockdown > 80


def test_unemployment_quarter_ends(loaded):
    frame = loaded["insee_unemployment"].frame
    assert frame["date"].dt.is_quarter_end.all()
    assert "FR" in set(frame["territory"]) and "R11" in set(frame["territory"])
    assert frame["value"].between(0, 40).all()


def test_population_and_age_table(loaded):
    result = loaded["insee_population"]
    by_age = result.tables["population_by_age"]
    assert {"territory", "date", "sex", "age_group", "population"} <= set(by_age.columns)
    total = result.frame[(result.frame["indicator"] == "population_estimate")
                         & (result.frame["date"] == pd.Timestamp("2020-01-01"))]
    assert total["territory"].nunique() == 101
    assert 60e6 < total["value"].sum() < 70e6


def test_drees_capacity(loaded):
    frame = loaded["drees_capacity"].frame
    icu = frame[(frame["indicator"] == "icu_beds_adult")
                & (frame["date"] == pd.Timestamp("2020-01-01"))].set_index("territory")["value"]
    # DREES counted about 5,400 adult réanimation beds at the end of 2019 (REFERENCE-EPI §3).
    assert 4800 < icu["FR"] < 6000
    assert icu.drop("FR").sum() == pytest.approx(icu["FR"], rel=0.02)
