"""Any indicator is a target: a city's own indicators forecast end to end.

A home ingests the real territory registry (INSEE COG 2022) and the SYNTHETIC city file
tests/fixtures/city_indicators_synthetic_epci.csv (weekly food-aid requests and 115 calls of
Rennes and Bruz, 78 weeks from 2020-07-04); its targets are derived from the indicator
metadata, published by the same use case as the hospital ones, served by /api/v1/forecasts
and listed by /api/v1/targets. A short series falls back to the baseline, logged and recorded;
a city file that stops coming keeps its indicators in the cube with their last dates."""

from __future__ import annotations

import json
import logging
import shutil

import pandas as pd
import pytest

from tests.conftest import FIXTURES

CITY_FILE = FIXTURES / "city_indicators_synthetic_epci.csv"
REGISTRY = ("fr_departements_population.csv", "fr_communes_20k_population.csv",
            "fr_communes_population.csv", "fr_epci_communes.csv")
RENNES_METROPOLE, RENNES, BRUZ = "243500139", "35238", "35047"


def _city_home(root, data_dir):
    from features.ingest import run_ingest
    from features.settings import Settings

    data = root / "data"
    data.mkdir()
    for name in REGISTRY:
        (data / name).symlink_to(data_dir / name)
    shutil.copyfile(CITY_FILE, data / CITY_FILE.name)
    settings = Settings.from_env(home=str(root / "home"), data_dir=str(data),
                                 database_url=f"sqlite:///{root}/vigie.sqlite")
    report = run_ingest(settings)
    assert report.vintage_id, report.message
    return settings


@pytest.fixture(scope="module")
def city(tmp_path_factory, data_dir):
    return _city_home(tmp_path_factory.mktemp("city-targets"), data_dir)


@pytest.fixture(scope="module")
def published(city):
    """food_aid_requests published at the EPCI and commune levels (calibrated)."""
    from service.usecases.forecasts import publish_forecasts

    report = publish_forecasts(city, targets=[("food_aid_requests", "weekly")],
                               levels=["epci", "commune"], parallel=False)
    return report


@pytest.fixture(scope="module")
def client(city, published):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": city,
                       "RATELIMIT_ENABLED": False}).test_client()


def test_city_indicators_are_targets_derived_from_their_metadata(city):
    from models.preparation import default_opener
    from models.targets import cube_targets, get_target, resolve_target
    from service.usecases.forecasts import published_targets

    opener = default_opener(city)
    food = resolve_target("food_aid_requests", None, opener)
    assert (food.frequency, food.unit, food.horizons, food.kind) == ("weekly", "wk",
                                                                    (1, 2, 3, 4), "count")
    assert food.levels == ("department", "epci", "commune") and food.derived
    assert food.hub_target(2) == "2 wk ahead food aid requests"
    assert {t.name for t in cube_targets(opener)} == {"food_aid_requests",
                                                      "emergency_housing_calls_115"}
    # The built-in targets are untouched (resolved without reading the cube).
    assert resolve_target("inc_hosp", None, opener) == get_target("inc_hosp", "weekly")
    assert ("food_aid_requests", "weekly") in published_targets(city)
    assert ("unemployment", "quarterly") in published_targets(city)
    with pytest.raises(KeyError, match="no indicator of that name in the cube"):
        resolve_target("food_aid_request", None, opener)
    with pytest.raises(KeyError, match="no daily indicator"):
        resolve_target("food_aid_requests", "daily", opener)


def test_derived_targets_refuse_what_is_not_a_count_or_rate():
    from models.targets import derive_target

    index = {"units": "index 0-100", "aggregation": "national", "count": 0}
    with pytest.raises(KeyError, match="neither a count nor a rate"):
        derive_target("stringency_index", "daily", index, ["national"])
    with pytest.raises(KeyError, match="only daily, weekly and quarterly"):
        derive_target("population_estimate", "yearly", {"count": 1}, ["national"])
    with pytest.raises(KeyError, match="forecast as the target er_visits"):
        derive_target("er_visits_covid_rate", "weekly", {"units": "per 100,000"}, ["region"])
    rate = derive_target("school_absences_pct", "quarterly",
                         {"units": "% of pupils", "aggregation": "population_mean"}, ["epci"])
    assert (rate.kind, rate.unit, rate.horizons, rate.pool) == ("rate", "qtr", (1, 2, 3, 4),
                                                                ("epci",))


