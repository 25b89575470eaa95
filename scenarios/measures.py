"""The table of dated French measures and its translation into daily covariates.

The table (``scenarios/measures_fr.csv``, documented in ``scenarios/MEASURES.md``) lists one
measure per row with its type, first and last day in force, territories and curfew hour. This
module turns it into a covariate array ``(territory, date, covariate)`` used to learn how
measures moved R(t) and to project scenarios.

Restriction levels are *cumulative* indicators: a lockdown day also counts as a curfew day,
so each coefficient is the extra effect of one step up the ladder
curfew 20-21 h → curfew 18-19 h → light (regional, schools open) lockdown → lockdown.
Coding them this way keeps a stronger measure from being estimated as weaker than a lighter
one when the data only identify their sum (e.g. March 2020 went straight to lockdown).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

MEASURES_PATH = Path(__file__).resolve().parent / "measures_fr.csv"

#: Restriction ladder (cumulative indicators), then independent indicators.
LEVELS: tuple[str, ...] = ("curfew_late", "curfew_early", "lockdown_light", "lockdown")
COVARIATES: tuple[str, ...] = (*LEVELS, "school_closure", "mask_mandate")
REQUIRED_COLUMNS = ("measure_id", "type", "start", "end", "territories", "hour", "modelled")


def load_measures(path: str | Path | IO[str] | None = None) -> pd.DataFrame:
    """Read and check the measures table.

    Parameters
    ----------
    path:
        CSV file (or open text stream); default ``scenarios/measures_fr.csv``.

    Returns
    -------
    pandas.DataFrame
        One row per measure; ``start``/``end`` as Timestamps (``end`` NaT = open-ended, inclusive
        last day otherwise), ``territories`` as a list of codes or ``["all"]`` / ``["metro"]``.

    Raises
    ------
    ValueError
        Missing columns (named, with the columns found) or an end before its start.
    """
    if path is None or isinstance(path, str | Path):
        path = Path(path) if path else MEASURES_PATH
    df = pd.read_csv(path, dtype=str, keep_default_na=False)  # a file-like object works too
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    df["start"] = pd.to_datetime(df["start"])
    df["end"] = pd.to_datetime(df["end"].replace("", None))
    bad = df[df["end"].notna() & (df["end"] < df["start"])]
    if len(bad):
        raise ValueError(f"{path}: end before start for {list(bad['measure_id'])}")
    df["territories"] = df["territories"].str.split()
    df["hour"] = pd.to_numeric(df["hour"].replace("", None))
    df["modelled"] = df["modelled"].str.lower().isin(["yes", "true", "1"])
    return df


def measure_covariate(mtype: str, hour: float | None = None) -> str | None:
    """Covariate a measure type switches on (None when the type is not modelled).

    Curfews at 20:00 or 21:00 are ``curfew_late``, at 18:00/19:00 ``curfew_early``; later
    curfews (23:00) are too light to share a class and are not modelled.
    """
    if mtype == "curfew":
        if hour is None or np.isnan(hour) or hour <= 19:
            return "curfew_early"
        return "curfew_late" if hour <= 21 else None
    if mtype in ("lockdown", "lockdown_light", "school_closure", "mask_mandate"):
        return mtype
    return None


def _targets(codes: list[str], departments: Sequence[str]) -> list[str]:
    if codes == ["all"]:
        return list(departments)
    if codes == ["metro"]:
        return [d for d in departments if not d.startswith("97")]
    return [c for c in codes if c in set(departments)]


def department_covariates(
    measures: pd.DataFrame,
    departments: Sequence[str],
    dates: pd.DatetimeIndex,
    as_of: pd.Timestamp | None = None,
) -> np.ndarray:
    """Daily covariates of each département from the measures table.

    Parameters
    ----------
    measures:
        Output of :func:`load_measures`.
    departments:
        Département codes (length T).
    dates:
        Daily dates (length D).
    as_of:
        When given, only what was known before it is used: measures starting on or after
        ``as_of`` are ignored and measures in force the day before ``as_of`` are carried forward
        unchanged (the status quo), whatever their recorded end.

    Returns
    -------
    np.ndarray
        Shape (T, D, len(COVARIATES)), values in [0, 1].
    """
    idx = {d: i for i, d in enumerate(departments)}
    level = np.zeros((len(departments), len(dates)), dtype=int)
    other = np.zeros((len(departments), len(dates), 2))
    for row in measures.itertuples():
        if not row.modelled:
            continue
        cov = measure_covariate(row.type, row.hour)
        if cov is None:
            continue
        start = row.start
        end = row.end if pd.notna(row.end) else dates[-1]
        if as_of is not None:
            if start >= as_of:
                continue
            if end >= as_of - pd.Timedelta(days=1):
                end = dates[-1]  # in force at as_of: carried forward
        on = (dates >= start) & (dates <= end)
        rows = [idx[c] for c in _targets(row.territories, departments)]
        if not rows:
            continue
        if cov in LEVELS:
            lv = LEVELS.index(cov) + 1
            sub = level[np.ix_(rows, np.where(on)[0])]
            level[np.ix_(rows, np.where(on)[0])] = np.maximum(sub, lv)
        else:
            k = 0 if cov == "school_closure" else 1
            other[np.ix_(rows, np.where(on)[0], [k])] = 1.0
    ladder = np.stack([(level >= i + 1).astype(float) for i in range(len(LEVELS))], axis=-1)
    return np.concatenate([ladder, other], axis=-1)


def territory_covariates(
    dep_cov: np.ndarray,
    departments: Sequence[str],
    territories: Sequence[str],
    levels: Sequence[str],
    parents: dict[str, str],
    population: dict[str, float],
) -> np.ndarray:
    """Covariates of any territory: a département's own, or the population-weighted mean of
    its départements for a région or France (share of the population under each measure).

    Returns
    -------
    np.ndarray
        Shape (len(territories), D, C).
    """
    didx = {d: i for i, d in enumerate(departments)}
    out = np.zeros((len(territories), dep_cov.shape[1], dep_cov.shape[2]))
    for j, (code, level) in enumerate(zip(territories, levels, strict=True)):
        if code in didx:
            out[j] = dep_cov[didx[code]]
            continue
        if level == "country":
            members = list(departments)
        else:
            members = [d for d in departments if parents.get(d) == code]
        if not members:
            continue
        w = np.nan_to_num(np.array([population.get(d, 0.0) for d in members], dtype=float))
        w = w / w.sum() if w.sum() > 0 else np.full(len(members), 1 / len(members))
        out[j] = np.tensordot(w, dep_cov[[didx[d] for d in members]], axes=1)
    return out
