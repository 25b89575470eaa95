"""R now from cases where they exist (synthetic cubes): France and régions from their cases,
départements from their région's cases with their own deviation shrunk, admissions otherwise
(before cases start, after they stop, without a case variable) without crashing."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from scenarios import run_scenario
from scenarios.params import EpiParameters
from scenarios.rnow import estimate_r_now
from tests.scenario_helpers import empty_measures, synthetic_daily, with_cases

AS_OF = "2020-10-25"
W = EpiParameters().generation_interval()
R_CASES = {"R84": 1.35, "R11": 1.20}


@pytest.fixture(scope="module")
def cube():
    return synthetic_daily(end="2020-10-24")


def _cut(ds):
    return ds.sel(date=ds["date"] < np.datetime64(AS_OF))


def _now(ds, codes, **kw):
    ds = _cut(ds)
    lv = [str(ds["territory_level"].sel(territory=c).item()) for c in codes]
    par = [str(ds["territory_parent"].sel(territory=c).item()) for c in codes]
    return estimate_r_now(ds, codes, lv, par, W, **kw)


def _run(ds, territories, **kw):
    definition = {"name": "sq", "territories": territories, "horizon_days": 28,
                  "n_samples": 300, "seed": 5, "interventions": [],
                  "parameters": {"ihr": 1.0}}  # the synthetic wave would deplete susceptibles
    return run_scenario(definition, ds, as_of=AS_OF, measures=empty_measures(),
                        return_projection=True, include_trajectories=False, **kw)


def test_france_and_regions_take_the_r_of_their_cases(cube):
    ds = with_cases(cube, R_CASES)
    now = _now(ds, ["FR", "R84", "R11"])
    assert now.basis == ["cases"] * 3 and list(now.shrink) == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(np.exp(now.log_r[1:]), [1.35, 1.20], rtol=0.02)
    # The engine projects with it: R now is the case R, not the admissions R (about 1).
    res = _run(ds, ["R84"])
    proj = res["_projection"]
    assert np.median(proj.r_now[0]) == pytest.approx(1.35, rel=0.03)
    assert np.median(proj.r_now_admissions[0]) < 1.2
    assert res["summary"]["R84"]["r_basis"]["basis"] == "cases"


def test_status_quo_sees_the_acceleration_of_cases(cube):
    """Cases accelerating while admissions do not yet: the status quo from cases projects
    more admissions than the status quo from admissions, in every territory."""
    ds = with_cases(cube, R_CASES)
    terrs = ["FR", "R84", "69", "01", "75"]
    by_cases = _run(ds, terrs)["summary"]
    by_adm = _run(ds, terrs, rt_basis="admissions", rt_pool=False)["summary"]
    for t in terrs:
        assert by_cases[t]["inc_hosp"]["total"]["median"] > by_adm[t]["inc_hosp"]["total"][
            "median"], t


def test_departments_borrow_their_region_with_a_shrunk_deviation(cube):
    ds = with_cases(cube, R_CASES)
    deps = ["01", "69", "75"]
    pooled = _now(ds, deps)
    ratio = _now(ds, deps, pool=False)
    adm = _now(ds, ["01", "69", "75", "R84", "R11"], basis="admissions", pool=False)
    assert [s for s in pooled.source] == ["R84", "R84", "R11"]
    assert pooled.basis == ["cases"] * 3
    assert all(0 < k < 1 for k in pooled.shrink) and list(ratio.shrink) == [1.0] * 3
    # Without pooling: R^A_d x R^C_g / R^A_g exactly.
    ra = dict(zip(["01", "69", "75", "R84", "R11"], adm.log_r, strict=True))
    for i, (d, g) in enumerate((("01", "R84"), ("69", "R84"), ("75", "R11"))):
        expected = ra[d] + np.log(R_CASES[g]) - ra[g]
        assert ratio.log_r[i] == pytest.approx(expected, abs=0.02)
        # Pooled: between the région's case R and the unpooled value, nearer the région for
        # the smaller département (more noise, smaller k).
        lo, hi = sorted((np.log(R_CASES[g]), ratio.log_r[i]))
        assert lo - 1e-9 <= pooled.log_r[i] <= hi + 1e-9
    assert pooled.shrink[0] < pooled.shrink[1]  # Ain (650k) < Rhône (1.87M)


def test_falls_back_to_admissions_when_cases_have_not_started_or_stopped(cube, caplog):
    for ds, words in ((with_cases(cube, R_CASES, start="2020-10-15"), "do not cover"),
                      (with_cases(cube, R_CASES, stop="2020-10-20"), "to 2020-10-20)"),
                      (cube, "no daily cases in the cube")):
        now = _now(ds, ["FR", "69"])
        assert now.basis == ["admissions", "admissions"]
        assert words in now.note[0] and words in now.note[1]
        with caplog.at_level(logging.INFO, logger="scenarios"):
            res = _run(ds, ["FR", "69"])
        assert words in caplog.text
        assert res["summary"]["FR"]["r_basis"]["basis"] == "admissions"
        caplog.clear()


def test_too_few_cases_fall_back_to_admissions(cube):
    ds = with_cases(cube, {"R84": 1.0, "R11": 1.0}, level=5.0)  # 35 positives a week
    now = _now(ds, ["R84"])
    assert now.basis == ["admissions"] and "too few cases" in now.note[0]


def test_admissions_without_pooling_is_the_former_method(cube):
    """rt_basis admissions + rt_pool false reproduces the engine's own R^A draws exactly."""
    ds = with_cases(cube, R_CASES)
    res = _run(ds, ["69", "FR"], rt_basis="admissions", rt_pool=False)
    proj = res["_projection"]
    np.testing.assert_array_equal(proj.r_now, proj.r_now_admissions)
    assert res["inputs"]["rt_basis"] == "admissions" and res["inputs"]["rt_pool"] is False


def test_rt_basis_is_a_validated_field():
    from scenarios import ScenarioValidationError, validate_definition

    validate_definition({"name": "x", "rt_basis": "admissions", "rt_pool": False})
    with pytest.raises(ScenarioValidationError, match="rt_basis"):
        validate_definition({"name": "x", "rt_basis": "tests"})