def test_a_city_indicator_is_published_and_served_by_forecasts(published, client, city):
    assert not published.with_status("failed"), published.to_dict()
    assert {o.level for o in published.with_status("published")} == {"epci", "commune"}
    answer = client.get(f"/api/v1/forecasts?target=food_aid_requests&territory="
                        f"{RENNES_METROPOLE}")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["run"]["level"] == "epci" and body["run"]["frequency"] == "weekly"
    assert [i["target"] for i in body["items"]] == [f"{n} wk ahead food aid requests"
                                                    for n in (1, 2, 3, 4)]
    assert body["forecast_date"] == "2021-12-27"
    assert [i["target_end_date"] for i in body["items"]] == [
        "2022-01-01", "2022-01-08", "2022-01-15", "2022-01-22"]
    medians = [i["median"] for i in body["items"]]
    assert all(m is not None and m > 0 for m in medians)
    # Around the EPCI's level (Rennes + Bruz, about 450 requests a week), not zero or wild.
    weekly = pd.read_csv(CITY_FILE)
    last = weekly[weekly["indicator"] == "food_aid_requests"].groupby("date")["value"].sum()
    assert 0.5 * last.iloc[-4:].mean() < medians[0] < 2 * last.iloc[-4:].mean()
    hub = client.get("/api/v1/forecasts?target=food_aid_requests&level=epci&format=hub")
    assert hub.status_code == 200 and "1 wk ahead food aid requests" in hub.get_data(True)


def test_commune_forecasts_need_a_token_and_unknown_targets_are_a_clear_400(client, city):
    from features.catalog import get_engine
    from service.auth import create_token

    public = client.get(f"/api/v1/forecasts?target=food_aid_requests&territory={BRUZ}")
    assert public.status_code == 403, public.get_json()
    token = create_token(get_engine(city.database_url), "test-city-analyst", "analyst")
    private = client.get(f"/api/v1/forecasts?target=food_aid_requests&territory={BRUZ}",
                         headers={"Authorization": f"Bearer {token}"})
    assert private.status_code == 200, private.get_json()
    assert {i["location"] for i in private.get_json()["items"]} == {BRUZ}
    unknown = client.get("/api/v1/forecasts?target=food_aid_request")
    assert unknown.status_code == 400
    assert "unknown target food_aid_request" in unknown.get_json()["message"]
    forged = client.get("/api/v1/forecasts?target=../../etc%0Apasswd")
    assert forged.status_code == 400
    too_long = client.get("/api/v1/forecasts?target=" + "a" * 65)
    assert too_long.status_code in (400, 422)


def test_targets_listing_gives_labels_horizons_levels_and_a_verdict(client):
    answer = client.get(f"/api/v1/targets?territory={RENNES_METROPOLE}")
    assert answer.status_code == 200, answer.get_json()
    items = {i["name"]: i for i in answer.get_json()["items"]}
    assert set(items) == {"food_aid_requests", "emergency_housing_calls_115"}
    food = items["food_aid_requests"]
    assert food["published"] and food["derived"] and food["kind"] == "count"
    assert food["horizons_fr"] == ["à 1 semaine", "à 2 semaines", "à 3 semaines",
                                   "à 4 semaines"]
    assert food["levels"] == ["department", "epci", "commune"]
    assert food["last_date"] == "2021-12-25"
    # No track record computed in this home yet: the page says so.
    assert food["verdict"]["status"] == "not_scored"
    assert food["verdict"]["text_fr"].startswith("Pas encore évalué")
    one = client.get("/api/v1/targets/food_aid_requests").get_json()
    assert one["name"] == "food_aid_requests" and one["frequency"] == "weekly"
    assert client.get("/api/v1/targets/nothing_here").status_code == 404
    assert client.get("/api/v1/targets?territory=99999").status_code == 400


def test_a_short_series_falls_back_to_the_baseline_logged_and_recorded(city, caplog):
    from models.forecasting import forecast
    from models.preparation import default_opener
    from models.registry import get_registry
    from models.targets import resolve_target

    opener = default_opener(city)
    target = resolve_target("food_aid_requests", "weekly", opener)
    registry = get_registry(city)
    as_of = pd.Timestamp("2020-10-05")  # 14 weeks of history (07-04..10-03), fewer than 26
    with caplog.at_level(logging.WARNING, logger="models.preparation"):
        fc, meta = forecast(target, "epci", as_of, "ensemble", opener, calibrate=False,
                            registry=registry)
    assert meta["short_history"] == {"periods": 14, "needed": 26, "models": "baseline"}
    assert any("fewer than 26" in r.getMessage() and "baseline" in r.getMessage()
               for r in caplog.records)
    base, _ = forecast(target, "epci", as_of, "baseline", opener, calibrate=False,
                       registry=registry)
    assert (fc.values == base.values).all()
    # With a long enough history the ensemble's own members forecast.
    _, later = forecast(target, "epci", pd.Timestamp("2021-06-07"), "ensemble", opener,
                        calibrate=False, registry=registry)
    assert "short_history" not in later


