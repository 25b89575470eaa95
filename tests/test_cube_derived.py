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


def test_cli_export_incidence_matches_raw_positives(real_cube, data_dir, monkeypatch, tmp_path,
                                                   capsys):
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
    # The Rhône has no rows: the export says so and points at the estimate.
    assert "69" not in territories
    assert ("no value of incidence_rate_7d for 69 (Rhône); an estimate may exist: "
            "--indicator incidence_rate_7d_estimated") in capsys.readouterr().err


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


# ------------------------------------------------------- départements' incidence from screening
def _screening_cube(data_dir, tests_69: list[float], tests_01: list[float],
                    persons_r84: list[float], published_69: dict | None = None):
    """Daily cube of R84's positive persons (SI-DEP) and the window positive tests of two of its
    départements (screening; none in the others), one value per day from 2021-11-01."""
    from features.indicators import INCIDENCE_RATE_7D
    from features.sources.spf_screening import SPECS

    territories = load_territories(data_dir)[0]
    days = pd.date_range("2021-11-01", periods=len(persons_r84)).strftime("%Y-%m-%d")
    cases = [("R84", d, "inc_cases", v) for d, v in zip(days, persons_r84, strict=True)
             if not np.isnan(v)]
    screening = [(code, d, "screened_positive_tests", v)
                 for code, values in (("69", tests_69), ("01", tests_01))
                 for d, v in zip(days, values, strict=True)]
    # R84's other départements report no positive test: a région total needs all of them.
    others = [c for c in territories.children("R84") if c not in ("69", "01")]
    screening += [(code, d, "screened_positive_tests", 0.0) for code in others for d in days]
    results = [_result("sidep", cases, list(SIDEP_INDICATORS)),
               _result("screening", screening, [SPECS["screened_positive_tests"]])]
    if published_69:
        results.insert(0, _result("published", [("69", d, "incidence_rate_7d", v)
                                                for d, v in published_69.items()],
                                  [INCIDENCE_RATE_7D]))
    datasets, _ = build_cube(results, territories)
    return datasets, territories, days


def test_incidence_estimated_from_screened_tests_and_the_regions_ratio(data_dir):
    n = 14
    tests_69 = [800.0 + 10 * k for k in range(n)]
    tests_01 = [200.0 + 5 * k for k in range(n)]
    persons = [110.0 + k for k in range(n)]
    datasets, territories, days = _screening_cube(data_dir, tests_69, tests_01, persons)
    daily = datasets["daily"]
    est = daily["incidence_rate_7d_estimated"]
    pop = territories.population(["69", "01", "R84"])
    # Day 8 (index 7): persons over the 7 days ending it, over the région's tests that window.
    persons_7d = sum(persons[1:8])
    ratio = persons_7d / (tests_69[7] + tests_01[7])
    assert est.sel(territory="69", date=days[7]).item() == pytest.approx(
        tests_69[7] * ratio / pop["69"] * 1e5, rel=1e-12)
    # By construction the départements that report give back the région's positive persons.
    total = sum(est.sel(territory=c, date=days[7]).item() * pop[c] / 1e5 for c in ("69", "01"))
    assert total == pytest.approx(persons_7d, rel=1e-12)
    # No complete SI-DEP window yet on the first 6 days: no ratio, no estimate.
    assert np.isnan(est.sel(territory="69").values[:6]).all()
    # Never for a territory with its own incidence (the région), nor France (no région).
    assert np.isnan(est.sel(territory=["R84", "FR"]).values).all()
    assert daily["incidence_rate_7d"].sel(territory="R84", date=days[7]).item() == \
        pytest.approx(persons_7d / pop["R84"] * 1e5)
    attrs = est.attrs
    assert attrs["source"] == "Vigie, estimated from SPF screening and SI-DEP"
    assert attrs["aggregation"] == "none" and attrs["stock"] == 1 and attrs["count"] == 0
    assert "ESTIMATE" in attrs["description"]
    # Weekly: a stock, the Saturday's value (2021-11-13), never a sum over the week.
    weekly = datasets["weekly"]["incidence_rate_7d_estimated"]
    saturday = pd.Timestamp("2021-11-13")
    assert weekly.sel(territory="69", date=saturday).item() == pytest.approx(
        est.sel(territory="69", date=saturday).item())


