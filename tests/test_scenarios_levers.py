"""Vaccination and variant levers (synthetic cube): direction, exact share dynamics, cube
look-ups with fallbacks, bounds in the schema."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from scenarios import ScenarioValidationError, resolve, run_scenario, validate_definition
from scenarios.levers import VARIANT_PRIORS, Variant, parse_variant, variant_log_r
from tests.scenario_helpers import empty_measures, synthetic_daily

AS_OF = "2020-10-25"


@pytest.fixture(scope="module")
def cube():
    return synthetic_daily(end="2020-10-24")


def _with(ds, name, values):
    """Add a daily variable with a constant value per territory (NaN where not given)."""
    arr = np.full((ds.sizes["territory"], ds.sizes["date"]), np.nan)
    for code, v in values.items():
        arr[list(ds["territory"].values).index(code)] = v
    return ds.assign({name: (("territory", "date"), arr)})


def _total(ds, terrs=("69", "FR"), **extra):
    # ihr 1: the synthetic wave would otherwise exhaust susceptibles within days.
    definition = {"name": "x", "territories": list(terrs), "horizon_days": 42, "n_samples": 200,
                  "seed": 2, "interventions": [], "parameters": {"ihr": 1.0}, **extra}
    res = run_scenario(definition, ds, as_of=AS_OF, measures=empty_measures(),
                       include_trajectories=False)
    return {t: res["summary"][t]["inc_hosp"]["total"]["median"] for t in terrs}, res


def test_vaccination_lowers_admissions_only_above_current_coverage(cube):
    ds = _with(cube, "vaccination_coverage_dose1", {"69": 40.0, "FR": 40.0})
    base, _ = _total(ds)
    more, res = _total(ds, vaccination={"coverage": 80, "by": 30})
    same, _ = _total(ds, vaccination={"coverage": 30, "by": 30})  # below today's 40 %
    assert all(more[t] < base[t] for t in base)
    assert same == base
    info = res["levers"]["vaccination"]
    assert info["coverage_now"] == {"69": 40.0, "FR": 40.0}
    assert "Paireau" in info["prior"] and info["hindsight"] is True
    # A stronger effect of coverage gives fewer admissions (common random numbers).
    stronger, _ = _total(ds, vaccination={"coverage": 80, "by": 30, "effect": 0.9,
                                          "effect_sd": 0})
    weaker, _ = _total(ds, vaccination={"coverage": 80, "by": 30, "effect": 0.3,
                                        "effect_sd": 0})
    assert all(stronger[t] < weaker[t] for t in base)


def test_vaccination_without_coverage_in_the_cube_starts_from_zero(cube, caplog):
    with caplog.at_level(logging.INFO, logger="scenarios.levers"):
        _, res = _total(cube, vaccination={"coverage": 50, "by": 60})
    assert res["levers"]["vaccination"]["coverage_now"] == {"69": 0.0, "FR": 0.0}
    assert "coverage now taken as 0" in caplog.text


def test_variant_raises_admissions_monotonically_in_its_advantage(cube):
    base, _ = _total(cube)
    totals = [_total(cube, variant={"advantage": a, "share": 10, "advantage_sd": 0})[0]
              for a in (0.2, 0.6, 1.0)]
    for t in base:
        assert base[t] < totals[0][t] < totals[1][t] < totals[2][t]


def test_variant_share_follows_the_logistic_of_its_advantage(cube):
    """p(t0) is the measured share; its log-odds grow by log(1 + a) per mean generation."""
    lever = Variant("x", 0.6, 0.0, "test", 20.0, None, share_lag_days=7)
    as_of = pd.Timestamp(AS_OF)
    t0 = as_of - pd.Timedelta(days=8)
    u = pd.DatetimeIndex([t0, t0 + pd.Timedelta(days=5)])
    lr, info = variant_log_r(lever, cube, ["69"], {}, u, as_of, 5.0,
                             np.random.default_rng(0), 3)
    p = np.expm1(lr[0, 0]) / 0.6
    assert p[0] == pytest.approx(0.20)
    logit = np.log(p / (1 - p))
    assert logit[1] - logit[0] == pytest.approx(np.log(1.6))  # one 5-day generation
    assert info["share_now"] == {"69": 20.0}


def test_variant_share_from_the_cube_with_parent_fallback(cube, caplog):
    ds = _with(cube, "variant_share_l452r", {"R84": 30.0, "FR": 25.0})
    lever = parse_variant({"advantage": "delta", "share": "cube"})
    assert lever.share_indicator == "variant_share_l452r" and lever.advantage == 0.79
    u = pd.DatetimeIndex([pd.Timestamp(AS_OF)])
    parents = {"69": "R84", "R84": "FR", "75": "R11", "R11": "FR"}
    with caplog.at_level(logging.INFO, logger="scenarios.levers"):
        _, info = variant_log_r(lever, ds, ["69", "75"], parents, u, pd.Timestamp(AS_OF), 5.0,
                                np.random.default_rng(0), 2)
    assert info["share_from"] == {"69": "R84", "75": "FR"}
    assert info["share_now"] == {"69": 30.0, "75": 25.0}
    with pytest.raises(ValueError, match="no variant_share_l452r for 69"):
        variant_log_r(lever, cube, ["69"], parents, u, pd.Timestamp(AS_OF), 5.0,
                      np.random.default_rng(0), 2)


def test_presets_cite_their_source():
    assert set(VARIANT_PRIORS) == {"alpha", "delta", "omicron"}
    assert "Gaymard" in VARIANT_PRIORS["alpha"][2] and "Alizon" in VARIANT_PRIORS["delta"][2]
    assert "Sofonea" in VARIANT_PRIORS["omicron"][2]


@pytest.mark.parametrize(("lever", "where", "words"), [
    ({"vaccination": {"coverage": 120, "by": 30}}, "vaccination.coverage", "maximum"),
    ({"vaccination": {"coverage": 60, "by": 1000}}, "vaccination.by", "maximum"),
    ({"vaccination": {"coverage": 60, "by": 30, "effect": 1.5}}, "vaccination.effect",
     "maximum"),
    ({"vaccination": {"coverage": 60, "by": 30, "effect_sd": 3}}, "vaccination.effect_sd",
     "maximum"),
    ({"vaccination": {"coverage": 60, "by": 30, "protection_delay_days": 90}},
     "vaccination.protection_delay_days", "maximum"),
    ({"vaccination": {"coverage": 60}}, "vaccination", "'by' is a required property"),
    ({"vaccination": {"coverage": 60, "by": "2021-02-30"}}, "vaccination.by",
     "not a valid date"),
    ({"variant": {"advantage": 5, "share": 10}}, "variant.advantage", "maximum"),
    ({"variant": {"advantage": "beta", "share": 10}}, "variant.advantage", "is not one of"),
    ({"variant": {"advantage": 0.5, "share": 0}}, "variant.share", "less than or equal"),
    ({"variant": {"advantage": 0.5, "share": 150}}, "variant.share", "maximum"),
    ({"variant": {"advantage": 0.5, "share": 10, "advantage_sd": 2}}, "variant.advantage_sd",
     "maximum"),
    ({"variant": {"advantage": 0.5, "share": 10, "share_lag_days": 60}},
     "variant.share_lag_days", "maximum"),
    ({"variant": {"advantage": 0.5, "share": "cube"}}, "variant.share",
     "needs share_indicator"),
    ({"variant": {"advantage": "alpha", "share": "cube"}}, "variant.share",
     "needs share_indicator"),
    ({"variant": {"advantage": 0.5, "share": 10, "shares": 3}}, "variant.shares",
     "unknown field"),
])
def test_lever_fields_are_bounded_and_named(lever, where, words):
    with pytest.raises(ScenarioValidationError) as err:
        validate_definition({"name": "x", **lever}, "f.yaml")
    assert any(e.startswith(f"{where}:") and words in e for e in err.value.errors), \
        err.value.errors


def test_vaccination_by_before_as_of_is_an_error():
    with pytest.raises(ScenarioValidationError, match=r"vaccination\.by: 2020-10-01 is before"):
        resolve({"name": "x", "vaccination": {"coverage": 60, "by": "2020-10-01"}},
                 as_of=AS_OF)


def test_library_uses_each_lever():
    from scenarios import load_library_scenario

    variant = resolve(load_library_scenario("variant_delta_2021_06"))
    both = resolve(load_library_scenario("vaccination_delta_2021_06"))
    assert variant.variant.share_indicator == "variant_share_l452r"
    assert variant.variant.advantage == 0.79 and variant.vaccination is None
    assert both.vaccination.coverage == 70 and both.vaccination.by == pd.Timestamp("2021-08-31")
    assert both.variant == variant.variant


def test_variant_raises_the_r_cap(cube):
    """With the cap at R = 1 admissions cannot grow; a variant at 50 % with +100 % lifts the cap
    of the mixture to up to 2, and they do."""
    def last_over_first(**extra):
        definition = {"name": "x", "territories": ["69"], "horizon_days": 42, "n_samples": 100,
                      "seed": 2, "interventions": [], "parameters": {"ihr": 1.0, "r_max": 1.0},
                      **extra}
        res = run_scenario(definition, cube, as_of=AS_OF, measures=empty_measures(),
                           include_trajectories=False, return_projection=True)
        med = np.median(res["_projection"].samples["inc_hosp_mean"][0], axis=0)
        return med[-1] / med[20]

    assert last_over_first() <= 1.0 + 1e-9
    assert last_over_first(variant={"advantage": 1.0, "share": 50, "advantage_sd": 0}) > 1.5