def test_the_published_run_records_a_short_history(city):
    from models.store import ForecastStore
    from service.usecases.forecasts import publish_forecasts

    report = publish_forecasts(city, targets=[("emergency_housing_calls_115", "weekly")],
                               levels=["epci"], as_of="2020-10-05", calibrate=False,
                               parallel=False)
    [outcome] = report.with_status("published")
    run = ForecastStore.from_settings(city).get(outcome.run_id)
    assert run.metadata["short_history"]["needed"] == 26


def test_a_city_file_that_stops_coming_keeps_its_indicators(tmp_path, data_dir):
    from features.ingest import run_ingest
    from features.store import CubeStore

    settings = _city_home(tmp_path, data_dir)
    store = CubeStore(settings)
    before = store.open("weekly")["food_aid_requests"]
    (settings.data_dir / CITY_FILE.name).unlink()
    report = run_ingest(settings, force=True)
    assert report.vintage_id and report.outcome in ("ok", "partial"), report.message
    kept = [s for s in report.sources if s.source == "city_indicators"]
    assert [(s.status, s.file) for s in kept] == [("reused", CITY_FILE.name)]
    assert "no longer in the data directory" in kept[0].error
    after = CubeStore(settings).open("weekly")
    assert after.attrs["vintage_id"] == report.vintage_id != before.attrs.get("vintage_id")
    food = after["food_aid_requests"]
    assert food.sel(territory=RENNES_METROPOLE).dropna("date")["date"].values[-1] == \
        pd.Timestamp("2021-12-25")
    assert float(food.sum()) == float(before.sum())
    # Nothing changed but the file's absence: no new vintage.
    again = run_ingest(settings)
    assert again.outcome == "unchanged"


def test_the_listing_says_the_verdict_of_the_track_record(client, city):
    from models.trackrecord import read_retrospective, write_retrospective

    saved = read_retrospective(city)
    rows = [{"target": "food_aid_requests", "frequency": "weekly", "level": level,
             "period": "held_out", "horizon": h, "relative_wis": rel, "n_forecasts": 40}
            for level, rel in (("epci", 0.8), ("commune", 1.2)) for h in (1, 2, 3, 4)]
    write_retrospective(city, {"rows": rows})
    try:
        food = client.get("/api/v1/targets/food_aid_requests").get_json()
        # Read anew: the listing is asked for before this, with no track record.
        assert food["verdict"]["status"] == "mixed", food["verdict"]
        assert [(lv["level"], lv["status"]) for lv in food["verdict"]["levels"]] == [
            ("epci", "beats_baseline"), ("commune", "does_not_beat_baseline")]
        assert "mieux à tous les horizons pour : intercommunalités" in \
            food["verdict"]["text_fr"]
        assert "pas mieux pour : communes" in food["verdict"]["text_fr"]
    finally:
        if saved is None:
            (city.retrospective_file).unlink()
        else:
            write_retrospective(city, saved)


def test_the_command_line_forecasts_a_city_indicator_and_refuses_an_unknown_one(
        city, runner, tmp_path):
    env = {"VIGIE_HOME": str(city.home), "VIGIE_DATA_DIR": str(city.data_dir),
           "VIGIE_DATABASE_URL": city.database_url}
    out = tmp_path / "food.csv"
    code, _, err = runner(["forecast", "--target", "food_aid_requests", "--level", "epci",
                           "--no-calibration", "--sequential", "--model", "baseline",
                           "--out", str(out)], env)
    assert code == 0, err
    rows = pd.read_csv(out, dtype={"location": str})
    assert set(rows["location"]) == {RENNES_METROPOLE}
    assert sorted(rows["target"].unique()) == [f"{n} wk ahead food aid requests"
                                               for n in (1, 2, 3, 4)]
    code, _, err = runner(["forecast", "--target", "food_aid_request", "--level", "epci",
                           "--out", str(out)], env)
    assert code == 2 and "--target: unknown target food_aid_request" in err
    # A city indicator has no national series: the default level is refused, naming its own.
    code, _, err = runner(["forecast", "--target", "food_aid_requests", "--out", str(out)], env)
    assert code == 2 and ("food_aid_requests (weekly) is forecast at department, epci, commune "
                          "only") in err


