"""The official publication formats (``;``-separated, UTF-8 BOM, publisher's column names)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.sources import (
    city_indicators,
    google_mobility,
    oxcgrt,
    spf_bed_occupancy,
    spf_hospital_flows,
    sursaud,
)
from features.sources.base import ParseContext
from features.sources.insee_territories import load_territories
from tests.conftest import FIXTURES


@pytest.fixture(scope="module")
def ctx(data_dir):
    return ParseContext(load_territories(data_dir)[0])


def test_spf_flows_official_semicolon_bom_crlf(ctx):
    source = spf_hospital_flows.SOURCE
    path = source.locate(FIXTURES)
    assert path.name.startswith("donnees-hospitalieres-nouveaux-covid19")
    frame = source.load(path, ctx).frame
    assert set(frame["territory"]) == {"01", "2A", "971"}
    inc = frame[frame["indicator"] == "inc_hosp"].set_index(["territory", "date"])["value"]
    assert inc[("2A", pd.Timestamp("2020-03-19"))] == 4


def test_spf_stocks_official_keeps_all_sexes_rows(ctx):
    source = spf_bed_occupancy.SOURCES[0]
    path = source.locate(FIXTURES)
    assert path.name.startswith("donnees-hospitalieres-covid19")
    frame = source.load(path, ctx).frame.set_index(["territory", "indicator"])["value"]
    assert frame[("01", "hosp")] == 29  # sexe=0 row, not the sum of all rows
    assert frame[("2A", "icu")] == 0


def test_oxcgrt_compact_official(ctx):
    frame = oxcgrt.SOURCE.load(FIXTURES / "OxCGRT_compact_national_v1.csv", ctx).frame
    assert frame["territory"].eq("FR").all()
    assert frame["date"].min() == pd.Timestamp("2020-10-30")
    assert len(frame) == 8  # 2 days x 4 indices, Germany left out


def test_google_official_region_report(ctx):
    frame = google_mobility.SOURCE.load(FIXTURES / "2020_FR_Region_Mobility_Report.csv",
                                        ctx).frame
    transit = frame[frame["indicator"] == "mobility_transit_stations"].set_index("territory")
    assert transit.loc[["FR", "R84", "69"], "value"].tolist() == [-55, -60, -63]
    grocery = frame[frame["indicator"] == "mobility_grocery_pharmacy"]
    assert "69" not in set(grocery["territory"])  # blank = privacy threshold, not zero


def test_sursaud_official_daily_counts_become_weekly_rates(ctx):
    source = sursaud.SOURCES[0]
    frame = source.load(FIXTURES / "sursaud-corona-quot-reg-2021-12-31-19h15.csv", ctx).frame
    week = frame.set_index("indicator")
    # ISO week Mon 2020-11-02..Sun 11-08, labelled by its Saturday 11-07.
    assert (frame["date"] == pd.Timestamp("2020-11-07")).all()
    assert week.at["er_visits_covid", "value"] == 700
    assert week.at["er_visits_covid_rate", "value"] == pytest.approx(1e5 * 700 / 35000)
    assert week.at["sos_medecins_covid_rate", "value"] == pytest.approx(1e5 * 30 / 1000)


def test_city_indicators_shared_format(ctx):
    result = city_indicators.SOURCE.load(FIXTURES / "city_indicators_rennes.csv", ctx)
    specs = {s.name: s for s in result.indicators}
    assert specs["food_aid_requests"].frequency == "weekly"
    assert specs["school_absences_pct"].aggregation == "population_mean"
    values = result.frame.set_index(["indicator", "date"])["value"]
    assert values[("school_absences_pct", pd.Timestamp("2020-11-03"))] == pytest.approx(7.1)
    assert set(result.frame["territory"]) == {"35238", "35"}


def test_city_schema_is_valid_table_schema():
    schema = city_indicators.load_schema()
    names = [f["name"] for f in schema["fields"]]
    assert names[:6] == ["territory_code", "date", "indicator", "value", "unit", "source"]
    assert schema["primaryKey"] == ["territory_code", "date", "indicator"]
    for field in schema["fields"]:
        assert field["type"] in {"string", "number", "date"}
        assert field["description"]
