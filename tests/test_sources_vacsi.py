"""VAC-SI cumulative first doses by département: real file, official format, bad input,
quarantine and last good file; in the cube a stock (summed over départements, never over a week)
and the derived coverage."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from features.sources import spf_vacsi
from features.sources.base import ParseContext
from features.sources.insee_territories import load_territories
from features.store import CubeStore
from tests.conftest import FIXTURES
from tests.source_helpers import assert_bad_case, broken_between_ingests

SOURCE = spf_vacsi.SOURCE
NAME = "fr_spf_vacsi_dep_dose1_cumul_daily.csv"


@pytest.fixture(scope="module")
def ctx(data_dir):
    return ParseContext(load_territories(data_dir)[0], today=dt.date(2026, 11, 28))


def test_real_file(data_dir, ctx):
    raw = pd.read_csv(data_dir / NAME, dtype={"dep": str})
    result = SOURCE.load(data_dir / NAME, ctx)
    frame = result.frame
    assert frame["territory"].nunique() == 102  # 101 départements + 977 Saint-Barthélemy
    assert frame["value"].sum() == raw["n_dose1_cumsum"].sum()
    assert frame["date"].min() == pd.Timestamp("2020-12-27")
    assert frame["date"].max() == pd.Timestamp("2021-12-31")
    spec = result.indicators[0]
    assert (spec.name, spec.aggregation, spec.stock, spec.count) == \
        ("vaccinated_dose1", "sum", True, True)


def test_official_per_vaccine_file_keeps_all_vaccines(ctx):
    path = SOURCE.locate(FIXTURES)
    assert path.name.startswith("vacsi-v-dep-")
    values = SOURCE.load(path, ctx).frame.set_index(["territory", "date"])["value"]
    assert len(values) == 9  # 3 days x 3 codes, vaccin = 1 rows left out
    assert values[("2A", pd.Timestamp("2021-03-07"))] == 600
    assert values[("977", pd.Timestamp("2021-03-05"))] == 10


VALID = "dep,jour,n_dose1_cumsum\n01,2021-03-05,10\n01,2021-03-06,12\n2A,2021-03-05,3\n"
CASES = {
    "missing_column": (VALID.replace("n_dose1_cumsum", "n_dose1"),
                       ["line 1", "missing 'n_dose1_cumsum'", "'n_dose1'"]),
    "bad_number": (VALID.replace("01,2021-03-06,12", "01,2021-03-06,1 2 3"),
                   ["line 3", "column 'n_dose1_cumsum'", "expected a number", "'1 2 3'"]),
    "negative": (VALID.replace(",3\n", ",-3\n"),
                 ["line 4", "column 'n_dose1_cumsum'", "a count >= 0", "'-3'"]),
    "unknown_code": (VALID + "99,2021-03-05,1\n",
                     ["line 5", "column 'dep'", "a known INSEE territory code", "'99'"]),
    "official_unknown_vaccine_class": (
        "dep;vaccin;jour;n_cum_dose1\n01;0;2021-03-05;1\n01;x;2021-03-05;1\n",
        ["line 3", "column 'vaccin'", "expected a number", "'x'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_reported_precisely(tmp_path, ctx, case):
    content, expected = CASES[case]
    assert_bad_case(SOURCE, tmp_path / NAME, content, ctx, case, expected)


def test_a_falling_cumulative_count_is_kept_with_a_warning(tmp_path, ctx):
    path = tmp_path / NAME
    path.write_text(VALID.replace("01,2021-03-06,12", "01,2021-03-06,9"))
    result = SOURCE.load(path, ctx)
    assert len(result.frame) == 3
    assert any("falls on 1 day" in w and "dep=01" in w for w in result.warnings)


def test_stock_in_the_cube(real_cube):
    store = CubeStore(real_cube)
    daily, weekly = store.open("daily"), store.open("weekly")
    vacc = daily["vaccinated_dose1"]
    day = "2021-12-31"
    deps = [c for c, level in zip(daily["territory"].values, daily["territory_level"].values,
                                  strict=True) if level in ("department", "collectivity")]
    total = vacc.sel(territory=deps, date=day).sum().item()
    assert vacc.sel(territory="FR", date=day).item() == total
    r84 = [c for c in deps if daily["territory_parent"].sel(territory=c).item() == "R84"]
    assert vacc.sel(territory="R84", date=day).item() == vacc.sel(territory=r84,
                                                                  date=day).sum().item()
    for code in ("FR", "R84", "69", "977"):
        coverage = daily["vaccination_coverage_dose1"].sel(territory=code, date=day).item()
        pop = daily["population"].sel(territory=code).item()
        assert coverage == pytest.approx(100 * vacc.sel(territory=code, date=day).item() / pop)
    # A stock is never summed over a week: the weekly value is the Saturday's.
    saturday = "2021-12-25"
    assert weekly["vaccinated_dose1"].sel(territory="69", date=saturday).item() == \
        vacc.sel(territory="69", date=saturday).item()
    assert weekly["vaccination_coverage_dose1"].sel(territory="FR", date=saturday).item() == \
        daily["vaccination_coverage_dose1"].sel(territory="FR", date=saturday).item()


def test_broken_file_is_quarantined_and_last_good_kept(make_settings, data_copy):
    failed = broken_between_ingests(make_settings, data_copy, NAME, "\n69,2021-06-01,",
                                    "\n6O,2021-06-01,", "spf_vacsi", "vaccinated_dose1")
    problem = failed.problems[0]
    assert problem["column"] == "dep" and "'6O'" in problem["found"]
