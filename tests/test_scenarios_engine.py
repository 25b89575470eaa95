"""Scenario engine on synthetic cubes: renewal agreement, monotonicity, no leakage, outputs."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from scenarios import (
    COVARIATES,
    EpiParameters,
    fit_effects,
    load_measures,
    project,
    resolve,
    run_scenario,
)
from scenarios.history import EffectModel
from scenarios.measures import department_covariates
from scenarios.rt import cori_posterior
from tests.scenario_helpers import empty_measures, synthetic_daily, synthetic_yearly

AS_OF = "2020-10-25"


@pytest.fixture(scope="module")
def cube():
    return synthetic_daily(end="2020-10-24")


@pytest.fixture(scope="module")
def no_measures():
    return empty_measures()


def _run(cube, measures, interventions, **kw):
    definition = {"name": "t", "territories": ["01", "69", "FR"], "horizon_days": 28,
                  "n_samples": 200, "seed": 3, "interventions": interventions,
                  **kw.pop("extra", {})}
    return run_scenario(definition, cube, as_of=AS_OF, measures=measures,
                        return_projection=True, **kw)


def _fixed_effects(sigma_rw: float = 0.0) -> EffectModel:
    c = len(COVARIATES)
    return EffectModel(
        as_of=AS_OF, covariates=COVARIATES, beta_mean=np.full(c, -0.2),
        beta_cov=np.eye(c) * 1e-12, data_weight=np.zeros(c), priors={},
        mobility_elasticity=(0.0, 0.0), stringency_elasticity=(0.0, 0.0),
        mobility_response_mean=np.zeros(c), mobility_response_cov=np.eye(c) * 1e-12,
        sigma_rw={"department": sigma_rw, "region": sigma_rw, "country": sigma_rw},
        n_obs=0, n_weeks=0, design_effect=1.0,
    )


def test_no_intervention_is_a_plain_renewal_projection(cube, no_measures):
    """With no measure, no intervention and no drift, each sample is exactly the renewal
    equation run forward from the observed admissions with that sample's R now."""
    p = EpiParameters(ihr=1.0)  # depletion negligible: infections = admissions
    scen = resolve({"name": "sq", "territories": ["69"], "horizon_days": 21, "n_samples": 50,
                    "parameters": {"ihr": 1.0}}, as_of=AS_OF)
    daily = cube.sel(date=cube["date"] < np.datetime64(AS_OF))
    proj = project(scen, daily, no_measures, _fixed_effects(), p)
    w = p.generation_interval()
    hist = daily["inc_hosp"].sel(territory="69").values
    pop = float(daily["population"].sel(territory="69"))
    for s in range(5):
        r = proj.r_now[0, s]
        a = list(hist[-20:])
        cum = 0.0
        s0 = max(pop - hist.sum(), 0.05 * pop)
        for _ in range(21):
            lam = float(np.dot(a[-20:][::-1], w[1:]))
            a.append(r * min(max(1 - cum / s0, 0.0), 1.0) * lam)
            cum += a[-1]
        np.testing.assert_allclose(proj.samples["inc_hosp_mean"][0, s], a[20:], rtol=1e-9)


def test_status_quo_median_agrees_with_renewal_at_posterior_mean_r(cube, no_measures):
    """The full sampled scenario (R uncertainty, drift) is centred on the plain projection."""
    res = _run(cube, no_measures, [], extra={"parameters": {"ihr": 1.0}})
    proj = res["_projection"]
    daily = cube.sel(date=cube["date"] < np.datetime64(AS_OF))
    w = EpiParameters().generation_interval()
    hist = daily["inc_hosp"].sel(territory="FR").values
    a, b = cori_posterior(hist[None, :], w, 7)
    buf = list(hist[-20:])
    for _ in range(28):
        buf.append(a[0, -1] * b[0, -1] * float(np.dot(buf[-20:][::-1], w[1:])))
    plain = np.array(buf[20:])
    med = np.median(proj.samples["inc_hosp_mean"][2], axis=0)
    assert np.all(np.abs(med / plain - 1) < 0.15), np.abs(med / plain - 1).max()


