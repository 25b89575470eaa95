"""Totals Vigie computes (régions, France) exist only on dates when all their children report,
and say how many did otherwise (cube attribute ``computed_totals``, ``/api/v1/data`` rows)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.cube import build_cube, registry_children, totals_coverage
from features.indicators import IndicatorSpec
from features.settings import Settings
from features.sources.base import ParseContext, SourceResult
from features.sources.city_indicators import SOURCE as CITY
from features.sources.insee_territories import load_territories
from features.store import CubeStore

HEADER = "territory_code,date,indicator,value,unit,source,frequency,aggregation\n"
WEEKS = ("2020-11-07", "2020-11-14")


@pytest.fixture(scope="module")
def territories(data_dir):
    return load_territories(data_dir)[0]


def _city(tmp_path, territories, lines: list[str]) -> SourceResult:
    """Parse a city file in the shared format, as the ingest does."""
    path = tmp_path / "city_indicators_test.csv"
    path.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return CITY.parse(path, ParseContext(territories, dt.date(2022, 1, 1)))


def _calls(codes, weeks=WEEKS, value=lambda code, week: 100.0):
    return [f"{code},{week},calls_115,{value(code, week)},calls/week,SIAO,weekly,sum"
            for code in codes for week in weeks]


def test_one_department_never_makes_the_region_or_france_total(tmp_path, territories):
    weekly = build_cube([_city(tmp_path, territories, _calls(["35"]))], territories)[0]["weekly"]
    calls = weekly["calls_115"]
    assert calls.sel(territory="35", date=WEEKS[0]).item() == 100
    assert np.isnan(calls.sel(territory=["R53", "FR"]).values).all()
    coverage = totals_coverage(calls)
    bretagne = len(registry_children(territories, "region")["R53"])
    assert bretagne == 4
    assert coverage["children"]["R53"] == 4 and coverage["children"]["FR"] == 101
    assert coverage["incomplete"]["R53"] == {WEEKS[0]: 1, WEEKS[1]: 1}
    assert coverage["incomplete"]["FR"] == {WEEKS[0]: 1, WEEKS[1]: 1}
    # Régions with no child reporting have nothing to say (0 of m is no row, not a gap).
    assert "R84" not in coverage["incomplete"]


def test_all_children_report_then_the_total_is_their_sum(tmp_path, territories):
    departments = territories.codes("department")
    value = {code: float(i + 1) for i, code in enumerate(departments)}
    lines = _calls(departments, value=lambda code, week: value[code])
    # Bretagne's four départements report both weeks, one other département misses week 2.
    missing = next(c for c in departments if territories.parent(c) != "R53")
    lines = [line for line in lines if not line.startswith(f"{missing},{WEEKS[1]}")]
    weekly = build_cube([_city(tmp_path, territories, lines)], territories)[0]["weekly"]
    calls = weekly["calls_115"]
    bretagne = registry_children(territories, "region")["R53"]
    for week in WEEKS:
        assert calls.sel(territory="R53", date=week).item() == sum(value[c] for c in bretagne)
    assert calls.sel(territory="FR", date=WEEKS[0]).item() == sum(value.values())
    assert np.isnan(calls.sel(territory="FR", date=WEEKS[1]).item())
    region = territories.parent(missing)
    assert np.isnan(calls.sel(territory=region, date=WEEKS[1]).item())
    coverage = totals_coverage(calls)
    assert coverage["incomplete"]["FR"] == {WEEKS[1]: 100}
    need = coverage["children"][region]
    assert coverage["incomplete"][region] == {WEEKS[1]: need - 1}
    assert "R53" not in coverage["incomplete"]


def test_rates_average_only_complete_children_and_published_totals_win(tmp_path, territories):
    bretagne = registry_children(territories, "region")["R53"]
    rate = [f"{c},2020-11-02,absence_pct,{5 + i},% of pupils,Ville,daily,population_mean"
            for i, c in enumerate(bretagne)]
    # Week 1 all four, a published région value for Normandie, only one Normandie département.
    lines = rate + ["R28,2020-11-02,absence_pct,9,% of pupils,Ville,daily,population_mean",
                    "14,2020-11-02,absence_pct,3,% of pupils,Ville,daily,population_mean",
                    "29,2020-11-03,absence_pct,6,% of pupils,Ville,daily,population_mean"]
    daily = build_cube([_city(tmp_path, territories, lines)], territories)[0]["daily"]
    pct = daily["absence_pct"]
    pop = territories.population(bretagne).to_numpy()
    expected = float(np.dot(pop, [5 + i for i in range(4)]) / pop.sum())
    assert pct.sel(territory="R53", date="2020-11-02").item() == pytest.approx(expected)
    assert np.isnan(pct.sel(territory="R53", date="2020-11-03").item())  # only Finistère
    assert pct.sel(territory="R28", date="2020-11-02").item() == 9  # published wins
    coverage = totals_coverage(pct)
    assert "R28" not in coverage["children"]
    assert coverage["incomplete"]["R53"] == {"2020-11-03": 1}


def test_collectivities_count_for_france_only_when_the_source_has_them(territories):
    """France = all départements, plus each collectivité the source reports at all."""
    departments = territories.codes("department")
    spec = IndicatorSpec("admissions", "daily", "admissions/day", "test", "test", "LO", "sum",
                         count=True)
    days = ["2021-01-01", "2021-01-02"]
    rows = [(c, d, "admissions", 1.0) for c in departments for d in days]
    rows.append(("978", days[0], "admissions", 5.0))  # Saint-Martin misses the second day
    frame = pd.DataFrame(rows, columns=["territory", "date", "indicator", "value"])
    frame["date"] = pd.to_datetime(frame["date"])
    daily = build_cube([SourceResult("test", frame, [spec])], territories)[0]["daily"]
    admissions = daily["admissions"]
    assert admissions.sel(territory="FR", date=days[0]).item() == len(departments) + 5
    assert np.isnan(admissions.sel(territory="FR", date=days[1]).item())
    coverage = totals_coverage(admissions)
    assert coverage["children"]["FR"] == len(departments) + 1
    assert coverage["incomplete"]["FR"] == {days[1]: len(departments)}
    # Collectivités hang under France only: every région is complete both days.
    assert all(k == "FR" for k in coverage["incomplete"])


def test_weekly_sums_of_a_daily_indicator_carry_coverage(territories):
    departments = territories.codes("department")
    spec = IndicatorSpec("admissions", "daily", "admissions/day", "test", "test", "LO", "sum",
                         count=True)
    days = pd.date_range("2021-01-03", "2021-01-16").strftime("%Y-%m-%d")  # Sun..Sat ×2
    late = "35"
    rows = [(c, d, "admissions", 1.0) for c in departments for d in days
            if not (c == late and d == days[-1])]
    frame = pd.DataFrame(rows, columns=["territory", "date", "indicator", "value"])
    frame["date"] = pd.to_datetime(frame["date"])
    weekly = build_cube([SourceResult("test", frame, [spec])], territories)[0]["weekly"]
    admissions = weekly["admissions"]
    assert admissions.sel(territory="R53", date="2021-01-09").item() == 7 * 4
    assert np.isnan(admissions.sel(territory="R53", date="2021-01-16").item())
    coverage = totals_coverage(admissions)
    assert coverage["incomplete"]["R53"] == {"2021-01-16": 3}
    assert coverage["incomplete"]["FR"] == {"2021-01-16": len(departments) - 1}


def test_api_says_why_a_total_is_absent(tmp_path, territories):
    from service.app import create_app

    result = _city(tmp_path, territories, _calls(["35"]))
    datasets, _ = build_cube([result], territories)
    home = tmp_path / "home"
    settings = Settings.from_env(home=str(home), data_dir=str(home),
                                 database_url=f"sqlite:///{home}/vigie.sqlite")
    CubeStore(settings).write_vintage(datasets, {}, {"data_dir": str(home)})
    client = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()
    answer = client.get("/api/v1/data?indicator=calls_115&territory=35,R53,FR")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    rows = {(r["territory"], r["date"]): r for r in body["items"]}
    assert rows[("35", WEEKS[0])]["value"] == 100 and rows[("35", WEEKS[0])]["coverage"] is None
    # A count that adds up: per 100,000 inhabitants of Ille-et-Vilaine.
    population = territories.table.at["35", "population"]
    assert rows[("35", WEEKS[0])]["per_100k"] == pytest.approx(100 / population * 1e5)
    for code, m in (("R53", 4), ("FR", 101)):
        for week in WEEKS:
            assert rows[(code, week)] == {"territory": code, "date": week, "value": None,
                                          "per_100k": None, "suppressed": False,
                                          "reason": "incomplete",
                                          "coverage": {"reporting": 1, "children": m}}
    assert body["computed_totals"] == {"territories": {"R53": 4, "FR": 101}, "incomplete": 4}
    csv = client.get("/api/v1/data?indicator=calls_115&territory=R53&format=csv").get_data(
        as_text=True).splitlines()
    assert csv[0] == ("territory,date,value,per_100k,suppressed,reason,reporting,children,"
                      "members,population_share")
    assert csv[1] == f"R53,{WEEKS[0]},,,0,incomplete,1,4,,"
