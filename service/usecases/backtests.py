"""Backtests and scores: the rolling-origin backtest of ``python -m service backtest`` (Hub CSV
rows), the scores of Hub CSV files (``score``) and the weekly leaderboard of the ``backtest``
job (``$VIGIE_HOME/models/leaderboard.json``)."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd

from features.storage.atomic import atomic_write_json

#: Columns identifying a backtest row before its quantiles.
ROW_KEYS = ["model", "forecast_date", "territory", "horizon", "target_end_date"]


def backtest_hub(settings: Any, target: Any, level: str, dates: list, *, model: str,
                 all_models: bool = False, territories: list[str] | None = None,
                 horizons: tuple[int, ...] | None = None, every: int = 7, opener: Any = None,
                 parallel: bool = True, progress: bool = False) -> pd.DataFrame:
    """Backtest ``model`` (``all_models``: it and every member, raw and calibrated) at
    ``level`` on each forecast date, each seeing only data before it; Hub CSV rows (with a
    ``model`` column when ``all_models``), sorted. ``parallel``: fit on Dask workers.

    Raises
    ------
    models.preparation.NoHistoryError
        No date has data before it (each date without one is skipped, logged)."""
    from models.backtest import backtest
    from models.calibration import QCOLS
    from models.preparation import default_opener, model_and_members
    from models.registry import get_registry
    from models.targets import QUANTILES
    from service.usecases.forecasts import fit_client

    opener = opener or default_opener(settings)
    registry = get_registry(settings)
    # all_models: every member too, also those the ensemble does not combine at this level.
    names = model_and_members(model, registry) if all_models else [model]
    with fit_client(settings, parallel) as client:
        result = backtest(target, level, dates, names, opener, territories=territories,
                          horizons=horizons or target.horizons, every=every, client=client,
                          registry=registry, progress=progress)
    if not all_models:
        result = result[result["model"] == model]
    long = result.melt(id_vars=ROW_KEYS, value_vars=QCOLS, var_name="quantile",
                       value_name="value")
    long["quantile"] = long["quantile"].str.lstrip("q").astype(float)
    out = pd.DataFrame({
        "forecast_date": long["forecast_date"].dt.strftime("%Y-%m-%d"),
        "target": [target.hub_target(int(h)) for h in long["horizon"]],
        "target_end_date": long["target_end_date"].dt.strftime("%Y-%m-%d"),
        "location": long["territory"],
        "type": "quantile",
        "quantile": long["quantile"],
        "value": long["value"].round(3),
    })
    if all_models:
        out.insert(0, "model", long["model"])
    key = ["forecast_date", "location", "target", "quantile"]
    out = out.sort_values(["model", *key] if all_models else key)
    assert set(out["quantile"].round(3)) == {round(q, 3) for q in QUANTILES}
    return out


def refresh_leaderboard(settings: Any, *, model: str = "ensemble", target: str = "inc_hosp",
                        frequency: str = "weekly", level: str = "region",
                        weeks: int = 8) -> dict:
    """Backtest the registry's models (``model``, or ``all`` but Prophet, and the baseline)
    over the last ``weeks`` with outcomes, score them, and write the leaderboard atomically
    (only while a job that publishes it still owns its run); the leaderboard."""
    from features.catalog import utcnow
    from models.backtest import backtest, monday_dates
    from models.preparation import default_opener
    from models.registry import get_registry
    from models.targets import resolve_target
    from service.usecases.forecasts import fit_cluster

    opener = default_opener(settings)
    tgt = resolve_target(target, frequency, opener)
    ds = opener(tgt.frequency, None)
    last = pd.Timestamp(ds["date"].values[-1])
    end = last - pd.Timedelta(days=7 * max(tgt.horizons))
    dates = monday_dates(end - pd.Timedelta(weeks=weeks), end)
    registry = get_registry(settings)
    names = [n for n in registry.names() if n != "prophet"] if model == "all" else [model]
    if "baseline" not in names:
        names.append("baseline")
    # On the cluster at VIGIE_DASK_ADDRESS when there is one; here, one fit at a time, if not.
    with (fit_cluster(settings) if settings.dask_address else nullcontext(None)) as client:
        frame = backtest(tgt, level, dates, names, opener, registry=registry, client=client)
    if "observed" not in frame:
        from models.preparation import observed_rows

        frame = observed_rows(frame, ds, tgt)
    board = leaderboard_from_backtest(frame)
    payload = {"target": target, "frequency": frequency, "level": level,
               "forecast_dates": [str(pd.Timestamp(d).date()) for d in dates],
               "vintage_id": ds.attrs.get("vintage_id", ""), "created_at": utcnow().isoformat(),
               "models": board}
    # Under the publication fence: a run this worker lost publishes nothing.
    atomic_write_json(settings.leaderboard_file, payload, indent=2, default=str, publish=True)
    return payload


def leaderboard_from_backtest(frame: pd.DataFrame) -> list[dict]:
    """Per-model mean WIS, relative WIS against the baseline, 50 % and 95 % coverage."""
    from models.calibration import QCOLS
    from models.scoring import score_table, summarise

    scored = score_table(frame, QCOLS)
    summary = summarise(scored, by=[])
    return json.loads(summary.reset_index().to_json(orient="records"))


def score_files(path: Path, baseline: Path | None = None) -> dict[str, pd.DataFrame] | None:
    """Score a Hub CSV (and a baseline's) against the observed outcomes of the current cube:
    ``scored`` (one row per forecast, with its level), ``by_horizon`` and the ``leaderboard``
    (WIS, relative WIS against the baseline when given, coverage, bias); None when no forecast
    has an observed outcome yet. Raises HubFileError for a file that is not a Hub CSV."""
    from models.calibration import QCOLS
    from models.preparation import default_opener, observed_rows
    from models.scoring import score_table, summarise
    from models.targets import cube_targets, from_hub, resolve_target

    frames = [_read_hub(path, default_model=path.stem)]
    if baseline:
        frames.append(_read_hub(baseline, default_model="baseline"))
    opener = default_opener()
    try:
        wide = from_hub(pd.concat(frames, ignore_index=True), derived=[
            t for t in cube_targets(opener) if t.derived])
    except KeyError as exc:  # a target label no target of the cube has
        raise HubFileError(f"{path}: {exc.args[0] if exc.args else exc}") from None
    parts = []
    for (name, frequency), rows in wide.groupby(["target_name", "frequency"]):
        target = resolve_target(name, frequency, opener)
        parts.append(observed_rows(rows, opener(frequency, None), target))
    scored = score_table(pd.concat(parts, ignore_index=True), QCOLS)
    if scored.empty:
        return None
    scored["level"] = scored["territory"].map(_level_of)
    base = "baseline" if "baseline" in set(scored["model"]) else None
    by_h = summarise(scored, ["target_name", "level", "horizon"], baseline=base)
    board = summarise(scored, ["target_name", "level"], baseline=base)
    board = board.sort_values(["target_name", "level", "wis"])
    return {"scored": scored, "by_horizon": by_h, "leaderboard": board}


class HubFileError(ValueError):
    """A Hub CSV that cannot be scored: the message names the file and, for a bad cell, its
    line, column, what was expected and what was found."""


def _read_hub(path: Path, default_model: str) -> pd.DataFrame:
    """A Hub CSV checked before scoring: readable UTF-8 CSV, the Hub columns, numbers in
    ``quantile`` and ``value``, dates in ``forecast_date`` and ``target_end_date``, known
    target labels (HubFileError naming the first problem)."""
    from models.targets import HUB_COLUMNS

    try:
        frame = pd.read_csv(path, dtype={"location": str}, encoding="utf-8")
    except FileNotFoundError:
        raise HubFileError(f"{path}: no such file") from None
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError,
            IsADirectoryError) as exc:
        raise HubFileError(f"{path}: not a UTF-8 CSV file ({str(exc)[:120]})") from None
    missing = [c for c in HUB_COLUMNS if c not in frame]
    if missing:
        raise HubFileError(f"{path}: missing column(s) {', '.join(missing)}; expected a Hub "
                           f"CSV: {', '.join(HUB_COLUMNS)}")
    number = ("a number", lambda c: pd.to_numeric(c, errors="coerce"))
    date = ("a date YYYY-MM-DD",
            lambda c: pd.to_datetime(c, format="%Y-%m-%d", errors="coerce"))
    checks = {"quantile": number, "value": number, "forecast_date": date,
              "target_end_date": date}
    for column, (expected, parse) in checks.items():
        parsed = parse(frame[column])
        bad = parsed.isna().to_numpy().nonzero()[0]
        if len(bad):
            raise HubFileError(f"{path}, line {bad[0] + 2}, column '{column}': expected "
                               f"{expected}, found {str(frame[column].iloc[bad[0]])[:40]!r}")
    if "model" not in frame:
        frame["model"] = default_model
    return frame


def _level_of(code: str) -> str:
    """The forecast level of a Hub location: FR, R84, a département (2–3 characters), an EPCI
    (9-digit SIREN) or a commune (5 characters, 2A/2B included)."""
    if code == "FR":
        return "national"
    if code.startswith("R"):
        return "region"
    return {9: "epci", 5: "commune"}.get(len(code), "department")