def test_the_command_line_backtests_an_epci_and_a_commune_by_code_and_scores_it(
        city, runner, tmp_path):
    """``backtest --territory`` takes the codes of ``--level epci``/``commune`` (an EPCI's
    SIREN, a commune's INSEE code); its Hub CSV is scored against the baseline's by
    ``score``; a scenario, which never projects below the département, still refuses them."""
    env = {"VIGIE_HOME": str(city.home), "VIGIE_DATA_DIR": str(city.data_dir),
           "VIGIE_DATABASE_URL": city.database_url}
    files = {}
    for level, code in (("epci", RENNES_METROPOLE), ("commune", RENNES)):
        for model in ("ensemble", "baseline"):
            out = files[level, model] = tmp_path / f"{level}-{model}.csv"
            status, _, err = runner(["backtest", "--target", "food_aid_requests", "--level",
                                     level, "--territory", code, "--model", model,
                                     "--start", "2021-09-06", "--end", "2021-10-04",
                                     "--every", "14", "--sequential", "--out", str(out)], env)
            assert status == 0, err
            rows = pd.read_csv(out, dtype={"location": str})
            assert set(rows["location"]) == {code}
            assert rows["forecast_date"].nunique() == 3
    status, printed, err = runner(["score", str(files["epci", "ensemble"]), "--baseline",
                                   str(files["epci", "baseline"]), "--json"], env)
    assert status == 0, err
    scores = pd.DataFrame(json.loads(printed)["by_horizon"])
    assert set(scores["model"]) == {"epci-ensemble", "baseline"}  # named by file
    assert scores["rel_wis"].notna().all() and (scores["n"] > 0).all()
    # The level check still names a code at another level.
    status, _, err = runner(["backtest", "--target", "food_aid_requests", "--level", "epci",
                             "--territory", RENNES, "--start", "2021-09-06", "--end",
                             "2021-09-06", "--sequential", "--out", str(tmp_path / "x.csv")],
                            env)
    assert status == 2 and f"'{RENNES}' is a commune, not an EPCI (--level epci)" in err
    from features.territories import territory_code_errors

    assert territory_code_errors([RENNES_METROPOLE, RENNES]) != []  # scenarios: refused
    assert territory_code_errors([RENNES_METROPOLE, RENNES, "2A004"], groups=(),
                                 local=True) == []


def test_cube_export_gives_every_epci_the_population_of_its_member_communes(
        city, runner, tmp_path):
    """``cube export --indicator population``: the legal population of every territory of
    the vintage; every EPCI of the registry (1,255) equals the sum of its member communes
    as exported, Lyon's métropole included; an unknown code is named."""
    env = {"VIGIE_HOME": str(city.home), "VIGIE_DATA_DIR": str(city.data_dir),
           "VIGIE_DATABASE_URL": city.database_url}
    out = tmp_path / "lyon.csv"
    code, printed, err = runner(["cube", "export", "--indicator", "population", "--territory",
                                 "200046977", "--out", str(out)], env)
    assert code == 0, err
    assert "1 rows of population (reference)" in printed
    lyon = pd.read_csv(out, dtype={"territory": str})
    assert lyon.to_dict("records") == [{"territory": "200046977", "level": "epci",
                                        "name": "Métropole de Lyon",
                                        "indicator": "population", "value": 1416545.0}]
    everything = tmp_path / "population.csv"
    code, _, err = runner(["cube", "export", "--indicator", "population", "--out",
                           str(everything)], env)
    assert code == 0, err
    table = pd.read_csv(everything, dtype={"territory": str}).set_index("territory")
    epcis = table[table["level"] == "epci"]
    assert len(epcis) == 1255
    members = pd.read_csv(city.data_dir / "fr_epci_communes.csv",
                          dtype={"epci_code": str, "commune_code": str})
    sums = table.loc[members["commune_code"], "value"].groupby(
        members["epci_code"].to_numpy()).sum(min_count=1)
    pd.testing.assert_series_equal(epcis["value"].sort_index(), sums.sort_index(),
                                   check_names=False)
    assert table.at["35", "value"] > table.at[RENNES_METROPOLE, "value"] > \
        table.at[RENNES, "value"] > 0
    code, _, err = runner(["cube", "export", "--indicator", "population", "--territory",
                           "999999999", "--out", str(out)], env)
    assert code == 2 and "unknown territory code(s): 999999999" in err
