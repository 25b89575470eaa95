"""Risk levels (features/risk.py): the 2020 alert zones on small synthetic cubes, missing
inputs, région scope of ICU occupancy, configurable and validated thresholds, the real cube."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from features import risk
from features.settings import Settings

CODES = ["FR", "R84", "69", "200046977", "978"]
LEVELS = ["country", "region", "department", "epci", "collectivity"]
PARENTS = ["", "FR", "R84", "69", "FR"]
DATES = pd.to_datetime(["2020-10-01", "2020-10-02", "2021-03-01"])


def cubes(incidence: dict, over_65: dict, icu: dict, beds: dict | None = None
          ) -> tuple[xr.Dataset, xr.Dataset]:
    """Daily cube with the given values on every date (NaN elsewhere) and yearly beds."""
    def grid(values: dict) -> np.ndarray:
        out = np.full((len(CODES), len(DATES)), np.nan)
        for code, value in values.items():
            out[CODES.index(code)] = value
        return out

    coords = {"territory": CODES, "territory_level": ("territory", LEVELS),
              "territory_parent": ("territory", PARENTS)}
    dims = ("territory", "date")
    daily = xr.Dataset({"incidence_rate_7d": (dims, grid(incidence)),
                        "incidence_rate_7d_65_plus": (dims, grid(over_65)),
                        "icu": (dims, grid(icu))}, coords={**coords, "date": DATES})
    years = pd.to_datetime(["2019-01-01", "2020-01-01", "2021-01-01"])
    beds = beds or {"FR": [5000.0, 5000.0, 6000.0], "R84": [np.nan, 500.0, 1000.0]}
    capacity = np.full((len(CODES), len(years)), np.nan)
    for code, values in beds.items():
        capacity[CODES.index(code)] = values
    yearly = xr.Dataset({"icu_beds_adult": (dims, capacity)}, coords={**coords, "date": years})
    return daily, yearly


def at(out: xr.Dataset, name: str, code: str, day: int = 0):
    return out[name].sel(territory=code).values[day]


def test_levels_of_the_2020_alert_zones():
    daily, yearly = cubes(incidence={"FR": 300.0, "R84": 200.0, "69": 50.0, "200046977": 300.0},
                          over_65={"FR": 120.0, "R84": 60.0, "200046977": 150.0},
                          icu={"FR": 2000.0, "R84": 100.0})
    out = risk.assess(daily, yearly, risk.load_thresholds(Settings.from_env()))
    # France: 300 / 120 / 40 % → alerte maximale, every input known.
    assert at(out, "risk_level", "FR") == 3 and at(out, "risk_complete", "FR")
    assert at(out, "icu_occupancy", "FR") == pytest.approx(40.0)
    # R84: 200 / 60 / 20 % (100 of the 500 beds of 2020) → alerte renforcée, 3 ruled out.
    assert at(out, "risk_level", "R84") == 2 and at(out, "risk_level_max", "R84") == 2
    assert at(out, "icu_beds_adult", "R84") == 500.0
    # 69: incidence exactly 50 is not over 50; 65+ unknown; région's ICU 20 % → Vigilance, and
    # level 1 is ruled out too (incidence), so the level is decided despite the missing input.
    assert at(out, "risk_level", "69") == 0 and at(out, "risk_level_max", "69") == 0
    assert at(out, "criterion_1_incidence_rate_7d", "69") == 0.0
    assert np.isnan(at(out, "criterion_2_incidence_rate_7d_65_plus", "69"))
    assert at(out, "inputs_missing", "69") == "incidence_rate_7d_65_plus"
    # The métropole: its own incidences, its région's ICU occupancy (20 %) → level 2.
    assert out["icu_occupancy_from"].sel(territory="200046977").item() == "R84"
    assert at(out, "risk_level", "200046977") == 2 and at(out, "risk_complete", "200046977")
    # Saint-Martin: no input at all → unknown.
    assert at(out, "risk_level", "978") == -1 and at(out, "risk_level_max", "978") == 3
    assert at(out, "criteria_evaluated", "978") == 0
    assert out["icu_occupancy_from"].sel(territory="978").item() == ""
    assert out["risk_level"].dtype == np.int8 and out["risk_level"].dims == ("territory", "date")
    for name in ("criterion_3_icu_occupancy", "incidence_rate_7d", "icu", "inputs_missing"):
        assert name in out
    assert "Véran" in out.attrs["source"]


def test_missing_inputs_give_a_range_not_a_guess():
    daily, yearly = cubes(incidence={"R84": 300.0}, over_65={}, icu={"R84": 400.0})
    out = risk.assess(daily, yearly)
    # 300 > 250 and ICU 80 % but 65+ unknown: alerte at least, maximale not excluded.
    assert at(out, "risk_level", "R84") == 1 and at(out, "risk_level_max", "R84") == 3
    assert not at(out, "risk_complete", "R84")
    assert risk.label(1, 3) == "Alerte à Alerte maximale (données incomplètes)"
    assert risk.label(2, 2) == "Alerte renforcée" and risk.label(-1, 3) == "Niveau inconnu"
    # The département has only its région's ICU occupancy: evaluated, level not decided.
    assert at(out, "risk_level", "69") == 0 and at(out, "risk_level_max", "69") == 3
    assert at(out, "criteria_evaluated", "69") == 1
    assert at(out, "inputs_missing", "69") == "incidence_rate_7d,incidence_rate_7d_65_plus"


def test_capacity_of_the_latest_year_on_or_before_the_day():
    daily, yearly = cubes(incidence={}, over_65={}, icu={"FR": 3000.0, "R84": 300.0})
    out = risk.assess(daily, yearly)
    assert at(out, "icu_beds_adult", "FR", 0) == 5000.0   # 2020-10 → 2020-01-01
    assert at(out, "icu_beds_adult", "FR", 2) == 6000.0   # 2021-03 → 2021-01-01
    assert at(out, "icu_occupancy", "FR", 2) == pytest.approx(50.0)
    # No yearly cube: occupancy unknown, nothing crashes.
    none = risk.assess(daily, None)
    assert np.isnan(none["icu_occupancy"].values).all()
    assert (none["risk_level"].values == -1).all()
    # A year missing is carried forward from the year before.
    _, gappy = cubes({}, {}, {}, beds={"FR": [5000.0, 5100.0, np.nan]})
    assert at(risk.assess(daily, gappy), "icu_beds_adult", "FR", 2) == 5100.0


def test_thresholds_from_the_environment(tmp_path, monkeypatch):
    text = risk.DEFAULT_THRESHOLDS.read_text(encoding="utf-8")
    custom = tmp_path / "seuils.yaml"
    custom.write_text(text.replace("incidence_rate_7d: 50\n", "incidence_rate_7d: 20\n", 1),
                      encoding="utf-8")
    monkeypatch.setenv("VIGIE_RISK_THRESHOLDS", str(custom))
    thresholds = risk.load_thresholds()
    assert thresholds.path == str(custom)
    daily, yearly = cubes(incidence={"FR": 30.0}, over_65={}, icu={})
    assert at(risk.assess(daily, yearly, thresholds), "risk_level", "FR") == 1
    assert at(risk.assess(daily, yearly, risk.read_thresholds(risk.DEFAULT_THRESHOLDS)),
              "risk_level", "FR") == 0
    # An edited file is read again (same size, written within the same clock tick).
    custom.write_text(text.replace("incidence_rate_7d: 50\n", "incidence_rate_7d: 40\n", 1),
                      encoding="utf-8")
    assert risk.load_thresholds().of_level(1)[0].threshold == 40.0
    info = risk.describe(thresholds)
    assert [lv["level"] for lv in info["levels"]] == [0, 1, 2, 3]
    assert info["levels"][1]["criteria"][0] == {
        "input": "incidence_rate_7d", "label": "Taux d'incidence sur 7 jours",
        "comparison": ">", "threshold": 20.0, "units": "cas pour 100 000 habitants"}
    assert info["source"]["urls"] and info["labels"]["3"] == "Alerte maximale"


@pytest.mark.parametrize("old, new, message", [
    ("    icu_occupancy: 30\n", "    icu_occupancy: trente\n",
     "line 49, column 'levels.3.icu_occupancy': expected a number (the value must be over it), "
     "found 'trente'"),
    ("  3:\n", "  4:\n", "line 46, column 'levels.4': expected a level among 1, 2, 3, found 4"),
    ("  incidence_rate_7d_65_plus:\n    label", "  incidence_65:\n    label",
     "column 'inputs.incidence_65': expected an input among"),
    ("    scope: region\n", "    scope: departement\n",
     "column 'inputs.icu_occupancy.scope': expected one of territory, region"),
    ("  citation: >-", "  quote: >-", "column 'source': expected a mapping with a non-empty "
     "'citation'"),
    ("levels:\n", "levels: [\n", "expected valid YAML"),
])
def test_bad_thresholds_file_is_refused_with_its_place(tmp_path, old, new, message):
    text = risk.DEFAULT_THRESHOLDS.read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(risk.RiskThresholdsError) as caught:
        risk.read_thresholds(bad)
    assert str(bad) in str(caught.value) and message in str(caught.value)
    with pytest.raises(risk.RiskThresholdsError, match="readable"):
        risk.read_thresholds(tmp_path / "absent.yaml")


def test_real_cube(real_cube):
    from features.store import open_cube

    daily = open_cube("daily", settings=real_cube)
    yearly = open_cube("yearly", settings=real_cube)
    out = risk.assess(daily.isel(date=[-1]), yearly)
    assert set(np.unique(out["risk_level"].values)) <= {-1, 0, 1, 2, 3}
    autumn = risk.assess(daily.sel(date=["2020-09-29", "2020-10-25"]), yearly)
    # Île-de-France on 2020-09-29: 377 Covid patients in critical care for 1,121 adult ICU beds.
    assert autumn["icu_occupancy"].sel(territory="R11").values[0] == pytest.approx(33.6, abs=0.1)
    if "200046977" in autumn["territory"]:  # Métropole de Lyon, second wave: alerte maximale
        assert autumn["risk_level"].sel(territory="200046977").values[1] == 3


def test_estimated_incidence_fills_only_where_the_territory_has_none():
    """A département without incidence uses its estimate (from screening), says so in
    ``incidence_rate_7d_origin``; its own value, where it has one, always wins; the 65+
    incidence is never estimated, so level 2 stays open."""
    daily, yearly = cubes(incidence={"R84": 200.0, "200046977": 300.0}, over_65={},
                          icu={"R84": 100.0})
    estimate = np.full((len(CODES), len(DATES)), np.nan)
    estimate[CODES.index("69")] = [180.0, 40.0, np.nan]
    estimate[CODES.index("R84")] = 999.0  # never used: R84 has its own incidence
    daily["incidence_rate_7d_estimated"] = (("territory", "date"), estimate)
    out = risk.assess(daily, yearly)
    assert at(out, "incidence_rate_7d", "69", 0) == 180.0
    assert at(out, "incidence_rate_7d_origin", "69", 0) == risk.ORIGIN_ESTIMATED
    assert at(out, "criterion_2_incidence_rate_7d", "69", 0) == 1.0
    # 180 > 150 but 65+ unknown and ICU 20 % (R84, 2020 beds): Alerte, Alerte renforcée open.
    assert at(out, "risk_level", "69", 0) == 1 and at(out, "risk_level_max", "69", 0) == 2
    assert not at(out, "risk_complete", "69", 0)
    assert at(out, "inputs_missing", "69", 0) == "incidence_rate_7d_65_plus"
    # 40 ≤ 50: Vigilance, decided without the 65+ incidence.
    assert at(out, "risk_level", "69", 1) == 0 and at(out, "risk_complete", "69", 1)
    # No estimate on the third day: missing, origin none.
    assert np.isnan(at(out, "incidence_rate_7d", "69", 2))
    assert at(out, "incidence_rate_7d_origin", "69", 2) == risk.ORIGIN_NONE
    assert "incidence_rate_7d" in at(out, "inputs_missing", "69", 2)
    # Own values: the région's 200 (not its 999 estimate), origin observed.
    assert at(out, "incidence_rate_7d", "R84") == 200.0
    assert at(out, "incidence_rate_7d_origin", "R84") == risk.ORIGIN_OBSERVED
    assert at(out, "icu_occupancy_origin", "69") == risk.ORIGIN_OBSERVED
    assert at(out, "incidence_rate_7d_65_plus_origin", "69") == risk.ORIGIN_NONE
    assert out["incidence_rate_7d"].attrs["estimate"] == "incidence_rate_7d_estimated"
    assert risk.ORIGIN_NAMES[risk.ORIGIN_ESTIMATED] == "estimated_from_screening"
    described = risk.describe(risk.load_thresholds())
    inputs = {i["name"]: i for i in described["inputs"]}
    assert "criblage" in inputs["incidence_rate_7d"]["estimate"]
    assert inputs["icu_occupancy"]["estimate"] is None


def test_real_departments_use_the_estimated_incidence(real_cube):
    """Before: no département had an incidence criterion after 2021-01 (the map was all
    "données incomplètes"). On 2021-11-27 all 101 have it, estimated from screening."""
    from features.store import open_cube

    daily = open_cube("daily", settings=real_cube)
    yearly = open_cube("yearly", settings=real_cube)
    level = daily["territory_level"].to_series()
    departments = list(level.index[level == "department"])
    out = risk.assess(daily.sel(date=["2021-11-27"]), yearly).sel(territory=departments)
    assert (out["incidence_rate_7d_origin"] == risk.ORIGIN_ESTIMATED).all()
    assert out["criterion_1_incidence_rate_7d"].notnull().all()
    np.testing.assert_array_equal(
        out["incidence_rate_7d"].values,
        daily["incidence_rate_7d_estimated"].sel(territory=departments,
                                                 date=["2021-11-27"]).values)
    # The 65+ incidence stays missing: complete only where incidence ≤ 150 decides the level.
    assert out["incidence_rate_7d_65_plus"].isnull().all()
    complete = out["risk_complete"].values[:, 0]
    inc = out["incidence_rate_7d"].values[:, 0]
    assert (complete == (inc <= 150)).all()
    assert (out["risk_level"] >= 0).all()
    # Régions keep their own incidence.
    regions = risk.assess(daily.sel(date=["2021-11-27"]), yearly).sel(territory="R84")
    assert regions["incidence_rate_7d_origin"].item() == risk.ORIGIN_OBSERVED
