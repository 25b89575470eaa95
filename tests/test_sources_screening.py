"""Variant screening (old and new schemes): real files, official format, the unknown
département, bad input, quarantine; in the cube the overlap rule, shares equal to SPF's published
tx_* on département rows, aggregation to régions and France, weekly = the Saturday's window."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.ingest import run_ingest
from features.sources import spf_screening
from features.sources.base import ParseContext
from features.sources.insee_territories import load_territories
from features.store import CubeStore
from tests.conftest import FIXTURES
from tests.source_helpers import assert_bad_case, broken_between_ingests, refusal

NEW, OLD = spf_screening.SOURCES
OLD_NAME, NEW_NAME = "fr_spf_criblage_dep_7j_old.csv", "fr_spf_criblage_dep_7j_new.csv"


@pytest.fixture(scope="module")
def ctx(data_dir):
    return ParseContext(load_territories(data_dir)[0], today=dt.date(2026, 11, 28))


@pytest.fixture(scope="module")
def raw(data_dir):
    old = pd.read_csv(data_dir / OLD_NAME, dtype={"dep": str}, parse_dates=["date_fin"])
    new = pd.read_csv(data_dir / NEW_NAME, dtype={"dep": str}, keep_default_na=False,
                      parse_dates=["date_fin"])
    new = new[new["dep"] != ""]
    for col in new.columns[5:]:
        new[col] = pd.to_numeric(new[col])
    return old, new


def test_real_files_and_unknown_department(data_dir, ctx, raw):
    old, new = raw
    o = OLD.load(data_dir / OLD_NAME, ctx)
    n = NEW.load(data_dir / NEW_NAME, ctx)
    assert [w for w in n.warnings if "dropped 55 rows of unknown département" in w]
    assert o.frame["date"].min() == pd.Timestamp("2021-06-06")
    assert o.frame["date"].max() == pd.Timestamp("2021-12-30")
    assert n.frame["date"].min() == pd.Timestamp("2021-11-07")
    assert n.frame["date"].max() == pd.Timestamp("2021-12-31")
    totals = n.frame.groupby("indicator")["value"].sum()
    assert totals["screened_positive_tests"] == new["nb_pos"].sum()
    assert totals["screened_a0c0_present"] == new["nb_A0C0"].sum()
    assert totals["screened_a0c0_absent"] == (new["nb_A01C01"] - new["nb_A0C0"]).sum()
    assert o.frame.groupby("indicator")["value"].sum()["screened_e484q_present"] == \
        old["nb_B1"].sum()
    for spec in (*o.indicators, *n.indicators):
        assert spec.stock and spec.count and spec.aggregation == "sum"


def test_official_format_semaine_only_age_rows_and_na(ctx):
    path = NEW.locate(FIXTURES)
    assert path.name.startswith("sp-variant-7j-dep-2021")
    result = NEW.load(path, ctx)
    frame = result.frame.set_index(["territory", "date", "indicator"])["value"]
    assert set(result.frame["territory"]) == {"69", "2A"}
    assert any("dropped 3 rows of unknown département" in w for w in result.warnings)
    day = pd.Timestamp("2021-12-12")  # last day of '2021-12-06-2021-12-12'
    assert frame[("69", day, "screened_positive_tests")] == 1002
    assert frame[("69", day, "screened_a0c0_present")] == 202
    assert frame[("69", day, "screened_a0c0_absent")] == 400 - 202
    assert OLD.locate(FIXTURES) is None  # the new scheme's pattern does not take old files


VALID_OLD = (
    "dep,semaine,date_debut,date_fin,nb_crib,nb_pos,tx_crib,nb_A0,nb_A1,tx_A1,nb_B0,nb_B1,tx_B1,"
    "nb_C0,nb_C1,tx_C1\n"
    "01,2021-05-31-2021-06-06,2021-05-31,2021-06-06,53,443,11.96,38,3,7.32,22,0,0.0,30,0,0.0\n"
    "01,2021-06-01-2021-06-07,2021-06-01,2021-06-07,55,386,14.25,40,2,4.76,20,0,0.0,29,0,0.0\n"
    "2A,2021-06-01-2021-06-07,2021-06-01,2021-06-07,5,38,13.2,4,1,20.0,2,0,0.0,3,0,0.0\n"
)
CASES = {
    "missing_column": (VALID_OLD.replace("nb_B1", "nb_B_1"), ["line 1", "missing 'nb_B1'"]),
    "bad_number": (VALID_OLD.replace(",386,", ",38six,"),
                   ["line 3", "column 'nb_pos'", "expected a number", "'38six'"]),
    "unknown_code": (VALID_OLD.replace("2A,2021", "20,2021"),
                     ["line 4", "column 'dep'", "'20' (retired"]),
    "mutation_counts_exceed_screened": (
        VALID_OLD.replace(",55,386,14.25,40,2,", ",55,386,14.25,54,2,"),
        ["line 3", "nb_A0 + nb_A1 <= nb_crib", "56 > 55"]),
    "bad_date": (VALID_OLD.replace(",2021-06-07,55", ",2021-06-37,55"),
                 ["line 3", "column 'date_fin'", "'2021-06-37'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_reported_precisely(tmp_path, ctx, case):
    content, expected = CASES[case]
    assert_bad_case(OLD, tmp_path / OLD_NAME, content, ctx, case, expected)


def test_semaine_without_date_fin_must_be_a_window(tmp_path, ctx):
    path = tmp_path / "sp-variant-7j-dep-2021-12-31-19h05.csv"
    text = (FIXTURES / path.name).read_text(encoding="utf-8-sig")
    path.write_text(text.replace("2021-12-05-2021-12-11", "semaine 49", 1))
    message = refusal(NEW, path, ctx)
    assert "line 8, column 'semaine'" in message and "'semaine 49'" in message
    assert "a 7-day window like 2021-11-01-2021-11-07" in message


# ---------------------------------------------------------------------------------- the cube
def test_shares_equal_published_rates_on_department_rows(real_cube, raw):
    old, new = raw
    daily = CubeStore(real_cube).open("daily")
    # Before the overlap only the old scheme publishes: shares are SPF's tx_* (2 decimals).
    before = old[old["date_fin"] < "2021-11-07"].sample(400, random_state=1)
    for mutation, letter in (("e484k", "A"), ("e484q", "B"), ("l452r", "C")):
        var = daily[f"variant_share_{mutation}"]
        got = np.array([var.sel(territory=t, date=d).item()
                        for t, d in zip(before["dep"], before["date_fin"], strict=True)])
        known = (before[f"nb_{letter}0"] + before[f"nb_{letter}1"] > 0).to_numpy()
        assert known.sum() > 300
        assert np.allclose(got[known], before[f"tx_{letter}1"].to_numpy()[known], atol=0.006)
        assert np.isnan(got[~known]).all()
    # New-scheme-only mutations equal the new file's tx_* everywhere.
    sample = new.sample(400, random_state=2)
    for mutation, column in (("a0c0", "tx_A0C0"), ("d", "tx_D1")):
        var = daily[f"variant_share_{mutation}"]
        got = np.array([var.sel(territory=t, date=d).item()
                        for t, d in zip(sample["dep"], sample["date_fin"], strict=True)])
        denominator = sample["nb_A01C01"] if mutation == "a0c0" else \
            sample["nb_D0"] + sample["nb_D1"]
        known = (denominator > 0).to_numpy()
        assert np.allclose(got[known], sample[column].to_numpy()[known], atol=0.006)
        assert np.isnan(got[~known]).all()


def test_overlap_rule_and_aggregation(real_cube, raw):
    old, new = raw
    daily = CubeStore(real_cube).open("daily")
    day = pd.Timestamp("2021-12-12")
    o = old[old["date_fin"] == day].set_index("dep")
    n = new[new["date_fin"] == day].set_index("dep")
    # Positive tests: the new file wins; E484K counts: both schemes summed (disjoint kits).
    assert daily["screened_positive_tests"].sel(territory="69", date=day).item() == \
        n.at["69", "nb_pos"]
    assert daily["screened_e484k_present"].sel(territory="69", date=day).item() == \
        o.at["69", "nb_A1"] + n.at["69", "nb_A1"]
    share = daily["variant_share_l452r"].sel(territory="69", date=day).item()
    c1 = o.at["69", "nb_C1"] + n.at["69", "nb_C1"]
    c0 = o.at["69", "nb_C0"] + n.at["69", "nb_C0"]
    assert share == pytest.approx(100 * c1 / (c1 + c0))
    # France = the sum over départements (unknown département left out), share from the sums.
    assert daily["screened_positive_tests"].sel(territory="FR", date=day).item() == \
        n["nb_pos"].sum()
    fr = daily["variant_share_a0c0"].sel(territory="FR", date=day).item()
    assert fr == pytest.approx(100 * n["nb_A0C0"].sum() / n["nb_A01C01"].sum())
    deps_84 = [c for c in n.index if daily["territory_parent"].sel(territory=c).item() == "R84"]
    assert daily["screened_d_present"].sel(territory="R84", date=day).item() == \
        n.loc[deps_84, "nb_D1"].sum()


def test_weekly_takes_the_saturday_window(real_cube):
    store = CubeStore(real_cube)
    daily, weekly = store.open("daily"), store.open("weekly")
    saturday = "2021-12-18"
    for name in ("screened_positive_tests", "screened_l452r_present", "variant_share_a0c0"):
        assert weekly[name].sel(territory="FR", date=saturday).item() == \
            daily[name].sel(territory="FR", date=saturday).item()


def test_broken_new_file_is_quarantined_and_last_good_kept(make_settings, data_copy):
    failed = broken_between_ingests(make_settings, data_copy, NEW_NAME, "\n69,Rhône,",
                                    "\n6X,Rhône,", "spf_screening_new", "variant_share_a0c0")
    assert failed.problems[0]["found"] == "'6X'"


def test_old_scheme_alone_when_the_new_file_is_missing(make_settings, data_copy):
    data = data_copy()
    (data / NEW_NAME).unlink()
    settings = make_settings(data)
    assert run_ingest(settings).outcome == "ok"
    daily = CubeStore(settings).open("daily")
    assert "variant_share_a0c0" not in daily
    assert daily["variant_share_l452r"].sel(territory="FR").notnull().sum() > 150


def test_old_scheme_official_format(tmp_path, ctx):
    path = tmp_path / "sp-variant-7j-dep-old-2021-12-31-19h05.csv"
    header, *rows = VALID_OLD.strip().split("\n")
    keep = [i for i, c in enumerate(header.split(",")) if c not in ("date_debut", "date_fin")]

    def cut(line: str) -> str:
        cells = line.split(",")
        return ";".join(cells[i].replace(".", ",") for i in keep)

    path.write_bytes("\ufeff".encode() + "\r\n".join(cut(r) for r in [header, *rows]).encode())
    assert OLD.locate(tmp_path) == path and NEW.locate(tmp_path) is None
    values = OLD.load(path, ctx).frame.set_index(["territory", "date", "indicator"])["value"]
    assert values[("01", pd.Timestamp("2021-06-07"), "screened_positive_tests")] == 386
    assert values[("2A", pd.Timestamp("2021-06-07"), "screened_e484k_present")] == 1
