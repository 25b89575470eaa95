"""Leading signals as model features, with a fallback when a signal cannot be trusted.

Real sources start late, stop and change scheme (SI-DEP by région ends in 2022 while the
national file goes on; variant screening changed its mutations in November 2021). A model
reading them must never crash nor be silently dragged by a stale value: forward-filling a
stopped series turns its growth into a flat zero that the model reads as "the epidemic
stopped growing".

:func:`resolve_signals` checks each requested signal at the forecast origin (the last date of
the target history) and returns, for the signals it keeps, one (territory, date) series per
territory:

- a territory takes its own series if it is *live* (a value within ``max_age`` periods of the
  origin), else its nearest live ancestor's (département → région → France), for the whole
  history, so that training and prediction read the same thing;
- a signal is **dropped** for the fit (the model falls back to its features without it) when
  some territory has no live series at all: *not started* (no value before the origin, or
  fewer than ``min_history`` periods of it) or *stopped* (last value older than ``max_age``);
- a signal of a **family** (variables sharing a prefix, e.g. ``variant_share_``) is dropped
  when the family's scheme changed within the history: a member started after the others, or
  stopped while the others go on (the mutations screened changed, so the shares before and
  after do not measure the same thing);
- a signal whose latest values lag the origin by ``k <= max_age`` periods (publication delay)
  is used lagged by ``k`` periods in training and prediction alike, unless an ancestor's
  series is current (a territory late by one week reads its région's or France's instead).

Every fallback is logged (warning) and returned as ``{signal: reason}`` for the forecast's
metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

log = logging.getLogger(__name__)

#: Prefixes of signal families whose members are published together under one scheme.
FAMILIES: tuple[str, ...] = ("variant_share_",)


@dataclass
class ResolvedSignals:
    """Signals kept for a fit and why others were not.

    Attributes
    ----------
    values:
        Signal name → (territory, date) float array, forward-filled (NaN before it starts).
    fallbacks:
        Signal name → reason it was dropped or partly replaced by an ancestor's series.
    dropped:
        Names of the signals dropped for this fit.
    """

    values: dict[str, np.ndarray] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def parent_positions(y: xr.DataArray) -> np.ndarray:
    """Position in ``y`` of each territory's parent; -1 where it has none among them."""
    if "territory_parent" not in y.coords:
        return np.full(y.sizes["territory"], -1)
    codes = {str(t): i for i, t in enumerate(y["territory"].values)}
    return np.array([codes.get(str(p), -1) for p in y["territory_parent"].values])


def _matrix(da: xr.DataArray, y: xr.DataArray) -> np.ndarray:
    """A cube variable as (territory, date) floats on ``y``'s territories (national: tiled)."""
    n_t = y.sizes["territory"]
    if "territory" not in da.dims:
        return np.tile(np.asarray(da.values, dtype=float), (n_t, 1))
    da = da.sel(territory=y["territory"].values).transpose("territory", ...)
    return np.asarray(da.values, dtype=float).copy()


def _day(dates: pd.DatetimeIndex, i: int) -> str:
    return str(dates[i].date())


def _scheme_change(family: str, X: xr.Dataset, dates: pd.DatetimeIndex,
                   max_age: int) -> str | None:
    """Why the family's scheme changed within the history (None: it did not)."""
    spans = {}
    for name in X.data_vars:
        if not str(name).startswith(family):
            continue
        da = X[name]
        seen = da.notnull().any("territory").values if "territory" in da.dims else (
            da.notnull().values)
        idx = np.flatnonzero(seen)
        if idx.size:
            spans[str(name)] = (idx[0], idx[-1])
    if len(spans) < 2:
        return None
    first = min(s for s, _ in spans.values())
    last = len(dates) - 1
    started = [f"{n} started {_day(dates, s)}" for n, (s, _) in spans.items() if s > first]
    live = [n for n, (_, e) in spans.items() if last - e <= max_age]
    stopped = [f"{n} stopped {_day(dates, e)}" for n, (_, e) in spans.items()
               if live and last - e > max_age]
    if started or stopped:
        return "scheme changed (" + ", ".join(started + stopped) + ")"
    return None


def _nearest(i: int, pos: np.ndarray, ok: np.ndarray) -> int:
    """``i`` or its nearest ancestor where ``ok``; -1 if none."""
    while i >= 0 and not ok[i]:
        i = pos[i]
    return i


@dataclass
class _Sources:
    """Where each territory reads one signal from (see :func:`_find_sources`)."""

    values: np.ndarray  # (territory, date) of every territory's own series
    seen: np.ndarray  # where ``values`` are observed
    has_any: np.ndarray  # territory has a value before the origin
    last_seen: np.ndarray  # position of its last value (-1: none)
    live: np.ndarray  # its last value is at most ``max_age`` periods old
    source: np.ndarray  # position of the territory whose series it uses (-1: none)


def _family_reason(name: str, X: xr.Dataset | None, y: xr.DataArray, families: tuple[str, ...],
                   changes: dict[str, str | None], max_age: int) -> str | None:
    """Why a signal is dropped before looking at its values: absent, or its family's scheme
    changed (``changes`` caches each family's answer)."""
    if X is None or name not in X:
        return "not started: absent from the cube"
    family = next((f for f in families if name.startswith(f)), None)
    if family is None:
        return None
    if family not in changes:
        changes[family] = _scheme_change(family, X.sel(date=y["date"]),
                                         pd.DatetimeIndex(y["date"].values), max_age)
    return changes[family]


