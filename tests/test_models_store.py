"""Model registry versions and forecast-run persistence; the CLI end to end on a tiny cube."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from features.settings import Settings
from models.registry import Registry, get_registry
from models.store import ForecastStore


def test_registry_versions_persist_and_reload(tmp_path):
    settings = Settings.from_env(home=str(tmp_path))
    reg = get_registry(settings)
    assert reg.get("ensemble").version == "1.3"
    assert reg.get("ensemble@1.1").params == {"member_versions": {"gbm": "1.1"}}
    assert reg.get("ensemble", "1.0").params == {"level_members": {},
                                                 "member_versions": {"gbm": "1.0"}}
    reg.register("ets", kind="ets", params={"window": 26}, version="1.1-w26",
                 description="shorter window")
    reg.register("ets_sqrt", kind="ets", params={"transform": "sqrt"}, version="1")
    again = get_registry(settings)  # what the service sees
    assert again.get("ets").version == "1.1-w26"
    assert again.create("ets").get_params()["window"] == 26
    assert again.get("ets", "1.0").params == {}
    assert again.create("ets_sqrt").get_params()["transform"] == "sqrt"
    with pytest.raises(ValueError, match="already exists"):
        again.register("ets", kind="ets", version="1.1-w26")
    with pytest.raises(ValueError, match="unknown model kind"):
        again.register("evil", kind="os.system", version="1")
    stored = json.loads((settings.models_dir / "registry.json").read_text())
    assert {m["name"] for m in stored["models"]} == {"ets", "ets_sqrt"}


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(KeyError, match="ensemble"):
        Registry().create("nope")


def test_forecast_store_roundtrip(tmp_path):
    store = ForecastStore(tmp_path / "forecasts")
    rows = pd.DataFrame({
        "forecast_date": "2021-03-01", "target": "1 wk ahead inc hosp",
        "target_end_date": "2021-03-06", "location": ["01", "2A"], "type": "quantile",
        "quantile": 0.5, "value": [3.0, 4.0]})
    meta = {"target": "inc_hosp", "frequency": "weekly", "level": "department",
            "model": "ensemble", "model_version": "1.0", "vintage_id": "v1", "as_of": "2021-03-01"}
    first = store.save(rows, meta)
    second = store.save(rows.assign(value=[5.0, 6.0]), meta)
    latest = store.latest("inc_hosp", "department")
    assert latest.run_id == second.run_id != first.run_id
    assert latest.read()["location"].tolist() == ["01", "2A"]  # codes stay strings
    assert latest.metadata["vintage_id"] == "v1" and "created_at" in latest.metadata
    assert [r.run_id for r in store.list_runs()] == [second.run_id, first.run_id]
    assert not list((tmp_path / "forecasts" / "runs").glob(".tmp*"))


def test_cli_forecast_backtest_score(synthetic_home, capsys):
    from service.cli import main

    tmp_path = synthetic_home
    out = tmp_path / "fc.csv"
    assert main(["forecast", "--target", "inc_hosp", "--level", "department", "--territory",
                 "01", "2A", "--as-of", "2021-01-04", "--model", "ets", "--horizon", "2",
                 "--sequential", "--save", "--out", str(out)]) == 0
    rows = pd.read_csv(out, dtype={"location": str})
    assert set(rows["location"]) == {"01", "2A"} and len(rows) == 2 * 2 * 23
    assert set(rows["target_end_date"]) == {"2021-01-09", "2021-01-16"}
    assert ForecastStore.from_settings().latest("inc_hosp", "department", "ets") is not None

    bt = tmp_path / "bt.csv"
    assert main(["backtest", "--target", "inc_hosp", "--level", "national", "--start",
                 "2020-12-07", "--end", "2021-01-04", "--model", "ets", "--horizon", "2",
                 "--sequential", "--out", str(bt)]) == 0
    rows = pd.read_csv(bt, dtype={"location": str})
    assert sorted(rows["forecast_date"].unique()) == [
        "2020-12-07", "2020-12-14", "2020-12-21", "2020-12-28", "2021-01-04"]
    assert set(rows["location"]) == {"FR"}
    base = tmp_path / "base.csv"
    main(["backtest", "--target", "inc_hosp", "--level", "national", "--start", "2020-12-07",
          "--end", "2021-01-04", "--model", "baseline", "--horizon", "2", "--sequential",
          "--out", str(base)])
    capsys.readouterr()
    assert main(["score", str(bt), "--baseline", str(base)]) == 0
    printed = capsys.readouterr().out
    assert "rel_wis" in printed and "cov50" in printed


def test_cli_backtest_all_models_writes_every_member(synthetic_home):
    from service.cli import main

    bt = synthetic_home / "bt.csv"
    # Départements combine gbm and baseline only; --all-models still scores ets and sarimax.
    assert main(["backtest", "--target", "inc_hosp", "--level", "department", "--start",
                 "2021-01-04", "--end", "2021-01-04", "--horizon", "1", "--all-models",
                 "--sequential", "--out", str(bt)]) == 0
    models = set(pd.read_csv(bt)["model"])
    for name in ("ensemble", "ets", "sarimax", "gbm", "baseline"):
        assert name in models, name


def test_backtest_report_compares_versions(synthetic_home, monkeypatch, capsys):
    """bench/backtest_report.py --compare-versions prints both versions per level and period."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "backtest_report.py"
    spec = importlib.util.spec_from_file_location("backtest_report", path)
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    monkeypatch.setattr(report, "OUT", synthetic_home / "out")
    assert report.main(["--compare-versions", "1.1", "1.2", "--levels", "national", "department",
                        "--start", "2021-01-04", "--end", "2021-01-25", "--split", "2021-01-18",
                        "--sequential"]) == 0
    printed = capsys.readouterr().out
    for period in ("all dates", "development (forecast dates before 2021-01-18)",
                   "held out (forecast dates from 2021-01-18)"):
        assert period in printed
    for label in ("France", "median département"):
        for version in ("1.1", "1.2"):
            assert f"| {label} | ensemble@{version} | " in printed
    assert "territories beating the baseline" in printed
    assert len(list((synthetic_home / "out").glob("compare_ensemble_11_12_*.parquet"))) == 1