@pytest.mark.parametrize("indicator", ["inc_hosp_mean", "inc_hosp", "hosp", "icu"])
def test_stronger_intervention_never_gives_more(cube, no_measures, indicator):
    outs = []
    for eff in (0.0, -0.1, -0.3, -0.6):
        iv = [{"type": "custom", "start": 3, "end": 20, "ramp_days": 2,
               "effect": {"transmission": eff}}]
        outs.append(_run(cube, no_measures, iv)["_projection"].samples[indicator])
    for weaker, stronger in itertools.pairwise(outs):
        assert np.all(stronger <= weaker + 1e-9)
    assert outs[-1].sum() < outs[0].sum()


def test_measure_ladder_is_monotone_with_learned_effects():
    """Curfew 21 h ≥ curfew 18 h ≥ lockdown in admissions, sample by sample, with effects
    learned from history (draws are censored at 0: a restriction never raises R)."""
    cube = synthetic_daily(lockdown=("2020-04-01", "2020-05-10"), effect=0.5)
    measures = load_measures()
    totals = []
    for iv in ({"type": "curfew", "hour": 21}, {"type": "curfew", "hour": 18},
               {"type": "lockdown_light"}, {"type": "lockdown"}):
        res = run_scenario({"name": "x", "territories": ["69"], "horizon_days": 28,
                            "n_samples": 100, "interventions": [{**iv, "start": 2}]},
                           cube, as_of=AS_OF, measures=measures, return_projection=True)
        totals.append(res["_projection"].samples["inc_hosp_mean"])
    for a, b in itertools.pairwise(totals):
        assert np.all(b <= a + 1e-9)


def test_effects_are_learned_from_history_without_leakage():
    """A lockdown halving R in the synthetic history is recovered (sign and rough size), and
    changing data on or after as_of changes nothing."""
    m = pd.read_csv(__import__("io").StringIO(
        "measure_id,type,start,end,territories,hour,modelled,confirmed,source\n"
        "X,lockdown,2020-05-01,2020-06-10,all,,yes,yes,test\n"))
    import io

    measures = load_measures(io.StringIO(m.to_csv(index=False)))
    cube = synthetic_daily(start="2020-03-01", end="2020-10-24",
                           lockdown=("2020-05-01", "2020-06-10"), effect=0.5)
    eff = fit_effects(cube, measures, pd.Timestamp("2020-09-01"))
    total = eff.beta_mean[:4].sum()  # the lockdown switches on all four rungs
    assert -1.2 < total < -0.3, eff.to_dict()
    assert eff.data_weight[COVARIATES.index("lockdown")] > 0.3
    # Alter the future: effects as of 2020-09-01 must not move.
    future = cube.copy(deep=True)
    future["inc_hosp"].loc[{"date": slice("2020-09-01", None)}] *= 5
    eff2 = fit_effects(future, measures, pd.Timestamp("2020-09-01"))
    np.testing.assert_array_equal(eff.beta_mean, eff2.beta_mean)


def test_measures_after_as_of_are_unknown_and_status_quo_carries_forward():
    measures = load_measures()
    dates = pd.date_range("2020-10-01", "2020-12-31")
    x = department_covariates(measures, ["69", "01"], dates, as_of=pd.Timestamp("2020-10-25"))
    lock = COVARIATES.index("lockdown")
    late = COVARIATES.index("curfew_late")
    assert x[:, :, lock].max() == 0  # L2 (2020-10-30) was not known on 2020-10-25
    # The 21 h curfew in force on 2020-10-24 continues in the status quo past its recorded end.
    assert x[0, dates.get_loc("2020-12-01"), late] == 1
    assert x[1, dates.get_loc("2020-10-23"), late] == 0  # 01 only from 2020-10-24
    assert x[1, dates.get_loc("2020-10-24"), late] == 1


def test_intervention_after_horizon_changes_nothing(cube, no_measures):
    base = _run(cube, no_measures, [])["_projection"].samples["inc_hosp"]
    late = _run(cube, no_measures, [{"type": "lockdown", "start": 60, "end": 80}])
    np.testing.assert_array_equal(base, late["_projection"].samples["inc_hosp"])


