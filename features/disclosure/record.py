"""What a vintage hides from the public (:class:`PublicMasks`) and what the public knows once it
is served (:class:`PublicRecord`, kept beside the cube to protect the next vintage).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.storage.atomic import atomic_path

log = logging.getLogger(__name__)


@dataclass
class PublicMasks:
    """Per frequency and indicator, the (territory, date) mask of cells hidden from the public,
    in the order of the vintage's datasets; ``figures`` says how many and why."""

    threshold: float
    codes: dict[str, list[str]]
    dates: dict[str, pd.DatetimeIndex]
    hidden: dict[str, dict[str, np.ndarray]]
    figures: dict[str, dict] = field(default_factory=dict)
    #: What the public knows once this vintage is published (see :class:`PublicRecord`),
    #: and the file it was written to (None: not tried yet).
    record: PublicRecord | None = field(default=None, repr=False)
    record_file: Path | None = field(default=None, repr=False)

    def has(self, frequency: str, name: str) -> bool:
        return name in self.hidden.get(frequency, {})

    def select(self, frequency: str, name: str, codes: Iterable[str], dates: Iterable
               ) -> np.ndarray | None:
        """The mask of ``codes`` × ``dates`` (any subset of the vintage's), or None when the
        indicator is never suppressed. Codes or dates the vintage lacks are not hidden."""
        mask = self.hidden.get(frequency, {}).get(name)
        if mask is None:
            return None
        return _realigned(mask, self.codes[frequency], self.dates[frequency], list(codes),
                          pd.DatetimeIndex(list(dates)), False, bool)

    def cell(self, frequency: str, name: str, code: str, date) -> bool:
        sel = self.select(frequency, name, [code], [pd.Timestamp(date)])
        return bool(sel is not None and sel[0, 0])


@dataclass
class PublicRecord:
    """What the public knows of the counts after a vintage was served, to protect the next
    vintage against the combination of both (an attacker keeps yesterday's answers, or reads
    them through ``as_of``). Per frequency and protected count, on the vintage's codes × dates:

    * ``known``: the last value the public was shown for the cell, in this vintage or an
      earlier one (NaN: never shown);
    * ``hidden``: the value of the cells this vintage hides (NaN elsewhere), which the next
      vintage keeps hidden while their value is unchanged (showing one could give back,
      through this vintage's equations, a count it hid).

    Written once per vintage (:meth:`save`, ``<cube>/disclosure/<id>-t<threshold>.npz``)."""

    codes: dict[str, list[str]]
    dates: dict[str, pd.DatetimeIndex]
    known: dict[str, dict[str, np.ndarray]]
    hidden: dict[str, dict[str, np.ndarray]]

    def aligned(self, kind: str, frequency: str, name: str, codes: list[str],
                dates: pd.DatetimeIndex) -> np.ndarray:
        """``known`` or ``hidden`` of ``name`` on ``codes`` × ``dates`` (NaN where absent)."""
        arr = getattr(self, kind).get(frequency, {}).get(name)
        if arr is None:
            return np.full((len(codes), len(dates)), np.nan)
        return _realigned(arr, self.codes[frequency], self.dates[frequency], codes, dates,
                          np.nan, float)

    def save(self, path: Path) -> None:
        """Written atomically (a temporary file renamed into place), compressed."""
        arrays: dict[str, np.ndarray] = {}
        for f in self.codes:
            arrays[f"codes|{f}"] = np.array(self.codes[f], dtype=str)
            arrays[f"dates|{f}"] = self.dates[f].values.astype("datetime64[ns]").astype(np.int64)
        for kind in ("known", "hidden"):
            for f, by_name in getattr(self, kind).items():
                for name, arr in by_name.items():
                    arrays[f"{kind}|{f}|{name}"] = arr
        with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> PublicRecord | None:
        """The record at ``path``, None when there is none or it cannot be read."""
        try:
            with np.load(path, allow_pickle=False) as z:
                files = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("disclosure: unreadable record %s (%s): recomputed", path, exc)
            return None
        codes, dates = {}, {}
        known: dict[str, dict[str, np.ndarray]] = {}
        hidden: dict[str, dict[str, np.ndarray]] = {}
        for key, arr in files.items():
            parts = key.split("|")
            if parts[0] == "codes":
                codes[parts[1]] = [str(c) for c in arr]
            elif parts[0] == "dates":
                dates[parts[1]] = pd.DatetimeIndex(arr.astype("datetime64[ns]"))
            elif parts[0] in ("known", "hidden"):
                (known if parts[0] == "known" else hidden).setdefault(parts[1], {})[
                    parts[2]] = arr
        return cls(codes, dates, known, hidden)


def _realigned(array: np.ndarray, codes: list[str], dates: pd.DatetimeIndex,
               on_codes: list[str], on_dates: pd.DatetimeIndex, fill, dtype: type
               ) -> np.ndarray:
    """``array`` (``codes`` × ``dates``) on ``on_codes`` × ``on_dates`` as ``dtype``, ``fill``
    where it has no cell (a code or date it lacks)."""
    rows = pd.Index(codes).get_indexer(on_codes)
    cols = dates.get_indexer(on_dates)
    out = np.full((len(on_codes), len(cols)), fill, dtype=dtype)
    ok_r, ok_c = rows >= 0, cols >= 0
    out[np.ix_(ok_r, ok_c)] = array[np.ix_(rows[ok_r], cols[ok_c])]
    return out
