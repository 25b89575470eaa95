"""How good Vigie's forecasts have been: what the « Précision des prévisions » page shows.

* Published forecasts scored afterwards (:func:`score_runs`): every forecast run the service
  published stays in the forecast store (``models.store``) with its forecast date, model and
  version; once the days or weeks it forecast are observed, it is scored against the current
  cube with the Forecast Hubs' scores (:func:`models.targets.from_hub`,
  :func:`models.scoring.score_table`): weighted interval score (WIS, lower is better), WIS
  relative to the ``baseline`` model on the same forecasts (below 1: better than "same as last
  week"), and the share of outcomes inside the 50 % and 90 % intervals. Scores are averaged
  over territories: no territory's values, so nothing here needs small-count suppression.
* The backtest leaderboard the weekly ``backtest`` job writes
  (``$VIGIE_HOME/models/leaderboard.json``), when it exists.
* The retrospective track record (:func:`retrospective`): the rows of
  ``models.trackrecord.load_retrospective`` (backtests of every published target and level),
  or, before they exist, whether they are being computed.

No Flask: settings and the data state are parameters; the French labels and the grouping
for the page are the dashboard's (:mod:`service.dashboard.accuracy`).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

_CACHE: dict[tuple, dict] = {}
_LOCK = threading.Lock()


def accuracy(settings: Any, freshness: tuple) -> dict:
    """Everything the accuracy page shows: ``published`` (:func:`published_scores`) and
    ``retrospective`` (:func:`retrospective`)."""
    return {"published": published_scores(settings, freshness),
            "retrospective": retrospective(settings)}


# ---------------------------------------------------------------------------- published runs
def _observed(store, target, locations: list[str], dates: list[str]) -> pd.Series:
    """Observed values (location, date) of ``target`` in the latest cube vintage."""
    ds = store.open(target.frequency)
    if target.variable not in ds:
        return pd.Series(dtype=float)
    codes = [c for c in locations if c in set(ds["territory"].values.tolist())]
    wanted = pd.DatetimeIndex(sorted(set(dates)))
    var = ds[target.variable].sel(territory=codes)
    var = var.sel(date=var["date"].values[np.isin(var["date"].values, wanted.values)])
    series = var.to_series().dropna()
    series.index = series.index.set_levels(
        [series.index.levels[0].astype(str),
         pd.DatetimeIndex(series.index.levels[1]).strftime("%Y-%m-%d")])
    return series


def _served_runs(runs: list) -> dict[tuple, list]:
    """The runs people saw, grouped by (target, frequency, level): of runs of the same
    (target, frequency, level, model, forecast date), the newest (``runs`` newest first)."""
    kept: dict[tuple, Any] = {}
    for run in runs:
        meta = run.metadata
        key = (meta.get("target"), meta.get("frequency"), meta.get("level"), meta.get("model"),
               meta.get("as_of"))
        if None in key or key in kept:
            continue
        kept[key] = run
    groups: dict[tuple, list] = {}
    for key, run in kept.items():
        groups.setdefault(key[:3], []).append(run)
    return groups


def _hub_rows(group: list) -> pd.DataFrame:
    """The quantile rows of a group's runs, each with its model."""
    frames = []
    for run in group:
        frame = run.read()
        frame = frame[frame["type"] == "quantile"].copy()
        frame["model"] = run.metadata["model"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _wide(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per forecast, one ``q…`` column per quantile (:func:`models.targets.from_hub`),
    dates as ``YYYY-MM-DD``."""
    from models.targets import from_hub

    wide = from_hub(rows)
    wide["forecast_date"] = wide["forecast_date"].dt.strftime("%Y-%m-%d")
    wide["target_end_date"] = wide["target_end_date"].dt.strftime("%Y-%m-%d")
    return wide


def _scored(wide: pd.DataFrame, observed: pd.Series) -> pd.DataFrame:
    """The forecasts whose outcome is observed, with their scores (``wis``, ``cov50``,
    ``cov90``…: :func:`models.scoring.score_table`)."""
    from models.scoring import score_table

    keys = list(zip(wide["territory"], wide["target_end_date"], strict=True))
    wide = wide.assign(observed=[observed.get(k, np.nan) for k in keys])
    if not wide["observed"].notna().any():
        return wide.iloc[0:0]
    columns = sorted((c for c in wide.columns if c.startswith("q")), key=lambda c: float(c[1:]))
    return score_table(wide, columns)


def _aggregate(paired: pd.DataFrame, by: list[str]) -> list[dict]:
    """Mean WIS and coverage, and the ratio of WIS sums to the baseline's on shared forecasts."""
    records = []
    for key, rows in paired.groupby(by, sort=True):
        both = rows[rows["wis_base"].notna()]
        base_sum = float(both["wis_base"].sum())
        rel = float(both["wis"].sum()) / base_sum if len(both) and base_sum > 0 else None
        records.append({**dict(zip(by, key, strict=True)),
                        "wis": round(float(rows["wis"].mean()), 4),
                        "rel_wis": None if rel is None else round(rel, 4),
                        "cov50": round(float(rows["cov50"].mean()), 4),
                        "cov90": round(float(rows["cov90"].mean()), 4),
                        "n": len(rows)})
    for record in records:
        for k, v in record.items():
            if isinstance(v, np.generic):
                record[k] = v.item()
    return records


def _group(target, level: str, scored: pd.DataFrame, models: list) -> dict:
    """A group's scores per forecast date and in all, per model and horizon."""
    if scored.empty:
        by_date: list[dict] = []
        summary: list[dict] = []
    else:
        scored = scored[["model", "forecast_date", "territory", "horizon", "wis", "cov50",
                         "cov90"]]
        base = scored[scored["model"] == "baseline"][["forecast_date", "territory", "horizon",
                                                      "wis"]]
        paired = scored.merge(base.rename(columns={"wis": "wis_base"}),
                              on=["forecast_date", "territory", "horizon"], how="left")
        by_date = _aggregate(paired, ["model", "forecast_date", "horizon"])
        summary = _aggregate(paired, ["model", "horizon"])
    return {"target": target.name, "frequency": target.frequency, "level": level,
            "unit": target.unit, "models": models, "by_date": by_date, "summary": summary,
            "forecast_dates": sorted({r["forecast_date"] for r in by_date})}


def score_runs(runs: list, store) -> list[dict]:
    """Score stored forecast runs against the current cube, grouped by target × level.

    Parameters
    ----------
    runs:
        :class:`models.store.ForecastRun`, newest first (``ForecastStore.list_runs()``).
    store:
        A :class:`features.store.CubeStore` (the outcomes are read from its latest vintage).

    Returns
    -------
    One entry per (target, frequency, level): ``target``, ``frequency``, ``level``, horizon
    ``unit`` (``wk``, ``day``…), ``models``, per-forecast-date scores per model and horizon
    (``by_date``), their summary per model and horizon (``summary``) and ``forecast_dates``;
    ``by_date`` is empty while no outcome is observed yet.
    """
    from models.targets import resolve_target

    out = []
    for (name, frequency, level), group in sorted(_served_runs(runs).items()):
        try:  # built-in, or derived from the cube's indicator metadata (a city's indicator)
            target = resolve_target(name, frequency, lambda f, _as_of: store.open(f))
        except (KeyError, LookupError):
            continue
        rows = _hub_rows(group)
        wide = _wide(rows)
        try:
            observed = _observed(store, target, sorted(wide["territory"].unique()),
                                 wide["target_end_date"].unique().tolist())
        except (KeyError, LookupError, ValueError):
            log.exception("no outcomes for %s/%s", name, frequency)
            continue
        out.append(_group(target, level, _scored(wide, observed),
                          sorted(rows["model"].unique())))
    return out


def _leaderboard(settings: Any) -> Any:
    path = settings.leaderboard_file
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        log.warning("unreadable leaderboard %s", path)
        return None


def published_scores(settings: Any, freshness: tuple) -> dict:
    """``groups`` (:func:`score_runs` of every stored run) and the backtest ``leaderboard``
    (None without one), memoised per data state ``freshness`` (vintage and forecast store
    pointers)."""
    key = (str(settings.home), freshness)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    from features.store import CubeStore
    from models.store import ForecastStore

    try:
        groups = score_runs(ForecastStore.from_settings(settings).list_runs(),
                            CubeStore(settings))
    except LookupError:  # no vintage yet
        groups = []
    payload = {"groups": groups, "leaderboard": _leaderboard(settings)}
    with _LOCK:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = payload
    return payload


# ---------------------------------------------------------------------------- retrospective
def _load_retrospective(settings: Any) -> list[dict] | None:
    """``models.trackrecord.load_retrospective`` (imported here: the page works, saying "not
    computed yet", on a checkout that does not have it)."""
    try:
        from models.trackrecord import load_retrospective
    except ImportError:
        log.info("models.trackrecord not available: no retrospective track record")
        return None
    return load_retrospective(settings)


def _pending(settings: Any) -> list[dict]:
    """The targets the track record does not score yet (it is written target by target)."""
    from models.trackrecord import pending_targets

    try:
        return pending_targets(settings)
    except Exception:  # unreadable: the rows were read, say nothing is pending
        log.exception("track record pending targets unreadable")
        return []


def retrospective(settings: Any) -> dict:
    """``{"rows": [...], "pending": [...]}``: the retrospective track record's rows and the
    (target, frequency) pairs still being computed (the file is written target by target);
    before they exist (or when
    the file is unreadable), ``{"rows": None, "state": ...}`` with the state of their
    computation (:func:`service.usecases.forecasts.track_record_state`: ``running``,
    ``queued`` or ``missing``)."""
    try:
        rows = _load_retrospective(settings)
    except Exception:  # an unreadable file must not take the page down
        log.exception("retrospective track record unreadable")
        rows = None
    if rows:
        return {"rows": rows, "pending": _pending(settings)}
    try:
        from service.usecases.forecasts import track_record_state

        state = track_record_state(settings)
    except Exception:  # the job table unreadable: say the general case
        log.exception("track record state unreadable")
        state = "missing"
    return {"rows": None, "state": state}
