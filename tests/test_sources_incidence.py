"""Published 7-day incidence and positivity: the 22 métropoles (under their SIREN codes, names
matched with an explicit table) and the Bourgogne-Franche-Comté départements."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import SourceError
from features.ingest import run_ingest
from features.sources import BY_NAME, spf_incidence_metropoles, spf_incidence_positivity
from features.sources.base import ParseContext, name_key
from features.sources.insee_territories import load_territories
from features.sources.spf_incidence_metropoles import METROPOLE_SIREN
from features.store import CubeStore
from tests.conftest import FIXTURES
from tests.source_helpers import ingested_copy, refusal, reingest_broken

METRO_FILE = "fr_spf_incidence_metropoles_2020Q4.csv"
BFC_FILE = "fr_spf_incidence_positivity_bfc.csv"
METROPOLES = spf_incidence_metropoles.SOURCE
BFC = spf_incidence_positivity.SOURCE
BFC_DEPS = {"21", "25", "39", "58", "70", "71", "89", "90"}


@pytest.fixture(scope="module")
def territories(data_dir):
    return load_territories(data_dir)[0]


@pytest.fixture(scope="module")
def ctx(territories):
    return ParseContext(territories)


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- the name → SIREN table
def test_the_table_names_every_metropole_as_the_registry_does(territories):
    """Each SIREN of the table is a métropole of the EPCI registry with the same name."""
    assert len(METROPOLE_SIREN) == 22 and len(set(METROPOLE_SIREN.values())) == 22
    epci = territories.tables["epci"].set_index("epci_code")
    for name, siren in METROPOLE_SIREN.items():
        assert territories.table.at[siren, "level"] == "epci", name
        assert epci.at[siren, "type"] in ("METRO", "MET69"), name
        assert name_key(territories.table.at[siren, "name"]) == name_key(name)
    # Every métropole of the registry is in the table: none left out.
    metros = set(epci.index[epci["type"].isin(["METRO", "MET69"])])
    assert metros == set(METROPOLE_SIREN.values())


def test_all_22_names_of_the_real_file_are_matched(data_dir, ctx):
    raw = pd.read_csv(data_dir / METRO_FILE, dtype=str)
    assert set(raw["metropole"]) == set(METROPOLE_SIREN)
    result = METROPOLES.load(data_dir / METRO_FILE, ctx)
    frame = result.frame
    assert len(frame) == len(raw) == 4004
    assert set(frame["territory"]) == set(METROPOLE_SIREN.values())
    assert set(frame["indicator"]) == {"incidence_rate_7d", "incidence_rate_7d_65_plus"}
    value = frame.set_index(["territory", "date", "indicator"])["value"]
    expected = raw[(raw["metropole"] == "Métropole de Lyon") & (raw["date"] == "2020-11-01")]
    for age, indicator in (("all", "incidence_rate_7d"), ("65+", "incidence_rate_7d_65_plus")):
        published = float(expected.loc[expected["age_class"] == age,
                                       "incidence_7d_per_100k"].iloc[0])
        assert value[("200046977", pd.Timestamp("2020-11-01"), indicator)] == published


def test_names_match_despite_accents_case_and_hyphens(tmp_path, ctx):
    path = _write(tmp_path, "fr_spf_incidence_metropoles_x.csv",
                  "metropole,age_class,date,incidence_7d_per_100k\n"
                  "METROPOLE DE LYON,all,2020-11-01,500.5\n"
                  "Saint-Étienne Métropole,65+,2020-11-01,300\n"
                  "Grenoble Alpes Métropole,all,2020-11-01,700\n")
    frame = METROPOLES.load(path, ctx).frame
    assert list(frame["territory"]) == ["200046977", "200040715", "244200770"]


def test_an_unmatched_name_is_an_error_naming_it(tmp_path, ctx):
    path = _write(tmp_path, "fr_spf_incidence_metropoles_x.csv",
                  "metropole,age_class,date,incidence_7d_per_100k\n"
                  "Métropole de Lyon,all,2020-11-01,500.5\n"
                  "Grand Lyon,all,2020-11-01,500.5\n"
                  "Métropole de Lyon,18-64,2020-11-02,-3\n")
    message = refusal(METROPOLES, path, ctx)
    assert ("fr_spf_incidence_metropoles_x.csv, line 3, column 'metropole': expected a "
            "métropole name of the table METROPOLE_SIREN") in message
    assert "found 'Grand Lyon'" in message
    assert "line 4, column 'age_class': expected an age class" in message
    assert "line 4, column 'incidence_7d_per_100k': expected a value >= 0, found '-3'" in message


def test_conflicting_duplicate_rows_are_refused(tmp_path, ctx):
    path = _write(tmp_path, "fr_spf_incidence_metropoles_x.csv",
                  "metropole,age_class,date,incidence_7d_per_100k\n"
                  "Métropole de Lyon,all,2020-11-01,500.5\n"
                  "Métropole de Lyon,all,2020-11-01,510\n")
    with pytest.raises(SourceError, match=r"conflicting rows .* on lines 2, 3"):
        METROPOLES.load(path, ctx)


def test_official_sg_metro_format_with_lille_renumbered(ctx):
    path = METROPOLES.locate(FIXTURES)
    assert path.name.startswith("sg-metro-opendata")
    result = METROPOLES.load(path, ctx)
    value = result.frame.set_index(["territory", "date", "indicator"])["value"]
    assert value[("200093201", pd.Timestamp("2020-10-12"), "incidence_rate_7d")] == 642.3
    assert value[("200046977", pd.Timestamp("2020-10-13"), "incidence_rate_7d_65_plus")] == 310.4
    assert any("245900410" in w and "200093201" in w for w in result.warnings)


def test_official_unknown_siren_and_bad_window(tmp_path, ctx):
    path = _write(tmp_path, "sg-metro-opendata-x.csv",
                  "epci2020;semaine_glissante;clage_65;ti\n"
                  "200046977;2020-10-06-2020-10-12;0;512.7\n"
                  "200046978;2020-10-06-2020-10-12;0;512.7\n"
                  "200046977;2020-10-06-2020-10-14;65;301.2\n")
    message = refusal(METROPOLES, path, ctx)
    assert ("line 3, column 'epci2020': expected the SIREN code of an EPCI of the registry, "
            "found '200046978'") in message
    assert "line 4, column 'semaine_glissante': expected a window of 7 days" in message


def test_metropoles_need_the_epci_registry(data_dir, tmp_path):
    from features.territories import Territories

    full = load_territories(data_dir)[0]
    no_epci = Territories(full.table[full.table["level"] != "epci"])
    with pytest.raises(SourceError, match=r"fr_epci_communes\.csv in the data folder"):
        METROPOLES.load(data_dir / METRO_FILE, ParseContext(no_epci))


# ---------------------------------------------------------------- BFC départements
def test_bfc_real_file(data_dir, ctx):
    raw = pd.read_csv(data_dir / BFC_FILE, dtype=str)
    result = BFC.load(data_dir / BFC_FILE, ctx)
    frame = result.frame
    assert set(frame["territory"]) == BFC_DEPS
    assert len(frame) == 2 * len(raw) == 4096
    value = frame.set_index(["territory", "date", "indicator"])["value"]
    row = raw[(raw["dep_code"] == "25") & (raw["end_7d"] == "2020-11-01")].iloc[0]
    assert value[("25", pd.Timestamp("2020-11-01"), "incidence_rate_7d")] == float(
        row["incidence_7d_per_100k"])
    assert value[("25", pd.Timestamp("2020-11-01"), "positivity_rate_7d")] == float(
        row["positivity_7d_pct"])
    assert frame["date"].min() == pd.Timestamp("2020-05-19")  # end_7d, not start_7d


def test_bfc_bad_rows_are_named(tmp_path, ctx):
    header = "dep_code,dep_name,start_7d,end_7d,incidence_7d_per_100k,positivity_7d_pct\n"
    path = _write(tmp_path, "fr_spf_incidence_positivity_x.csv", header
                  + "21,Côte-d'Or,2020-05-13,2020-05-19,8.4,2.2\n"
                  + "25,Jura,2020-05-13,2020-05-19,8.4,2.2\n"
                  + "39,Jura,2020-05-14,2020-05-19,8.4,2.2\n"
                  + "58,Nièvre,2020-05-13,2020-05-19,8.4,102.5\n"
                  + "200046977,Métropole de Lyon,2020-05-13,2020-05-19,8.4,2.2\n"
                  + "20,Corse,2020-05-13,2020-05-19,8.4,2.2\n")
    message = refusal(BFC, path, ctx)
    assert ("line 3, column 'dep_name': expected the name of département 25 ('Doubs'), "
            "found 'Jura'") in message
    assert "line 4, column 'start_7d': expected the first day of the 7-day window" in message
    assert ("line 5, column 'positivity_7d_pct': expected a value <= 100, found '102.5'"
            in message)
    assert "line 6, column 'dep_code': expected a département code" in message
    assert "found '200046977'" in message
    assert "line 7, column 'dep_code'" in message and "'20' (retired" in message


def test_official_sp_pos_7j_dep_all_ages_only(ctx):
    path = BFC.locate(FIXTURES)
    assert path.name.startswith("sp-pos-7j-dep")
    frame = BFC.load(path, ctx).frame
    value = frame.set_index(["territory", "date", "indicator"])["value"]
    assert value[("21", pd.Timestamp("2020-11-07"), "incidence_rate_7d")] == pytest.approx(
        1e5 * 2670 / 534124)
    assert value[("21", pd.Timestamp("2020-11-07"), "positivity_rate_7d")] == pytest.approx(
        100 * 2670 / 14502)
    assert value[("2A", pd.Timestamp("2020-11-08"), "incidence_rate_7d")] == 0.0
    # No tests that week: no positivity (not 0 %, not an error).
    assert ("2A", pd.Timestamp("2020-11-08"), "positivity_rate_7d") not in value.index
    assert len(frame) == 7  # the cl_age90 = 9 row is left out


# ---------------------------------------------------------------- registered, ingested, cube
def test_sources_are_registered_as_optional():
    for name in ("spf_incidence_metropoles", "spf_incidence_positivity"):
        assert name in BY_NAME and not BY_NAME[name].required


def test_ingest_serves_published_rates_and_quarantines_a_bad_file(make_settings, data_copy):
    data = data_copy("fr_departements_population.csv", "fr_communes_20k_population.csv",
                     "fr_communes_population.csv", "fr_epci_communes.csv", METRO_FILE, BFC_FILE,
                     "fr_spf_sidep_reg_daily.csv")
    settings = make_settings(data)
    first = run_ingest(settings)
    assert first.outcome == "ok", first.to_dict()
    store = CubeStore(settings)
    ds = store.open("daily")
    raw = pd.read_csv(data / METRO_FILE, dtype=str)
    lyon = raw[(raw["metropole"] == "Métropole de Lyon") & (raw["age_class"] == "all")]
    served = ds["incidence_rate_7d"].sel(territory="200046977",
                                          date=pd.DatetimeIndex(lyon["date"]))
    np.testing.assert_array_equal(served.values, lyon["incidence_7d_per_100k"].astype(float))
    assert ds["territory_level"].sel(territory="200046977").item() == "epci"
    epcis = [c for c, lv in zip(ds["territory"].values, ds["territory_level"].values,
                                strict=True) if lv == "epci"]
    assert sorted(epcis) == sorted(METROPOLE_SIREN.values())  # only EPCIs with data
    # Published BFC values are kept as published, never averaged into their région: R27's
    # value (where SI-DEP régional cases exist) is derived from its own cases.
    bfc = pd.read_csv(data / BFC_FILE, dtype=str)
    row = bfc[(bfc["dep_code"] == "21") & (bfc["end_7d"] == "2020-11-01")].iloc[0]
    assert ds["positivity_rate_7d"].sel(territory="21", date="2020-11-01").item() == float(
        row["positivity_7d_pct"])
    assert ds["incidence_rate_7d"].attrs["aggregation"] == "none"
    r27 = ds["incidence_rate_7d"].sel(territory="R27", date="2020-11-01").item()
    cases = ds["inc_cases"].sel(territory="R27").sel(
        date=slice("2020-10-26", "2020-11-01")).sum().item()
    population = ds["population"].sel(territory="R27").item()
    assert r27 == pytest.approx(1e5 * cases / population)
    members = store.open_table("epci_communes")
    assert members.loc[members["commune_code"] == "69123", "epci_code"].item() == "200046977"

    # Next publication: a métropole name nobody knows. Quarantined, last good file reused.
    failed = reingest_broken(settings, data / METRO_FILE, "Rennes Métropole",
                             "Métropole de Rennes", "spf_incidence_metropoles", encoding="utf-8")
    problem = failed.problems[0]
    assert problem["column"] == "metropole" and problem["found"] == "'Métropole de Rennes'"
    assert problem["file"] == METRO_FILE and problem["line"] >= 2
    after = store.open("daily")
    assert after["incidence_rate_7d"].sel(territory="243500139").equals(
        ds["incidence_rate_7d"].sel(territory="243500139"))


def test_losing_the_epci_registry_fails_the_metropoles_without_crashing(make_settings,
                                                                         data_copy):
    """The last good métropole file no longer validates without the EPCI level: the source is
    reported failed (twice: new file, last good file) and the other sources still ingest."""
    data, settings = ingested_copy(make_settings, data_copy, "fr_departements_population.csv",
                                   "fr_communes_population.csv", "fr_epci_communes.csv",
                                   METRO_FILE, BFC_FILE)
    (data / "fr_epci_communes.csv").unlink()
    report = run_ingest(settings)
    assert report.outcome == "partial"
    failed = [o for o in report.sources if o.status == "failed"]
    assert [o.source for o in failed] == ["spf_incidence_metropoles"] * 2
    assert "last good file no longer valid" in failed[1].error
    assert "fr_epci_communes.csv in the data folder" in failed[0].problems[0]["expected"]
    ds = CubeStore(settings).open("daily")
    assert "epci" not in set(ds["territory_level"].values)
    assert ds["positivity_rate_7d"].sel(territory="21").notnull().sum() == 256


def test_metropole_dates_are_the_window_end_like_bfc(data_dir, ctx):
    """Dijon Métropole is half of Côte-d'Or: their 7-day incidences move together day by day
    only when both are dated by the window's last day (the BFC file states end_7d)."""
    metro = METROPOLES.load(data_dir / METRO_FILE, ctx).frame
    bfc = BFC.load(data_dir / BFC_FILE, ctx).frame

    def series(frame, code):
        rows = frame[(frame["territory"] == code) & (frame["indicator"] == "incidence_rate_7d")]
        return np.log(rows.set_index("date")["value"]).diff()

    dijon, cote_dor = series(metro, METROPOLE_SIREN["Dijon Métropole"]), series(bfc, "21")
    corr = {lag: dijon.corr(cote_dor.shift(lag, freq="D")) for lag in range(-7, 8)}
    assert corr[0] > 0.9
    assert max(abs(v) for lag, v in corr.items() if lag) < 0.6