def test_incidence_not_estimated_from_missing_or_tiny_inputs(data_dir):
    from features.incidence_estimate import MIN_REGION_TESTS

    n = 12
    tests_69 = [30.0] * n
    tests_01 = [5.0] * n
    tests_01[8] = np.nan  # one département missing a window: no région total that day
    tests_69[9] = MIN_REGION_TESTS - tests_01[9] - 1  # région under the minimum
    persons = [4.0] * n
    persons[10] = np.nan  # a missing SI-DEP day: no 7-day window for a week
    published = {"2021-11-08": 12.5}  # a département's own rate wins (index 7)
    datasets, _, days = _screening_cube(data_dir, tests_69, tests_01, persons, published)
    est = datasets["daily"]["incidence_rate_7d_estimated"].sel(territory="69").values
    assert np.isnan(est[7])  # own (published) incidence_rate_7d: nothing estimated
    assert datasets["daily"]["incidence_rate_7d"].sel(territory="69").values[7] == 12.5
    assert np.isnan(est[8]) and np.isnan(est[9]) and np.isnan(est[10:]).all()
    assert not np.isnan(est[6])  # the first complete window, 35 tests
    with_tiny = datasets["daily"]["incidence_rate_7d_estimated"].sel(territory="01").values
    assert np.isnan(with_tiny[9])
    # Without screened tests at all the indicator is not in the cube.
    territories_only = load_territories(data_dir)[0]
    counts = [("R84", d, "inc_cases", 10.0) for d in days]
    alone, _ = build_cube([_result("sidep", counts, list(SIDEP_INDICATORS))], territories_only)
    assert "incidence_rate_7d_estimated" not in alone["daily"]


def test_real_departments_incidence_estimated(real_cube):
    """On the real cube: every département has an estimate on 2021-11-28; the estimates of a
    région's départements give back the région's own rate on every day; none before the first
    screening window (2021-06-06)."""
    daily = CubeStore(real_cube).open("daily")
    est = daily["incidence_rate_7d_estimated"]
    level = daily["territory_level"].to_series()
    parent = daily["territory_parent"].to_series()
    pop = daily["population"].to_series()
    departments = list(level.index[level == "department"])
    day = est.sel(territory=departments, date="2021-11-28").to_series()
    assert day.notna().all() and len(day) == 101
    first = est.sel(territory=departments).notnull().any("territory")
    assert pd.Timestamp(first["date"].values[first.values.argmax()]) == pd.Timestamp("2021-06-06")
    # Rhône by hand: its window tests × Auvergne-Rhône-Alpes' persons per test / population.
    window = slice("2021-11-22", "2021-11-28")
    persons = daily["inc_cases"].sel(territory="R84", date=window).sum().item()
    tests = daily["screened_positive_tests"].sel(date="2021-11-28")
    ratio = persons / tests.sel(territory="R84").item()
    assert 0.7 < ratio < 0.95
    assert day["69"] == pytest.approx(tests.sel(territory="69").item() * ratio / pop["69"] * 1e5,
                                      rel=1e-12)
    # (a) Σ over a région's départements = the région's incidence_rate_7d, every région-day.
    rate = daily["incidence_rate_7d"]
    compared = 0
    for region in level.index[level == "region"]:
        deps = list(parent.index[(parent == region) & (level == "department")])
        cases = (est.sel(territory=deps) * daily["population"].sel(territory=deps)).sum(
            "territory", min_count=len(deps)) / pop[region]
        own = rate.sel(territory=region)
        both = cases.notnull() & own.notnull()
        compared += int(both.sum())
        np.testing.assert_allclose(cases.values[both.values], own.values[both.values],
                                   rtol=1e-12, err_msg=region)
        # A région (or France) never carries an estimate where it has its own rate.
        assert not (est.sel(territory=region).notnull() & own.notnull()).any()
    assert compared > 18 * 200
    # The weekly cube takes the Saturday's window.
    weekly = CubeStore(real_cube).open("weekly")["incidence_rate_7d_estimated"]
    assert weekly.sel(territory="69", date="2021-11-27").item() == pytest.approx(
        est.sel(territory="69", date="2021-11-27").item())