def test_result_structure_and_capacity(cube, no_measures):
    yearly = synthetic_yearly({"01": 10.0, "69": 150.0, "FR": 400.0})
    res = _run(cube, no_measures, [{"type": "custom", "start": 0,
                                    "effect": {"transmission": 0.5}}],
               yearly=yearly, extra={"capacity": {"icu": {"default": "cube", "69": 20},
                                                  "hosp": 1000}})
    res.pop("_projection")
    json.dumps(res)  # JSON-able
    assert set(res) >= {"inputs", "vintage", "summary", "trajectories", "effects"}
    recs = pd.DataFrame(res["trajectories"])
    assert set(recs.columns) == {"territory", "indicator", "date", "quantile", "value"}
    assert {"inc_hosp", "hosp", "icu"} <= set(recs["indicator"])
    assert {0.05, 0.25, 0.5, 0.75, 0.95} <= set(recs["quantile"])
    q = recs[(recs.indicator == "hosp") & (recs.territory == "69")].pivot(
        index="date", columns="quantile", values="value")
    assert (q[0.05] <= q[0.5]).all() and (q[0.5] <= q[0.95]).all()
    s = res["summary"]
    assert s["69"]["icu"]["capacity"] == 20  # user override beats the cube
    assert s["01"]["icu"]["capacity"] == 10  # DREES beds from the yearly cube
    assert s["69"]["hosp"]["capacity"] == 1000
    for t in ("01", "69", "FR"):
        for ind in ("hosp", "icu"):
            e = s[t][ind]
            assert 0 <= e["prob_exceed"] <= 1
            assert e["prob_exceed_7d"] <= e["prob_exceed_14d"] <= e["prob_exceed"]
            assert e["bed_days"]["q05"] <= e["bed_days"]["median"] <= e["bed_days"]["q95"]
    # A growing epidemic with 20 ICU beds for 69 must flag the overflow and its date.
    assert s["69"]["icu"]["prob_exceed"] > 0.5 and s["69"]["icu"]["first_exceed_date"]
    assert res["inputs"]["interventions"][0]["start"] == AS_OF  # resolved relative date


def test_mobility_effect_moves_mobility_index(cube, no_measures):
    base = _run(cube, no_measures, [])["_projection"].samples["mobility_transit_stations"]
    low = _run(cube, no_measures, [{"type": "custom", "start": 5,
                                    "effect": {"mobility": -30}}])
    diff = low["_projection"].samples["mobility_transit_stations"] - base
    np.testing.assert_allclose(diff[:, :, 10:], -30, atol=1e-6)
    np.testing.assert_allclose(diff[:, :, :5], 0, atol=1e-6)


def test_missing_recent_admissions_is_an_error(cube, no_measures):
    broken = cube.copy(deep=True)
    broken["inc_hosp"].loc[{"territory": "01", "date": "2020-10-22"}] = np.nan
    with pytest.raises(ValueError, match="01"):
        _run(broken, no_measures, [])


def test_a_second_run_reuses_the_effects_learned_for_the_same_cube_and_date(cube, no_measures,
                                                                           monkeypatch):
    """What makes a warm run fast (bench/scenario.py times one département cold and warm): the
    effects learned from history are fitted once per cube, date and parameters, then reused."""
    from scenarios import engine

    fits = []
    real_fit = engine.fit_effects
    monkeypatch.setattr(engine, "fit_effects", lambda *a, **k: fits.append(a) or real_fit(*a, **k))
    monkeypatch.setattr(engine, "_EFFECT_CACHE", type(engine._EFFECT_CACHE)())
    _run(cube, no_measures, [])  # learns the effects
    assert len(fits) == 1
    run_scenario({"name": "t", "territories": ["69"], "horizon_days": 42,
                  "interventions": [{"type": "lockdown", "start": 5}]}, cube, as_of=AS_OF,
                 measures=no_measures)
    assert len(fits) == 1  # reused, not fitted again
    run_scenario({"name": "t", "territories": ["69"], "horizon_days": 14}, cube,
                 as_of="2020-10-18", measures=no_measures)
    assert len(fits) == 2  # another date: learned again