def test_a_bad_epci_file_is_quarantined_and_its_last_good_copy_used(make_settings, data_copy):
    data, settings = ingested_copy(make_settings, data_copy, "fr_departements_population.csv",
                                   "fr_communes_population.csv", "fr_epci_communes.csv",
                                   METRO_FILE, BFC_FILE)
    epci = data / "fr_epci_communes.csv"
    epci.write_text(epci.read_text(encoding="utf-8").replace(",28044,", ",-28044,", 1),
                    encoding="utf-8")
    report = run_ingest(settings, force=True)
    assert report.outcome == "partial", report.to_dict()
    failed = [o for o in report.sources if o.status == "failed"]
    assert [o.source for o in failed] == ["insee_epci"]
    assert failed[0].problems[0]["line"] == 2
    assert failed[0].problems[0]["column"] == "epci_population"
    assert (next(settings.quarantine_dir.iterdir()) / "fr_epci_communes.csv").exists()
    assert [o.file for o in report.sources if o.source == "insee_epci"
            and o.status == "reused"] == ["fr_communes_population.csv", "fr_epci_communes.csv"]
    store = CubeStore(settings)
    ds = store.open("daily")
    assert ds["incidence_rate_7d"].sel(territory="200046977").notnull().sum() == 91
    assert store.manifest()["files"]["fr_epci_communes.csv"]["reused_from_previous"]


def test_a_bad_epci_file_without_history_leaves_the_level_out(make_settings, data_copy):
    data = data_copy("fr_departements_population.csv", "fr_epci_communes.csv", BFC_FILE,
                     METRO_FILE)
    epci = data / "fr_epci_communes.csv"
    epci.write_text(epci.read_text(encoding="utf-8").replace(",CC,", ",XX,", 1),
                    encoding="utf-8")
    report = run_ingest(make_settings(data))
    assert report.outcome == "partial"
    assert {o.source for o in report.failed} == {"insee_epci", "spf_incidence_metropoles"}
    ds = CubeStore(make_settings(data)).open("daily")
    assert "epci" not in set(ds["territory_level"].values)
    assert ds["incidence_rate_7d"].sel(territory="21").notnull().sum() == 256
