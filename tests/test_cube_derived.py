"""Indicators the cube derives (7-day incidence and positivity, vaccination coverage, variant
shares): on the real data, through the CLI, and their rules on small synthetic inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.cube import build_cube, rolling_7d
from features.indicators import DERIVED, INCIDENCE_RATE_7D, IndicatorSpec
from features.sources.base import SourceResult
from features.sources.insee_territories import load_territories
from features.sources.spf_sidep import INDICATORS as SIDEP_INDICATORS
from features.store import CubeStore
from service.cli import main as cli


def test_cli_export_incidence_matches_raw_positives(real_cube, data_dir, monkeypatch, tmp_path):
    """The issue's acceptance check: France's 7-day positives ending 2021-11-28 equal the raw
    file's, and the exported rate is those positives over the cube's population × 100,000."""
    monkeypatch.setenv("VIGIE_HOME", str(real_cube.home))
    monkeypatch.setenv("VIGIE_DATABASE_URL", real_cube.database_url)
    out = tmp_path / "incidence.csv"
    # The command: France, the Rhône and the Métropole de Lyon (SIREN 200046977).
    assert cli(["cube", "export", "--indicator", "incidence_rate_7d", "--territory", "FR", "69",
                "200046977", "--out", str(out)]) == 0
    exported = pd.read_csv(out, dtype={"territory": str}).set_index(["territory", "date"])
    raw = pd.read_csv(data_dir / "fr_spf_sidep_fra_daily.csv", parse_dates=["jour"])
    week = raw[(raw["jour"] > "2021-11-21") & (raw["jour"] <= "2021-11-28")]
    assert len(week) == 7
    positives = int(week["P"].sum())

    daily = CubeStore(real_cube).open("daily")
    cube_positives = daily["inc_cases"].sel(territory="FR").sel(
        date=slice("2021-11-22", "2021-11-28")).sum().item()
    assert cube_positives == positives
    population = daily["population"].sel(territory="FR").item()
    rate = exported.loc[("FR", "2021-11-28"), "value"]
    assert rate == pytest.approx(positives / population * 1e5, rel=1e-12)
    assert exported.loc[("FR", "2021-11-28"), "indicator"] == "incidence_rate_7d"
    # Lyon's rate is published (métropoles file, 2020-Q4); no département has daily cases.
    territories = set(exported.index.get_level_values("territory"))
    assert {"FR", "200046977"} <= territories
    lyon = exported.loc["200046977"]
    assert lyon.index.min() >= "2020-10-12" and lyon.index.max() <= "2021-01-10"


def test_rates_at_every_level_and_weekly_saturday(real_cube):
    store = CubeStore(real_cube)
    daily, weekly = store.open("daily"), store.open("weekly")
    for code in ("FR", "R84", "R01", "978"):
        cases = daily["inc_cases"].sel(territory=code).sel(date=slice("2021-11-22", "2021-11-28"))
        tests = daily["inc_tests"].sel(territory=code).sel(date=slice("2021-11-22", "2021-11-28"))
        rate = daily["incidence_rate_7d"].sel(territory=code, date="2021-11-28").item()
        pop = daily["population"].sel(territory=code).item()
        assert rate == pytest.approx(cases.sum().item() / pop * 1e5)
        positivity = daily["positivity_rate_7d"].sel(territory=code, date="2021-11-28").item()
        assert positivity == pytest.approx(100 * cases.sum().item() / tests.sum().item())
        # Weekly (Sunday 11-21 .. Saturday 11-27): the sum, and the Saturday's 7-day rate.
        week = daily["inc_cases"].sel(territory=code).sel(date=slice("2021-11-21", "2021-11-27"))
        assert weekly["inc_cases"].sel(territory=code, date="2021-11-27").item() == \
            week.sum().item()
        assert weekly["incidence_rate_7d"].sel(territory=code, date="2021-11-27").item() == \
            pytest.approx(week.sum().item() / pop * 1e5)
    assert daily["incidence_rate_7d"].attrs["aggregation"] == "none"
    assert daily["incidence_rate_7d"].attrs["stock"] == 1
    # The first 6 days of the series have no complete 7-day window.
    fr = daily["incidence_rate_7d"].sel(territory="FR").to_series().dropna()
    assert fr.index.min() == pd.Timestamp("2020-05-19")


def test_rolling_7d_needs_all_seven_days():
    arr = np.array([[1, 2, 3, 4, 5, 6, 7, 8, np.nan, 1, 1, 1, 1, 1, 1, 1.0]])
    out = rolling_7d(arr)[0]
    assert np.isnan(out[:6]).all()
    assert out[6] == 28 and out[7] == 35
    assert np.isnan(out[8:15]).all()
    assert out[15] == 7


def _result(name: str, rows: list[tuple[str, str, str, float]],
            specs: list[IndicatorSpec]) -> SourceResult:
    frame = pd.DataFrame(rows, columns=["territory", "date", "indicator", "value"])
    frame["date"] = pd.to_datetime(frame["date"])
    return SourceResult(name, frame, specs)


def test_published_rate_wins_over_derived(data_dir):
    territories = load_territories(data_dir)[0]
    days = pd.date_range("2021-11-01", periods=10).strftime("%Y-%m-%d")
    counts = [("R84", d, "inc_cases", 100.0) for d in days] + \
        [("R84", d, "inc_tests", 1000.0) for d in days]
    published = [("R84", days[-1], "incidence_rate_7d", 12.5)]
    datasets, _ = build_cube([_result("published", published, [INCIDENCE_RATE_7D]),
                              _result("sidep", counts, list(SIDEP_INDICATORS))], territories)
    rate = datasets["daily"]["incidence_rate_7d"].sel(territory="R84")
    assert rate.sel(date=days[-1]).item() == 12.5  # published
    pop = territories.population(["R84"]).iloc[0]
    assert rate.sel(date=days[-2]).item() == pytest.approx(700 / pop * 1e5)  # derived
    positivity = datasets["daily"]["positivity_rate_7d"].sel(territory="R84")
    assert positivity.sel(date=days[-1]).item() == pytest.approx(10.0)
    # Rates never reach France by averaging régions: France has no counts here.
    assert np.isnan(datasets["daily"]["incidence_rate_7d"].sel(territory="FR").values).all()


def test_derived_specs_are_rates_that_never_aggregate():
    for spec in DERIVED.values():
        assert spec.aggregation == "none" and spec.stock and not spec.count
        assert spec.frequency == "daily"
