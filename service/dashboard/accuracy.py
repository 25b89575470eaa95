"""The track record behind « Précision des prévisions »: published forecasts scored afterwards.

Every forecast run the service published stays in the forecast store (``models.store``), with
its forecast date (``as_of``), model and version. Once the weeks it forecast have been observed,
it can be scored against the current cube: that is how good Vigie's forecasts *have been*, on
the forecasts people actually saw — not a backtest rerun with hindsight. The scores are the
Forecast Hubs': weighted interval score (WIS, lower is better), WIS relative to the ``baseline``
model on the same forecasts (below 1: better than "same as last week"), and the share of
outcomes inside the 50 % and 90 % intervals (should be about 50 % and 90 %).

Scores are averaged over territories: the page shows no territory's values, so nothing here
needs small-count suppression. The backtest leaderboard written by the weekly ``backtest`` job
(``$VIGIE_HOME/models/leaderboard.json``) is shown beside it when it exists.

The retrospective track record (:func:`retrospective_record`) is the other half of the page, the
one a fresh install can show: backtests of every published target and level, forecasts made
again afterwards on past data, each with only the data known at its date, scored over a
development period (where the models' settings were chosen) and a held-out period. The rows
come from ``models.trackrecord.load_retrospective(settings)`` (``$VIGIE_HOME/models/
retrospective.json``, written by the pipeline); this module only groups and labels them.
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

TARGET_LABELS = {
    "inc_hosp": "Nouvelles hospitalisations",
    "inc_icu": "Nouvelles admissions en réanimation",
    "hosp": "Lits d'hospitalisation occupés",
    "icu": "Lits de réanimation occupés",
    "er_visits": "Passages aux urgences pour Covid-19",
    "unemployment": "Taux de chômage",
}
LEVEL_LABELS = {"national": "France entière", "region": "régions", "department": "départements"}
UNIT_LABELS = {"wk": "semaine", "day": "jour", "qtr": "trimestre"}
FREQUENCY_UNITS = {"weekly": "semaine", "daily": "jour", "quarterly": "trimestre"}
FREQUENCY_LABELS = {"weekly": "hebdomadaire", "daily": "quotidienne", "quarterly": "trimestrielle"}
PERIOD_LABELS = {"development": "développement", "held_out": "test (hors échantillon)"}
LEVEL_ORDER = {"national": 0, "region": 1, "department": 2}
TARGET_ORDER = {name: k for k, name in enumerate(TARGET_LABELS)}


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
    One entry per (target, frequency, level) with per-forecast-date scores per model and
    horizon (``by_date``) and their summary per model and horizon (``summary``).
    """
    from models.scoring import coverage, wis
    from models.targets import get_target

    kept: dict[tuple, Any] = {}
    for run in runs:  # newest first: the first run of a (kind, model, date) is the one served
        meta = run.metadata
        key = (meta.get("target"), meta.get("frequency"), meta.get("level"), meta.get("model"),
               meta.get("as_of"))
        if None in key or key in kept:
            continue
        kept[key] = run
    groups: dict[tuple, list] = {}
    for key, run in kept.items():
        groups.setdefault(key[:3], []).append(run)
    out = []
    for (name, frequency, level), group in sorted(groups.items()):
        try:
            target = get_target(name, frequency)
        except KeyError:
            continue
        frames = []
        for run in group:
            frame = run.read()
            frame = frame[frame["type"] == "quantile"].copy()
            frame["model"] = run.metadata["model"]
            frames.append(frame)
        rows = pd.concat(frames, ignore_index=True)
        rows["location"] = rows["location"].astype(str)
        rows["target_end_date"] = pd.to_datetime(rows["target_end_date"]).dt.strftime("%Y-%m-%d")
        try:
            observed = _observed(store, target, sorted(rows["location"].unique()),
                                 rows["target_end_date"].unique().tolist())
        except (KeyError, LookupError, ValueError):
            log.exception("no outcomes for %s/%s", name, frequency)
            continue
        wide = rows.pivot_table(index=["model", "forecast_date", "location", "target",
                                       "target_end_date"], columns="quantile", values="value")
        levels = np.array(sorted(wide.columns), dtype=float)
        wide = wide[sorted(wide.columns)].reset_index()
        keys = list(zip(wide["location"], wide["target_end_date"], strict=True))
        wide["observed"] = [observed.get(k, np.nan) for k in keys]
        wide = wide[wide["observed"].notna()]
        if wide.empty:
            out.append(_group_entry(target, level, [], [], sorted(rows["model"].unique())))
            continue
        q = wide[[c for c in wide.columns if isinstance(c, float)]].to_numpy(float)
        y = wide["observed"].to_numpy(float)
        wide = wide[["model", "forecast_date", "location", "target"]].copy()
        wide["horizon"] = wide["target"].str.split(" ").str[0].astype(int)
        wide["wis"] = wis(q, y, levels)
        wide["cov50"] = coverage(q, y, 0.5, levels)
        wide["cov90"] = coverage(q, y, 0.9, levels)
        base = wide[wide["model"] == "baseline"][["forecast_date", "location", "horizon", "wis"]]
        paired = wide.merge(base.rename(columns={"wis": "wis_base"}),
                            on=["forecast_date", "location", "horizon"], how="left")
        by_date = _aggregate(paired, ["model", "forecast_date", "horizon"])
        summary = _aggregate(paired, ["model", "horizon"])
        out.append(_group_entry(target, level, by_date, summary,
                                sorted(rows["model"].unique())))
    return out


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


