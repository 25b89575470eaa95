"""Validation on real history (ingested real cube): lockdowns "as estimated from history".

As of 2020-10-25 (November 2020 lockdown) and 2021-03-28 (April 2021 lockdown), for France and
five départements: observed admissions of the next 4 weeks fall inside the lockdown scenario's
90 % band, and the status quo lies above the observations (R now from cases where they exist).
Figures: scenarios/README.md; all 101 départements: bench/scenario_validation.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scenarios import fit_effects, load_measures
from scenarios.validation import PERIODS, TERRITORIES, markdown, validate


@pytest.fixture(scope="module")
def rows(real_cube):
    return {p: validate(p, settings=real_cube, n_samples=300) for p in PERIODS}


@pytest.mark.parametrize("period", list(PERIODS))
def test_observed_admissions_inside_the_lockdown_band(rows, period):
    r = rows[period]
    print("\n" + markdown(r))
    assert [x.territory for x in r] == list(TERRITORIES)
    # R now came from the SI-DEP cases of France and of each département's région.
    assert all(x.r_basis.startswith("cases") for x in r), [x.r_basis for x in r]
    covered = [x for x in r if x.lockdown_daily_coverage >= 0.75]
    assert len(covered) >= 5, markdown(r)
    inside = [x for x in r if x.lockdown_total_inside]
    assert len(inside) >= 5, markdown(r)


@pytest.mark.parametrize(("period", "minimum"), [("2020-11", 5), ("2021-04", 5)])
def test_status_quo_lies_above_the_observations(rows, period, minimum):
    r = rows[period]
    above = [x for x in r if x.status_quo_above]
    assert len(above) >= minimum, markdown(r)
    france = next(x for x in r if x.territory == "FR")
    assert france.status_quo_above
    # And the lockdown lowers the projection everywhere.
    assert all(x.lockdown_total[1] < x.status_quo_total[1] for x in r)


def test_effects_use_only_data_before_as_of(real_cube):
    """Learning as of 2020-10-25 from the full history or from the vintage cut at as_of gives
    the same effects: nothing from the November lockdown leaks in."""
    from features.store import open_cube

    as_of = pd.Timestamp("2020-10-25")
    measures = load_measures()
    full = open_cube("daily", settings=real_cube)
    cut = open_cube("daily", as_of=as_of, settings=real_cube)
    a = fit_effects(full, measures, as_of)
    b = fit_effects(cut, measures, as_of)
    np.testing.assert_allclose(a.beta_mean, b.beta_mean)
    # The only lockdown it can learn from is March 2020, and the literature prior it may use
    # (Salje et al. 2020) was published before as_of; later papers are not used.
    assert "Salje" in a.priors["lockdown"].source
    assert "Paireau" not in " ".join(p.source for p in a.priors.values())


def test_cli_run_and_compare_on_the_real_cube(real_cube, tmp_path, monkeypatch, capsys):
    import json

    from service.cli import main

    monkeypatch.setenv("VIGIE_HOME", str(real_cube.home))
    monkeypatch.setenv("VIGIE_DATA_DIR", str(real_cube.data_dir))
    monkeypatch.setenv("VIGIE_DATABASE_URL", real_cube.database_url)
    out = tmp_path / "l2.json"
    code = main(["scenario", "run", "scenarios/lockdown_2020_11.yaml", "--territory", "69",
                 "--samples", "100", "--out", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["vintage"]["as_of"] == "2020-10-25" and res["vintage"]["vintage_id"]
    assert res["vintage"]["last_date"] == "2020-10-24"
    assert res["summary"]["69"]["icu"]["capacity"] > 0  # DREES beds from the yearly cube
    assert {r["indicator"] for r in res["trajectories"]} >= {"inc_hosp", "hosp", "icu"}
    png = tmp_path / "fans.png"
    code = main(["scenario", "compare", "scenarios/status_quo.yaml",
                 "scenarios/lockdown_2020_11.yaml", "--as-of", "2020-10-25", "--territory",
                 "FR", "--samples", "100", "--plot", str(png)])
    assert code == 0 and png.stat().st_size > 10_000
    table = capsys.readouterr().out
    assert "status_quo" in table and "lockdown_2020_11" in table


def test_icu_occupancy_peaks_inside_the_lockdown_band(rows):
    all_rows = [r for p in PERIODS for r in rows[p]]
    inside = [r for r in all_rows if r.icu_peak_inside]
    assert len(inside) >= 10, [(r.period, r.territory, r.icu_peak, r.icu_observed_peak)
                               for r in all_rows]
    assert all(r.icu_capacity and r.icu_capacity > 0 for r in all_rows)  # DREES beds found