def test_group_selector_skips_territories_without_recent_data(cube, no_measures):
    broken = cube.copy(deep=True)
    broken["inc_hosp"].loc[{"territory": "01", "date": "2020-10-22"}] = np.nan
    res = run_scenario({"name": "t", "territories": ["departments"], "horizon_days": 14,
                        "n_samples": 50}, broken, as_of=AS_OF, measures=no_measures)
    assert res["skipped_territories"] == ["01"]
    assert set(res["summary"]) == {"69", "75"}


def test_common_random_numbers_and_partial_coverage(cube, no_measures):
    """A zero effect reproduces the status quo draw for draw; an intervention on one
    département moves France by a fraction (its population share), not fully."""
    base = _run(cube, no_measures, [])["_projection"].samples
    zero = _run(cube, no_measures, [{"type": "custom", "start": 2,
                                     "effect": {"transmission": 0.0}}])["_projection"].samples
    np.testing.assert_array_equal(base["inc_hosp"], zero["inc_hosp"])
    only_69 = _run(cube, no_measures, [{"type": "custom", "start": 2, "territories": ["69"],
                                        "effect": {"transmission": -0.5}}])["_projection"]
    everywhere = _run(cube, no_measures, [{"type": "custom", "start": 2,
                                           "effect": {"transmission": -0.5}}])["_projection"]
    i01, i69, ifr = (only_69.territories.index(t) for t in ("01", "69", "FR"))
    np.testing.assert_array_equal(only_69.samples["inc_hosp_mean"][i01],
                                  base["inc_hosp_mean"][i01])
    np.testing.assert_array_equal(only_69.samples["inc_hosp_mean"][i69],
                                  everywhere.samples["inc_hosp_mean"][i69])
    fr_base = base["inc_hosp_mean"][ifr].sum()
    fr_part = only_69.samples["inc_hosp_mean"][ifr].sum()
    fr_all = everywhere.samples["inc_hosp_mean"][ifr].sum()
    assert fr_all < fr_part < fr_base


def test_rt_table_recovers_the_synthetic_reproduction_number(cube):
    from scenarios import rt_table

    table = rt_table(cube, ["69"])
    n = cube.sizes["date"]
    wave = 1.0 + 0.25 * np.sin(2 * np.pi * np.arange(n) / 150)  # as in synthetic_daily
    truth = pd.Series(wave * 1.02, index=pd.DatetimeIndex(cube["date"].values))
    truth7 = truth.rolling(7).mean()
    est = table.set_index("date")["r_mean"]
    mid = est.index[(est.index > est.index[0] + pd.Timedelta(days=40))]
    err = (est[mid] / truth7[mid] - 1).abs()
    assert err.median() < 0.05 and err.max() < 0.25, err.describe()
    assert (table["r_q05"] <= table["r_mean"]).all() and (table["r_mean"] <= table["r_q95"]).all()


def test_projection_is_labelled_with_units(cube, no_measures):
    """The trajectories are an xarray Dataset with named dimensions and units; the array
    properties read the same numbers."""
    proj = _run(cube, no_measures, [{"type": "lockdown", "start": 3}])["_projection"]
    data = proj.data
    for name in ("inc_hosp", "inc_hosp_mean", "hosp", "icu", "er_visits_covid_rate",
                 "mobility_transit_stations"):
        assert data[name].dims == ("territory", "sample", "date"), name
        assert data[name].attrs["units"], name
        np.testing.assert_array_equal(proj.samples[name], data[name].values)
    assert data["r_now"].dims == ("territory", "sample")
    assert data["icu_capacity"].dims == ("territory",)
    assert list(data["territory"].values) == ["01", "69", "FR"]
    assert str(data["territory_level"].sel(territory="FR").values) == "country"
    assert data.sizes == {"territory": 3, "sample": 200, "date": 28}
    assert proj.dates[0] == pd.Timestamp(AS_OF)