def _group_entry(target, level: str, by_date: list, summary: list, models: list) -> dict:
    return {"target": target.name, "frequency": target.frequency, "level": level,
            "unit": UNIT_LABELS.get(target.unit, target.unit),
            "title": f"{TARGET_LABELS.get(target.name, target.name)} — "
                     f"{LEVEL_LABELS.get(level, level)}",
            "models": models, "by_date": by_date, "summary": summary,
            "forecast_dates": sorted({r["forecast_date"] for r in by_date})}


def track_record(settings, freshness: tuple) -> dict:
    """The page's data, memoised per data state (vintage and forecast store pointers)."""
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
    leaderboard = None
    path = settings.models_dir / "leaderboard.json"
    if path.exists():
        try:
            leaderboard = json.loads(path.read_text())
        except ValueError:
            log.warning("unreadable leaderboard %s", path)
    payload = {"groups": [g for g in groups if g["by_date"]],
               "pending": [g["title"] for g in groups if not g["by_date"]],
               "leaderboard": leaderboard}
    with _LOCK:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = payload
    return payload


def _load_retrospective(settings) -> list[dict] | None:
    """``models.trackrecord.load_retrospective`` (imported here: the page works, saying "not
    computed yet", on a checkout that does not have it)."""
    try:
        from models.trackrecord import load_retrospective
    except ImportError:
        log.info("models.trackrecord not available: no retrospective track record")
        return None
    return load_retrospective(settings)


def _number(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(out) else out


def retrospective_record(settings) -> dict:
    """The retrospective track record grouped for the page.

    Returns ``{"available": False, "reason"}`` before it is computed, else ``{"available":
    True, "computed_at", "groups"}`` with one group per (target, frequency): its French
    ``title``, horizon ``unit``, ``horizons``, ``periods`` (each period's French label and
    dates) and ``rows``, one per (level, period), holding per horizon the relative WIS, 50 % and
    90 % coverage and the number of forecasts scored.
    """
    try:
        rows = _load_retrospective(settings)
    except Exception:  # an unreadable file must not take the page down
        log.exception("retrospective track record unreadable")
        rows = None
    if not rows:
        try:
            from service.usecases.forecasts import track_record_state

            state = track_record_state(settings)
        except Exception:  # the job table unreadable: say the general case
            log.exception("track record state unreadable")
            state = "missing"
        if state in ("running", "queued"):
            return {"available": False,
                    "reason": "en cours de calcul : les prévisions des semaines passées sont "
                              "refaites sur les données de l'époque ; le tableau apparaîtra ici "
                              "dans quelques minutes"}
        return {"available": False,
                "reason": "pas encore calculé : le calcul rétrospectif des prévisions n'a pas "
                          "encore été fait sur cette installation (il est lancé de lui-même "
                          "après le calcul des prévisions et prend plusieurs minutes)"}
    groups: dict[tuple[str, str], dict] = {}
    for row in rows:
        target, frequency = str(row.get("target")), str(row.get("frequency"))
        level, period = str(row.get("level")), str(row.get("period"))
        try:
            horizon = int(row["horizon"])
        except (KeyError, TypeError, ValueError):
            continue
        group = groups.setdefault((target, frequency), {
            "target": target, "frequency": frequency,
            "title": f"{TARGET_LABELS.get(target, target)} "
                     f"({FREQUENCY_LABELS.get(frequency, frequency)})",
            "unit": FREQUENCY_UNITS.get(frequency, ""), "horizons": set(), "periods": {},
            "models": set(), "rows": {}})
        group["horizons"].add(horizon)
        group["models"].add(f"{row.get('model', '')} {row.get('model_version', '')}".strip())
        span = group["periods"].setdefault(period, {
            "period": period, "label": PERIOD_LABELS.get(period, period),
            "start": row.get("start"), "end": row.get("end")})
        span["start"] = min(filter(None, (span["start"], row.get("start"))), default=None)
        span["end"] = max(filter(None, (span["end"], row.get("end"))), default=None)
        line = group["rows"].setdefault((level, period), {
            "level": level, "level_label": LEVEL_LABELS.get(level, level).capitalize()
            if level != "national" else LEVEL_LABELS["national"],
            "period": period, "period_label": PERIOD_LABELS.get(period, period),
            "by_horizon": {}})
        line["by_horizon"][str(horizon)] = {
            "relative_wis": _number(row.get("relative_wis")),
            "coverage_50": _number(row.get("coverage_50")),
            "coverage_90": _number(row.get("coverage_90")),
            "n_forecasts": int(_number(row.get("n_forecasts")) or 0)}
    out = []
    for _, group in sorted(groups.items(),
                                     key=lambda kv: (TARGET_ORDER.get(kv[0][0], 99), kv[0])):
        lines = sorted(group["rows"].values(),
                       key=lambda r: (LEVEL_ORDER.get(r["level"], 9),
                                      r["period"] != "held_out", r["period"]))
        out.append({**group, "horizons": sorted(group["horizons"]),
                    "models": sorted(m for m in group["models"] if m),
                    "periods": sorted(group["periods"].values(),
                                      key=lambda p: p["period"] != "development"),
                    "rows": lines})
    computed = sorted(str(r["computed_at"]) for r in rows if r.get("computed_at"))
    return {"available": True, "computed_at": computed[-1] if computed else None,
            "groups": out}
