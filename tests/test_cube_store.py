"""The cube built from all real data, its vintages, ``as_of`` reads and atomic writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import xarray as xr

from features.errors import NoVintageError
from features.ingest import run_ingest
from features.store import CubeStore, open_cube
from tests.api_fixtures import drop_pg_schema


@pytest.fixture(scope="module")
def daily(real_cube):
    return open_cube("daily", settings=real_cube)


def test_cube_has_every_territory(daily):
    levels = pd.Series(daily["territory_level"].values, index=daily["territory"].values)
    assert (levels == "department").sum() == 101
    assert (levels == "region").sum() == 18
    assert levels["FR"] == "country"
    assert daily["territory_parent"].sel(territory="69").item() == "R84"
    assert daily["population"].sel(territory="FR").item() > 6.7e7
    assert daily.sizes["date"] == (daily["date"][-1] - daily["date"][0]).item() / 864e11 + 1


def test_national_admissions_equal_sum_of_departements_and_raw_total(daily, data_dir):
    raw = pd.read_csv(data_dir / "fr_spf_hosp_incid_dep_daily.csv", dtype={"dep": str})
    inc = daily["inc_hosp"]
    national = inc.sel(territory="FR")
    parts = inc.where(daily["territory_level"].isin(["department", "collectivity"]))
    np.testing.assert_allclose(national.dropna("date").values,
                               parts.sum("territory").sel(date=national.dropna("date").date))
    assert float(national.sum()) == raw["incid_hosp"].sum()
    per_day = raw.groupby("jour")["incid_hosp"].sum()
    assert national.sel(date="2020-11-02").item() == per_day["2020-11-02"]
    # A région is the sum of its départements.
    r84 = inc.sel(territory=[c for c in daily["territory"].values
                             if daily["territory_parent"].sel(territory=c).item() == "R84"])
    np.testing.assert_allclose(inc.sel(territory="R84").dropna("date"),
                               r84.sum("territory").sel(date=inc.sel(territory="R84")
                                                        .dropna("date").date))


def test_variables_carry_units_source_licence(daily):
    for name in ("inc_hosp", "hosp", "icu", "mobility_transit_stations", "stringency_index"):
        attrs = daily[name].attrs
        assert attrs["units"] and attrs["source"] and attrs["licence"], name
    assert daily["inc_hosp"].attrs["units"] == "admissions/day"
    assert daily.attrs["vintage_id"]


def test_occupancy_published_or_rebuilt_everywhere(daily):
    hosp, origin = daily["hosp"], daily["hosp_origin"]
    deps = daily["territory"].values[daily["territory_level"].values == "department"]
    window = slice("2020-04-01", "2021-12-31")
    assert hosp.sel(territory=deps, date=window).notnull().all()
    assert (hosp >= 0).where(hosp.notnull(), True).all()
    assert origin.sel(territory="69", date="2020-09-01").item() == 1  # published
    assert origin.sel(territory="69", date="2021-06-01").item() == 2  # rebuilt
    assert origin.sel(territory="21", date="2020-04-01").item() == 1  # BFC published
    published = hosp.sel(territory="69", date="2020-11-15").item()
    assert published > 1000  # Lyon's second-wave peak, several thousand beds


def test_national_indices_repeat_for_every_territory(daily):
    s = daily["stringency_index"].sel(date="2020-11-15")
    assert s.notnull().all() and (s == s.sel(territory="FR")).all()


def test_weekly_sums_complete_saturday_weeks(real_cube, daily):
    weekly = open_cube("weekly", settings=real_cube)
    assert (weekly["date"].dt.dayofweek == 5).all()
    week = weekly["inc_hosp"].sel(territory="FR", date="2020-11-07").item()
    days = daily["inc_hosp"].sel(territory="FR", date=slice("2020-11-01", "2020-11-07"))
    assert week == float(days.sum())
    assert weekly["er_visits_covid_rate"].sel(territory="R11").notnull().sum() > 90


def test_weekly_means_of_daily_levels(real_cube, daily):
    weekly = open_cube("weekly", settings=real_cube)
    week = slice("2020-11-01", "2020-11-07")
    for name, code in (("mobility_residential", "69"), ("stringency_index", "FR")):
        days = daily[name].sel(territory=code, date=week)
        assert int(days.notnull().sum()) >= 4
        expected = float(days.mean())
        assert weekly[name].sel(territory=code, date="2020-11-07").item() == pytest.approx(expected)
        assert weekly[name].attrs["units"] == daily[name].attrs["units"]
        assert "weekly mean" in weekly[name].attrs["description"]
    # Occupancy is a stock: neither summed nor averaged, the week takes its Saturday's value.
    saturday = daily["hosp"].sel(territory="69", date="2020-11-07").item()
    assert weekly["hosp"].sel(territory="69", date="2020-11-07").item() == saturday
    assert weekly["hosp"].attrs["stock"] == 1


def test_as_of_truncates_observations(real_cube):
    ds = open_cube("daily", as_of="2020-10-25", settings=real_cube)
    assert pd.Timestamp(ds["date"].values[-1]) == pd.Timestamp("2020-10-24")
    assert ds.attrs["as_of"] == "2020-10-25"
    assert ds.attrs["vintage_issued_after_as_of"] == 1
    weekly = open_cube("weekly", as_of="2020-10-25", settings=real_cube)
    assert pd.Timestamp(weekly["date"].values[-1]) == pd.Timestamp("2020-10-24")


SMALL = ("fr_departements_population.csv", "fr_communes_20k_population.csv",
         "fr_spf_hosp_incid_dep_daily.csv", "fr_oxcgrt_indices_daily.csv")


def test_vintages_are_chosen_by_issue_date(make_settings, data_copy):
    data = data_copy(*SMALL)
    settings = make_settings(data)
    first = run_ingest(settings, issued_at=dt.datetime(2020, 11, 1, 12, tzinfo=dt.UTC))
    # A revised publication arrives later: one admission added in Ain on 2020-10-20.
    path = data / "fr_spf_hosp_incid_dep_daily.csv"
    frame = pd.read_csv(path, dtype=str)
    row = (frame["dep"] == "01") & (frame["jour"] == "2020-10-20")
    before = int(frame.loc[row, "incid_hosp"].item())
    frame.loc[row, "incid_hosp"] = str(before + 1)
    frame.to_csv(path, index=False)
    second = run_ingest(settings, issued_at=dt.datetime(2020, 11, 8, 12, tzinfo=dt.UTC))
    assert first.vintage_id != second.vintage_id
    store = CubeStore(settings)
    old = store.open("daily", as_of="2020-11-05")
    new = store.open("daily", as_of="2020-11-09")
    assert old.attrs["vintage_id"] == first.vintage_id
    assert new.attrs["vintage_id"] == second.vintage_id
    assert old["inc_hosp"].sel(territory="01", date="2020-10-20").item() == before
    assert new["inc_hosp"].sel(territory="01", date="2020-10-20").item() == before + 1
    # Nothing changed since: no new vintage.
    again = run_ingest(settings)
    assert again.outcome == "unchanged" and again.vintage_id == second.vintage_id
    assert len(store.list_vintages()) == 2


def test_no_vintage_is_a_clear_error(make_settings, tmp_path):
    store = CubeStore(make_settings(tmp_path))
    with pytest.raises(NoVintageError, match="python -m service ingest"):
        store.open("daily")


def test_crash_mid_write_keeps_previous_vintage(make_settings, data_copy, monkeypatch):
    settings = make_settings(data_copy(*SMALL))
    first = run_ingest(settings)
    calls = {"n": 0}
    real = xr.Dataset.to_netcdf

    def crash_on_second(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash_on_second)
    with pytest.raises(OSError, match="disk full"):
        run_ingest(settings, force=True)
    store = CubeStore(settings)
    assert store.current_vintage()["id"] == first.vintage_id
    assert [p.name for p in (settings.cube_dir / "vintages").iterdir()] == [first.vintage_id]
    assert store.open("daily")["inc_hosp"].notnull().any()


def test_catalog_row_records_checksums_and_counts(real_cube):
    row = CubeStore(real_cube).current_vintage()
    files = row["files"]
    assert files["fr_spf_hosp_incid_dep_daily.csv"]["rows"] == 266424
    assert len(files["fr_spf_hosp_incid_dep_daily.csv"]["sha256"]) == 64
    assert row["row_counts"]["daily"]["inc_hosp"] > 0
    manifest = json.loads((CubeStore(real_cube).root / "vintages" / row["id"] /
                           "manifest.json").read_text())
    assert manifest["sources"]["spf_hospital_flows:fr_spf_hosp_incid_dep_daily.csv"]["rows"] \
        == 266424
    # Raw inputs are kept, content-addressed.
    sha = files["fr_spf_hosp_incid_dep_daily.csv"]["sha256"]
    assert (real_cube.raw_dir / sha[:2] / f"{sha}-fr_spf_hosp_incid_dep_daily.csv").exists()


def test_catalog_on_postgresql(data_dir, make_settings):
    url = os.environ.get("VIGIE_TEST_DATABASE_URL")
    if not url:
        pytest.skip("VIGIE_TEST_DATABASE_URL not set: PostgreSQL catalog test skipped")
    schema = f"vigie_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in url else "?"
        settings = make_settings(
            data_dir, database_url=f"{url}{sep}options=-csearch_path%3D{schema}")
        report = run_ingest(settings)
        assert report.outcome == "ok"
        ds = CubeStore(settings).open("daily", as_of="2020-11-01")
        assert ds.attrs["vintage_id"] == report.vintage_id
    finally:
        from features.catalog import get_engine
        get_engine.cache_clear()
        drop_pg_schema(admin, schema)
        admin.dispose()


def test_history_read_takes_a_vintage_with_every_current_source(make_settings, data_copy,
                                                               data_dir):
    """A source added after the first ingest is not lost to reads before every vintage."""
    data = data_copy(*SMALL)
    settings = make_settings(data)
    first = run_ingest(settings, issued_at=dt.datetime(2021, 1, 1, 12, tzinfo=dt.UTC))
    # SI-DEP cases arrive with a later ingest; a revision ingested later still has them.
    shutil.copyfile(data_dir / "fr_spf_sidep_fra_daily.csv", data / "fr_spf_sidep_fra_daily.csv")
    second = run_ingest(settings, issued_at=dt.datetime(2021, 2, 1, 12, tzinfo=dt.UTC))
    store = CubeStore(settings)
    assert "inc_cases" not in store.open("daily", vintage_id=first.vintage_id)
    ds = store.open("daily", as_of="2020-10-25")
    assert ds.attrs["vintage_id"] == second.vintage_id
    assert ds.attrs["vintage_issued_after_as_of"] == 1
    assert ds["inc_cases"].sel(territory="FR").notnull().sum() > 100
    # Reads on or after an issue date still take the vintage served that day.
    assert store.open("daily", as_of="2021-01-15").attrs["vintage_id"] == first.vintage_id


@pytest.mark.parametrize("as_of", ["0642-07-05", "1677-09-21", "2020-03-18", "2020-11-02",
                                   "2021-12-31", "2022-01-01", "2262-04-12", "9999-12-31"])
def test_the_cube_as_of_a_day_is_its_dates_before_that_day(real_cube, as_of):
    """The as-of cut (a slice of the cached vintage) is the boolean selection it replaced, for
    days inside the series, at its ends and far outside the nanosecond range (an API caller's
    ``as_of``: year 642 raised an OverflowError, a 500 of /api/v1/risk)."""
    store = CubeStore(real_cube)
    for frequency in ("daily", "weekly"):
        whole = store.open(frequency)
        got = store.open(frequency, as_of=as_of)
        day = dt.date.fromisoformat(as_of)
        keep = np.array([d.date() < day for d in whole.indexes["date"]], dtype=bool)
        expected = whole.isel(date=np.flatnonzero(keep))
        xr.testing.assert_identical(got.drop_attrs(), expected.drop_attrs())