def _find_sources(v: np.ndarray, pos: np.ndarray, max_age: int) -> _Sources:
    """Each territory's nearest ancestor (self first) current at the origin; else its nearest
    live one, then used lagged: one late région must not lag the signal of every territory."""
    n_t, n_d = v.shape
    seen = np.isfinite(v)
    has_any = seen.any(axis=1)
    last_seen = np.where(has_any, n_d - 1 - np.argmax(seen[:, ::-1], axis=1), -1)
    age = (n_d - 1) - last_seen
    live = has_any & (age <= max_age)
    source = np.array([_nearest(i, pos, has_any & (age == 0)) for i in range(n_t)])
    late = source < 0
    source[late] = [_nearest(i, pos, live) for i in np.flatnonzero(late)]
    return _Sources(v, seen, has_any, last_seen, live, source)


def _source_reason(src: _Sources, dates: pd.DatetimeIndex, codes: list[str],
                   min_history: int) -> str | None:
    """Why a signal is dropped given its sources: not started, stopped somewhere without a
    live ancestor, or too little history (None: usable)."""
    last = len(dates) - 1
    missing = np.flatnonzero(src.source < 0)
    if not src.has_any.any():
        return "not started: no value before the origin"
    if missing.size:
        newest = int(src.last_seen.max())
        if newest < 0 or not src.live.any():
            return (f"stopped: last value {_day(dates, newest)}, "
                    f"{last - newest} periods before the origin {_day(dates, last)}")
        example = ", ".join(codes[i] for i in missing[:3])
        what = "stopped" if src.has_any[missing].any() else "not published"
        return (f"{what} for {missing.size} territories without a live ancestor "
                f"({example}) at the origin {_day(dates, last)}")
    history = src.seen[src.source].sum(axis=1)
    if history.min() < min_history:
        return (f"not started: {int(history.min())} periods of history before "
                f"the origin (needs {min_history})")
    return None


def _sourced_values(name: str, src: _Sources, codes: list[str], out: ResolvedSignals,
                    model: str) -> np.ndarray:
    """The series each territory uses, lagged by the latest source's delay, forward-filled;
    a substitution by an ancestor's series is noted in ``out.fallbacks``."""
    n_t, n_d = src.values.shape
    substituted = np.flatnonzero((src.source != np.arange(n_t)) & src.has_any)
    if substituted.size:
        example = ", ".join(f"{codes[i]}→{codes[src.source[i]]}" for i in substituted[:3])
        note = (f"{substituted.size} territories stopped or late, their ancestor's series "
                f"used ({example})")
        out.fallbacks[name] = note
        log.warning("%s: leading signal %s: %s", model, name, note)
    values = src.values[src.source]
    lag = int(((n_d - 1) - src.last_seen[src.source]).max())
    if lag > 0:
        # Published late: use it lagged by the same delay in training and prediction.
        shifted = np.full_like(values, np.nan)
        shifted[:, lag:] = values[:, :-lag]
        values = shifted
        log.info("%s: leading signal %s lags the origin by %d period(s), used lagged",
                 model, name, lag)
    return pd.DataFrame(values.T).ffill().to_numpy().T


def resolve_signals(
    names: tuple[str, ...] | list[str],
    X: xr.Dataset | None,
    y: xr.DataArray,
    *,
    max_age: int = 1,
    min_history: int = 8,
    families: tuple[str, ...] = FAMILIES,
    model: str = "gbm",
) -> ResolvedSignals:
    """Check each signal at the origin (last date of ``y``); keep, lag, substitute or drop it.

    Parameters
    ----------
    names:
        Cube variables to use (absent ones are dropped as not started).
    X:
        Regressors on ``y``'s date axis (dates after the origin are ignored).
    y:
        Target history (territory, date) with ``territory_parent``.
    max_age:
        Periods a signal's last value may lag the origin (publication delay) and still be used.
    min_history:
        Periods of signal history needed before the origin (fewer: too little to learn from).
    families:
        Prefixes of variable families checked for a scheme change.
    model:
        Name used in log messages.
    """
    out = ResolvedSignals()
    dates = pd.DatetimeIndex(y["date"].values)
    pos = parent_positions(y)
    codes = [str(t) for t in y["territory"].values]
    changes: dict[str, str | None] = {}
    for name in names:
        if name == y.name:
            continue  # the target itself (e.g. forecasting emergency visits): already a feature
        reason = _family_reason(name, X, y, families, changes, max_age)
        if reason is None:
            src = _find_sources(_matrix(X[name].sel(date=y["date"]), y), pos, max_age)
            reason = _source_reason(src, dates, codes, min_history)
        if reason is not None:
            out.dropped.append(name)
            out.fallbacks[name] = reason
            log.warning("%s: leading signal %s dropped for this fit, forecast without it (%s)",
                        model, name, reason)
            continue
        out.values[name] = _sourced_values(name, src, codes, out, model)
    return out
