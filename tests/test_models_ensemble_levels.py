"""Level-dependent ensemble membership and the gbm's leading indicators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from models.backtest import backtest_raw
from models.base import QUANTILES_ARR, quantile_array
from models.ensemble import Ensemble
from models.learning import GlobalGBM, _exog_values
from models.registry import Registry
from models.targets import get_target
from tests.synthetic_cube import add_leading_signals, synthetic_cube

TERRITORIES = ["FR", "R84", "69"]
LEVELS = ["country", "region", "department"]
TARGETS = pd.DatetimeIndex(["2021-01-09", "2021-01-16"])


def _member(scale: float) -> xr.DataArray:
    """A member whose quantiles are ``scale`` × (1 + q) for every territory and horizon."""
    values = np.broadcast_to(scale * (1 + QUANTILES_ARR), (3, 2, 23)).copy()
    return quantile_array(values, TERRITORIES, TARGETS, model="m")


def test_departments_use_their_own_members():
    forecasts = {"ets": _member(10), "sarimax": _member(20), "gbm": _member(30),
                 "baseline": _member(50)}
    fc = Ensemble().combine(forecasts, LEVELS)
    # France: median of 4 = mean of the middle two (20, 30) → 25.
    np.testing.assert_allclose(fc.sel(territory="FR").values, _member(25).values[0])
    # Région and département: gbm and baseline only → mean of 30 and 50 → 40.
    np.testing.assert_allclose(fc.sel(territory="R84").values, _member(40).values[1])
    np.testing.assert_allclose(fc.sel(territory="69").values, _member(40).values[2])
    # Without levels every territory gets the default members.
    plain = Ensemble().combine(forecasts)
    np.testing.assert_allclose(plain.sel(territory="69").values, _member(25).values[2])


def test_all_members_and_missing_member_error():
    ens = Ensemble(members=("ets", "baseline"), level_members={"department": ("gbm",)})
    assert ens.all_members() == ["ets", "baseline", "gbm"]
    assert ens.members_for("department") == ("gbm",)
    assert ens.members_for("region") == ("ets", "baseline")
    try:
        ens.combine({"ets": _member(1), "baseline": _member(2)}, LEVELS)
    except KeyError as err:
        assert "gbm" in str(err)
    else:  # pragma: no cover - the assertion is the point
        raise AssertionError("a missing member must be named")


def test_ensemble_fit_predict_follows_territory_levels():
    y = synthetic_cube("weekly", periods=40)["inc_hosp"]
    ens = Ensemble(members=("baseline",), level_members={"department": ("ets",)},
                   registry=Registry()).fit(y)
    fc = ens.predict(2)
    base = Registry().create("baseline").fit(y).predict(2)
    ets = Registry().create("ets").fit(y).predict(2)
    levels = [str(v) for v in y["territory_level"].values]
    for code, level in zip(y["territory"].values, levels, strict=True):
        expected = ets if level == "department" else base
        np.testing.assert_allclose(fc.sel(territory=code).values,
                                   expected.sel(territory=code).values, rtol=1e-9)


def test_exog_taken_from_nearest_ancestor():
    ds = synthetic_cube("weekly", periods=12)
    codes = [str(t) for t in ds["territory"].values]
    levels = [str(v) for v in ds["territory_level"].values]
    rate = np.full((len(codes), ds.sizes["date"]), np.nan)
    rate[levels.index("country")] = np.arange(12.0)
    region = levels.index("region")
    rate[region] = 100 + np.arange(12.0)
    ds["sos_medecins_covid_rate"] = (("territory", "date"), rate)
    values = _exog_values(ds["sos_medecins_covid_rate"], ds["inc_hosp"], len(codes))
    parents = [str(p) for p in ds["territory_parent"].values]
    for i, level in enumerate(levels):
        if level == "department":
            own_region = codes.index(parents[i])
            source = region if own_region == region else levels.index("country")
            np.testing.assert_allclose(values[i], rate[source])
    # The regressor reaches the features (level and two changes) and the model still predicts.
    model = GlobalGBM(exog=("sos_medecins_covid_rate",), min_rows=10)
    model.fit(ds["inc_hosp"], ds.drop_vars("inc_hosp"))
    plain = GlobalGBM(exog=(), min_rows=10).fit(ds["inc_hosp"], ds.drop_vars("inc_hosp"))
    assert model.features_.shape[-1] == plain.features_.shape[-1] + 3
    assert np.isfinite(model.predict(2).values).all()


def test_backtest_ensemble_rows_use_levels():
    """Backtest ensemble rows are combined per level, exactly as a live forecast is."""
    cube = synthetic_cube("weekly", periods=50)

    def opener(frequency, as_of):
        return cube if as_of is None else cube.sel(date=cube["date"] < pd.Timestamp(as_of))

    reg = Registry()
    reg.register("ens_test", kind="ensemble", version="t", persist=False,
                 params={"members": ("baseline",), "level_members": {"department": ("ets",)}})
    fd = pd.Timestamp(cube["date"].values[-6]) + pd.Timedelta(days=2)
    raw = backtest_raw(get_target("inc_hosp", "weekly"), "all", [fd], ["ens_test"], opener,
                       registry=reg)
    keys = ["territory", "horizon"]
    ens = raw[raw["model"] == "ens_test"].set_index(keys).sort_index()
    for member, level in (("ets", "department"), ("baseline", "country")):
        rows = raw[raw["model"] == member].set_index(keys).sort_index()
        codes = [str(t) for t, lv in zip(cube["territory"].values, cube["territory_level"].values,
                                         strict=True) if str(lv) == level]
        q = [c for c in ens.columns if c.startswith("q")]
        np.testing.assert_allclose(ens.loc[codes, q].to_numpy(), rows.loc[codes, q].to_numpy())


def test_backtest_skips_dates_before_the_series_begins():
    """Warm-up dates before any data (long daily horizons) are skipped, not a crash."""
    cube = synthetic_cube("weekly", periods=30)

    def opener(frequency, as_of):
        return cube if as_of is None else cube.sel(date=cube["date"] < pd.Timestamp(as_of))

    first = pd.Timestamp(cube["date"].values[0])
    late = pd.Timestamp(cube["date"].values[-5]) + pd.Timedelta(days=2)
    raw = backtest_raw(get_target("inc_hosp", "weekly"), "national",
                       [first - pd.Timedelta(weeks=3), late], ["baseline"], opener)
    assert set(raw["forecast_date"]) == {late}
    assert len(raw) == 4  # FR × 4 horizons
    # A date with a single period of history (its step cannot be inferred) is skipped too.
    second = first + pd.Timedelta(days=2)  # the Monday after the first week
    raw = backtest_raw(get_target("inc_hosp", "weekly"), "national", [second, late],
                       ["baseline"], opener)
    assert set(raw["forecast_date"]) == {late}


def test_ensemble_versions_pin_member_versions():
    registry = Registry()
    registry.register("gbm", kind="gbm", params={"exog": ("stringency_index",)},
                      version="9.9", persist=False)
    assert registry.get("gbm").version == "9.9"  # the new version is current
    for version, gbm_version, exog in (("1.0", "1.0", ()),
                                       ("1.1", "1.1", GlobalGBM().exog)):
        ens = registry.create("ensemble", version)
        assert ens.member_version("gbm") == gbm_version
        members = ens.member_models(registry)
        # A pinned version other than the current one is keyed name@version.
        assert members[f"gbm@{gbm_version}"].exog == exog
        assert ens.member_version("ets") is None  # unpinned: current version
        assert "ets" in members
    # An ensemble without pins takes the current versions.
    assert Ensemble().member_models(registry)["gbm"].exog == ("stringency_index",)
    assert registry.get("gbm@1.0").params == {"exog": ()}


def test_two_ensemble_versions_in_one_backtest():
    """ensemble@1.1 and ensemble@1.2 backtested together each combine their own gbm."""
    cube = add_leading_signals(synthetic_cube("weekly", periods=50))

    def opener(frequency, as_of):
        return cube if as_of is None else cube.sel(date=cube["date"] < pd.Timestamp(as_of))

    fd = pd.Timestamp(cube["date"].values[-6]) + pd.Timedelta(days=2)
    registry = Registry()
    names = ["ensemble@1.1", "ensemble@1.2"]
    raw = backtest_raw(get_target("inc_hosp", "weekly"), "department", [fd], names, opener,
                       registry=registry)
    # The current gbm version keeps its plain name, the other one is keyed gbm@version.
    gbm_keys = {n: registry.create(n).member_keys(registry)["gbm"] for n in names}
    other = "1.1" if registry.get("gbm").version == "1.2" else "1.2"
    assert sorted(gbm_keys.values()) == ["gbm", f"gbm@{other}"]
    assert set(raw["model"]) == {*names, *gbm_keys.values(), "baseline"}
    q = [c for c in raw.columns if c.startswith("q")]
    rows = {m: r.sort_values(["territory", "horizon"])[q].to_numpy()
            for m, r in raw.groupby("model")}
    for ens, gbm in gbm_keys.items():
        # Départements: median of gbm and baseline = their mean, quantile by quantile.
        expected = np.sort((rows[gbm] + rows["baseline"]) / 2, axis=1)
        np.testing.assert_allclose(rows[ens], expected, rtol=1e-9)
    a, b = gbm_keys.values()
    assert not np.allclose(rows[a], rows[b])  # 1.2 reads the case signals


def test_only_members_combined_at_the_level_are_fitted():
    from models.preparation import expand_members

    registry = Registry()
    _, national = expand_members("ensemble", registry, "national")
    assert set(national) == {"ets", "sarimax", "gbm", "baseline", "growth"}
    _, departments = expand_members("ensemble", registry, "department")
    assert set(departments) == {"gbm", "baseline", "growth"}  # no ets, sarimax: discarded
    _, everything = expand_members("ensemble", registry, "all")
    assert set(everything) == set(national)
    _, single = expand_members("ets", registry, "department")
    assert set(single) == {"ets"}


def test_ensemble_fit_skips_members_no_level_combines():
    y = synthetic_cube("weekly", periods=40)["inc_hosp"]
    departments = y.sel(territory=y["territory_level"] == "department")
    registry = Registry()
    assert set(Ensemble(registry=registry).fit(departments).members_) == {"gbm", "baseline"}
    assert set(Ensemble(registry=registry).fit(y).members_) == {"ets", "sarimax", "gbm",
                                                                "baseline"}


def test_backtest_levels_equals_level_by_level():
    """The shared multi-level backtest (each member fitted once per date) gives the rows of
    backtest_raw run level by level."""
    from models.backtest import backtest_levels

    cube = add_leading_signals(synthetic_cube("weekly", periods=50))

    def opener(frequency, as_of):
        return cube if as_of is None else cube.sel(date=cube["date"] < pd.Timestamp(as_of))

    # Two versions as 1.1 and 1.2 (ets for France, gbm with / without the signals), smaller.
    reg = Registry()
    fast = {"max_iter": 20, "min_rows": 50}
    reg.register("gbm", kind="gbm", version="t1", persist=False, params={"exog": (), **fast})
    reg.register("gbm", kind="gbm", version="t2", persist=False,
                 params={"exog": (), "signals": ("incidence_rate_7d",), **fast})
    for version, gbm in (("t1", "t1"), ("t2", "t2")):
        reg.register("ensemble", kind="ensemble", version=version, persist=False,
                     params={"members": ("ets", "gbm", "baseline"),
                             "member_versions": {"gbm": gbm}})
    target = get_target("inc_hosp", "weekly")
    fds = [pd.Timestamp(cube["date"].values[-6]) + pd.Timedelta(days=2)]
    names = ["ensemble@t1", "ensemble@t2"]
    levels = ["national", "region", "department"]
    shared = backtest_levels(target, levels, fds, names, opener, registry=reg)
    assert {"gbm@t1", "gbm", "ets", "baseline", *names} == set(shared["model"])
    keys = ["model", "territory", "horizon"]
    q = [c for c in shared.columns if c.startswith("q")]
    for level in levels:
        alone = backtest_raw(target, level, fds, names, opener, registry=reg)
        alone = alone.set_index(keys).sort_index()
        got = shared[shared["territory"].isin(alone.index.get_level_values("territory"))]
        got = got[got["model"].isin(alone.index.get_level_values("model"))]
        got = got.set_index(keys).sort_index()
        assert got.index.equals(alone.index), level
        np.testing.assert_allclose(got[q].to_numpy(), alone[q].to_numpy(), rtol=1e-9)
