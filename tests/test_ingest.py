"""Ingest runs: a bad source is quarantined and loses nothing; valid sources still ingest; CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from features.ingest import run_ingest
from features.store import CubeStore
from service.cli import main as cli


def test_bad_source_is_quarantined_and_previous_data_kept(make_settings, data_copy):
    data = data_copy()
    settings = make_settings(data)
    first = run_ingest(settings)
    assert first.outcome == "ok"
    store = CubeStore(settings)
    before = store.open("daily")["inc_hosp"].copy()

    # Next publication: the flows file is broken, the OxCGRT file has a new correction.
    flows = data / "fr_spf_hosp_incid_dep_daily.csv"
    text = flows.read_text().replace("\n01,2020-03-20,0,", "\n01,2020-03-20,-5,", 1)
    flows.write_text(text)
    ox = pd.read_csv(data / "fr_oxcgrt_indices_daily.csv", dtype=str)
    ox.loc[ox["date"] == "2020-11-02", "StringencyIndex"] = "99.0"
    ox.to_csv(data / "fr_oxcgrt_indices_daily.csv", index=False)

    second = run_ingest(settings)
    assert second.outcome == "partial"
    failed = {o.source: o for o in second.failed}
    assert set(failed) == {"spf_hospital_flows"}
    problem = failed["spf_hospital_flows"].problems[0]
    assert problem["line"] == 3 and problem["column"] == "incid_hosp"
    assert problem["expected"] == "a count >= 0" and problem["found"] == "'-5'"

    # The offending file and its report are in quarantine.
    folder = next(settings.quarantine_dir.iterdir())
    assert (folder / "fr_spf_hosp_incid_dep_daily.csv").read_text() == text
    report = json.loads((folder / "report.json").read_text())
    assert report["problems"][0]["line"] == 3

    # The new vintage has the new OxCGRT value and the last good flows, unchanged.
    after = store.open("daily")
    assert after.attrs["vintage_id"] == second.vintage_id != first.vintage_id
    assert after["stringency_index"].sel(territory="FR", date="2020-11-02").item() == 99.0
    assert after["inc_hosp"].equals(before)
    reused = [o for o in second.sources if o.status == "reused"]
    assert [o.source for o in reused] == ["spf_hospital_flows"]


def test_missing_territories_stops_everything(make_settings, data_copy):
    data = data_copy("fr_spf_hosp_incid_dep_daily.csv")
    report = run_ingest(make_settings(data))
    assert report.outcome == "failed"
    assert "territories" in report.message


def test_missing_optional_source_is_reported(make_settings, data_copy):
    data = data_copy()
    (data / "fr_google_mobility_daily.csv").unlink()
    report = run_ingest(make_settings(data))
    assert report.outcome == "ok"
    statuses = {o.source: o.status for o in report.sources}
    assert statuses["google_mobility"] == "missing"


def test_city_indicators_flow_into_the_cube(make_settings, data_copy):
    from tests.conftest import FIXTURES

    data = data_copy("fr_departements_population.csv", "fr_communes_20k_population.csv",
                     "fr_spf_hosp_incid_dep_daily.csv")
    shutil.copyfile(FIXTURES / "city_indicators_rennes.csv", data / "city_indicators_rennes.csv")
    settings = make_settings(data)
    report = run_ingest(settings)
    assert report.outcome == "ok"
    # The new vintage's public masks were computed by the ingest (docs/DISCLOSURE.md), so no
    # public request waits for them.
    from features.disclosure import record_path

    assert "disclosure" in report.timings
    assert record_path(settings.cube_dir / "disclosure", report.vintage_id,
                       settings.small_count_threshold).exists()
    weekly = CubeStore(settings).open("weekly")
    food = weekly["food_aid_requests"]
    assert food.sel(territory="35238", date="2020-11-14").item() == 455
    assert food.attrs["source"] == "CCAS de Rennes"
    assert weekly["territory_level"].sel(territory="35238").item() == "commune"
    housing = weekly["emergency_housing_calls_115"]
    # A département total is the published value; one département of four makes no région or
    # France total (tests/test_cube_coverage.py).
    assert housing.sel(territory="35", date="2020-11-07").item() == 1210
    assert np.isnan(housing.sel(territory=["R53", "FR"], date="2020-11-07").values).all()
    daily = CubeStore(settings).open("daily")
    assert daily["school_absences_pct"].sel(territory="35238", date="2020-11-03").item() \
        == pytest.approx(7.1)


def test_cli_ingest_info_export(make_settings, data_copy, monkeypatch, capsys, tmp_path):
    data = data_copy()
    settings = make_settings(data)
    monkeypatch.setenv("VIGIE_HOME", str(settings.home))
    monkeypatch.setenv("VIGIE_DATABASE_URL", settings.database_url)
    assert cli(["ingest", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "spf_hospital_flows" in out and "266424" in out and "2020-03-19..2021-12-31" in out

    assert cli(["cube", "info", "--as-of", "2020-11-01", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["datasets"]["daily"]["indicators"]["inc_hosp"]["last_date"] == "2020-10-31"

    out_csv = tmp_path / "export.csv"
    assert cli(["cube", "export", "--indicator", "inc_hosp", "--territory", "69", "FR",
                "--as-of", "2020-04-01", "--out", str(out_csv)]) == 0
    frame = pd.read_csv(out_csv, dtype={"territory": str})
    assert list(frame.columns) == ["territory", "date", "indicator", "value"]
    assert set(frame["territory"]) == {"69", "FR"} and frame["date"].max() == "2020-03-31"

    assert cli(["cube", "export", "--indicator", "nope", "--out", str(out_csv)]) == 2
    assert "unknown indicator 'nope'" in capsys.readouterr().err

    (data / "fr_oxcgrt_indices_daily.csv").write_text("date;country_code\n")
    assert cli(["ingest", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out
    assert "oxcgrt" in out and "failed" in out and "quarantined" in out

    # Each ingest is audited once, by the use case, whoever calls it (here the CLI).
    from features.catalog import get_engine
    from service.audit import query

    rows, total = query(get_engine(settings.database_url), event="ingest")
    assert total == 2 and {r["actor"] for r in rows} == {"cli"}
    # The broken source: "partial" with its last good copy kept, "failed" when none is.
    assert rows[1]["details"]["outcome"] == "ok" and rows[0]["details"]["outcome"] != "ok"
    assert rows[0]["details"]["failed_sources"] == ["oxcgrt"] and rows[0]["vintage_id"] is None

