"""The checks a source applies to the columns of a frame read by
:func:`features.sources.reading.read_table`: numbers, dates, 7-day windows, territory codes,
duplicates, control characters and formula starts. Each reports every bad cell (capped per
check) with its line and the column as the publisher spelled it, into a
:class:`~features.sources.reading.Collector`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from features.sources.reading import MAX_PROBLEMS_PER_CHECK, Collector, detect_separator
from features.territories import Territories


def line_numbers(index: Iterable[int]) -> np.ndarray:
    return np.asarray(list(index), dtype=int) + 2


def original_name(frame: pd.DataFrame, column: str) -> str:
    """The header of ``column`` as written in the file."""
    return frame.attrs.get("original_columns", {}).get(column, column)


def _report(check: Collector, mask: pd.Series, values: pd.Series, column: str, expected: str,
            found: Callable[[str], str] = lambda v: repr(v)) -> None:
    bad = mask[mask].index
    for idx in bad[:MAX_PROBLEMS_PER_CHECK]:
        check.add(expected, found(values.at[idx]), line=int(idx) + 2, column=column)
    if len(bad) > MAX_PROBLEMS_PER_CHECK:
        check.add(expected, f"{len(bad) - MAX_PROBLEMS_PER_CHECK} more such values",
                  column=column)


def report_rows(check: Collector, frame: pd.DataFrame, mask: pd.Series, column: str,
                expected: str, found: Callable[[object], str] = repr) -> None:
    """Report the rows of ``frame`` where ``mask`` holds, showing the cell of ``column``."""

    def shown(value: object) -> str:
        empty = value is None or (isinstance(value, float) and np.isnan(value)) or value == ""
        return "an empty cell" if empty else found(value)

    _report(check, mask, frame[column], original_name(frame, column), expected, shown)


#: Characters no text cell of a publisher's file may hold: the C0 controls (tab, CR and LF
#: included: a line break inside a quoted cell splits a record on screen and in spreadsheets),
#: DEL and the C1 controls. NUL also truncates the cell silently in pandas' reader.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
#: First characters that make a spreadsheet read a text cell as a formula (OWASP's list; tab
#: and CR are control characters, refused above).
FORMULA_STARTS = ("=", "+", "-", "@")


def check_control_characters(path: Path, check: Collector, columns: Iterable[str]) -> None:
    """Report every cell of ``columns`` (header names) holding a control character.

    The file is read again with the ``csv`` module, which keeps NUL bytes and tells on which
    line of the file (as an editor shows it) each record starts, even when a quoted cell spans
    several lines. Each problem names the line, the column, the character and its position.
    """
    text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    if '"' not in text and not CONTROL_CHARACTERS.search(text.replace("\r\n", "\n")
                                                          .replace("\n", "")):
        return  # only line ends, and no quoted cell that could hold one: nothing to report
    wanted = {c.lower() for c in columns}
    header_line = text.split("\n", 1)[0].rstrip("\r")
    sep = detect_separator(header_line, {c: (c,) for c in wanted})
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    header = next(reader, [])
    positions = {i: name.strip() for i, name in enumerate(header)
                 if name.strip().lower() in wanted}
    counts: dict[str, int] = {}
    start = reader.line_num + 1
    for record in reader:
        for i, name in positions.items():
            cell = record[i] if i < len(record) else ""
            hit = CONTROL_CHARACTERS.search(cell)
            if hit is None:
                continue
            counts[name] = counts.get(name, 0) + 1
            if counts[name] <= MAX_PROBLEMS_PER_CHECK:
                char = hit.group()
                check.add("text without control characters (tab, line break, U+0000-U+001F, "
                          "U+007F-U+009F)",
                          f"{cell[:60]!r}: U+{ord(char):04X} at character {hit.start() + 1}",
                          line=start, column=name)
        start = reader.line_num + 1
    for name, n in counts.items():
        if n > MAX_PROBLEMS_PER_CHECK:
            check.add("text without control characters",
                      f"{n - MAX_PROBLEMS_PER_CHECK} more such values", column=name)


def check_formula_starts(frame: pd.DataFrame, columns: Iterable[str], check: Collector) -> None:
    """Report text cells starting (after spaces) with ``=``, ``+``, ``-`` or ``@``: a
    spreadsheet opening an export would run them as formulas (CSV injection)."""
    for column in columns:
        if column not in frame.columns:
            continue
        text = frame[column].fillna("").astype(str).str.lstrip()
        report_rows(check, frame, text.str[:1].isin(FORMULA_STARTS), column,
                    "text not starting with =, +, - or @ (a spreadsheet would run it as a "
                    "formula)")


def window_end(frame: pd.DataFrame, column: str, check: Collector, today: dt.date) -> pd.Series:
    """SPF's sliding week ``'2020-10-06-2020-10-12'`` → its last day, checking it spans 7 days."""
    text = frame[column].fillna("").str.strip()
    parts = pd.DataFrame({"start": text.str[:10], "end": text.str[11:]}, index=frame.index)
    parts.attrs["original_columns"] = {"start": original_name(frame, column),
                                       "end": original_name(frame, column)}
    bad_shape = ~text.str.match(r"^\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}$")
    report_rows(check, frame, bad_shape, column, "a 7-day window like 2020-10-06-2020-10-12")
    start = to_date(parts[~bad_shape], "start", check, today).reindex(frame.index)
    end = to_date(parts[~bad_shape], "end", check, today).reindex(frame.index)
    wrong = (end - start).ne(pd.Timedelta(days=6)) & start.notna() & end.notna()
    report_rows(check, frame, wrong, column, "a window of 7 days (start + 6 days = end)")
    return end


def name_key(name: str) -> str:
    """Comparison key of a place name: accents, case, apostrophes and hyphens do not matter."""
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("\u2019", "'").replace("-", " ").casefold()
    return " ".join(text.split())


def to_number(frame: pd.DataFrame, column: str, check: Collector, *, count: bool = False,
              allow_missing: bool = False, minimum: float | None = None,
              maximum: float | None = None) -> pd.Series:
    """Convert a text column to float64, reporting every value that is not a valid number.

    ``count=True`` requires non-negative whole numbers (people, beds). Decimal commas
    (``'12,5'``, the French convention) are accepted.
    """
    raw = frame[column]
    label = original_name(frame, column)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        # read_table parsed the column as numbers already: only the range checks remain.
        raw = values = raw.astype("float64")
        missing = raw.isna()
    else:
        values, missing = _parsed_numbers(raw)
    _report(check, values.isna() & ~missing, raw, label, "a number")
    if not allow_missing:
        _report(check, missing, raw, label, "a value", found=lambda v: "an empty cell")
    _range_checks(check, values, raw, label, count, minimum, maximum)
    return values


def _parsed_numbers(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A text column as float64 (NaN where it is no number) and where its cell is empty."""
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    # Slow path only for the cells the fast parser refused: spaces, decimal commas, text.
    retry = values.isna() & raw.notna()
    missing = raw.isna()
    if retry.any():
        text = raw[retry].str.strip().str.replace(",", ".", regex=False)
        values[retry] = pd.to_numeric(text, errors="coerce")
        missing = missing | (retry & text.reindex(raw.index).eq(""))
    return values, missing


def _range_checks(check: Collector, values: pd.Series, raw: pd.Series, label: str, count: bool,
                  minimum: float | None, maximum: float | None) -> None:
    if count:
        _report(check, values < 0, raw, label, "a count >= 0",
                found=lambda v: repr(as_text(v)))
        _report(check, (values % 1 != 0) & values.notna(), raw, label, "a whole number",
                found=lambda v: repr(as_text(v)))
    if minimum is not None:
        _report(check, values < minimum, raw, label, f"a value >= {minimum:g}",
                found=lambda v: repr(as_text(v)))
    if maximum is not None:
        _report(check, values > maximum, raw, label, f"a value <= {maximum:g}",
                found=lambda v: repr(as_text(v)))


def as_text(value) -> str:
    """A parsed number shown as the publisher wrote it (``-3.0`` → ``'-3'``)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def to_date(frame: pd.DataFrame, column: str, check: Collector, today: dt.date,
            fmt: str = "%Y-%m-%d") -> pd.Series:
    """Parse a date column (ISO by default; ``dd/mm/yyyy`` also accepted), rejecting future dates.

    Parsing goes through the distinct values only: daily files repeat each date many times.
    """
    raw = frame[column]
    label = original_name(frame, column)
    codes, uniques = pd.factorize(raw)
    parsed = pd.Series(pd.to_datetime(pd.Series(uniques, dtype=object), format=fmt,
                                      errors="coerce"))
    if parsed.isna().any() and fmt == "%Y-%m-%d":
        alt = pd.to_datetime(pd.Series(uniques, dtype=object)[parsed.isna()],
                             format="%d/%m/%Y", errors="coerce")
        parsed = parsed.fillna(alt)
    values = parsed.to_numpy(dtype="datetime64[ns]")
    taken = np.where(codes >= 0, values[np.clip(codes, 0, None)] if len(values) else
                     np.datetime64("NaT"), np.datetime64("NaT", "ns"))
    dates = pd.Series(taken.astype("datetime64[ns]"), index=raw.index)
    _report(check, dates.isna(), raw, label,
            "a date like 2020-03-19" if fmt == "%Y-%m-%d" else f"a date in format {fmt}",
            found=lambda v: "an empty cell" if pd.isna(v) else repr(v))
    future = dates > pd.Timestamp(today)
    _report(check, future, raw, label, f"a date not after today ({today.isoformat()})")
    return dates


def check_territories(frame: pd.DataFrame, column: str, check: Collector,
                      territories: Territories) -> None:
    """Report each unknown or retired territory code with the first line it appears on."""
    codes = frame[column]
    column = original_name(frame, column)
    unknown = codes.isin(territories.unknown(codes.dropna()))
    report_codes(check, codes, unknown, column, "a known INSEE territory code",
                 territories.describe_unknown)
    missing = codes.isna()
    _report(check, missing, codes, column, "a territory code", found=lambda v: "an empty cell")


def report_codes(check: Collector, codes: pd.Series, bad: pd.Series, column: str,
                 expected: str, found: Callable[[str], str]) -> None:
    """Report each distinct code of ``codes`` where ``bad`` holds once, on the first line it
    appears on, in the order met (the first :data:`MAX_PROBLEMS_PER_CHECK` codes); ``column``:
    the header as written in the file."""
    for code in pd.unique(codes[bad])[:MAX_PROBLEMS_PER_CHECK]:
        first = int(codes.index[codes.eq(code)][0]) + 2
        check.add(expected, found(code), line=first, column=column)


def dated_values(frame: pd.DataFrame, columns: Iterable[str], check: Collector, today: dt.date,
                 **number) -> pd.DataFrame:
    """The rows of a (territory, date) table once checked: ``date`` parsed (never after
    ``today``), each of ``columns`` converted by :func:`to_number` (``number``: its options,
    e.g. ``count=True``), one row per territory and date (:func:`drop_duplicates`). Ends the
    validation when any of these found a problem."""
    columns = list(columns)
    frame["date"] = to_date(frame, "date", check, today)
    for column in columns:
        frame[column] = to_number(frame, column, check, **number)
    check.raise_if_any()
    frame = drop_duplicates(frame, ["territory", "date"], columns, check)
    check.raise_if_any()
    return frame


def drop_duplicates(frame: pd.DataFrame, keys: list[str], values: list[str],
                    check: Collector) -> pd.DataFrame:
    """Drop exact duplicate rows (with a warning); report duplicates whose values conflict."""
    dup_mask = frame.duplicated(keys, keep=False)
    if not dup_mask.any():
        return frame
    dups = frame[dup_mask]
    conflicting = dups.groupby(keys, dropna=False)[values].nunique(dropna=False).gt(1).any(axis=1)
    for key in list(conflicting[conflicting].index)[:MAX_PROBLEMS_PER_CHECK]:
        key = key if isinstance(key, tuple) else (key,)
        sel = dups
        for k, v in zip(keys, key, strict=True):
            sel = sel[sel[k] == v]
        lines = ", ".join(str(i + 2) for i in sel.index[:5])
        label = ", ".join(f"{original_name(frame, k)}={_fmt(v)}"
                          for k, v in zip(keys, key, strict=True))
        check.add(f"one row per ({', '.join(original_name(frame, k) for k in keys)})",
                  f"conflicting rows for {label} on lines {lines}", line=int(sel.index[0]) + 2)
    n_conflicts = int(conflicting.sum())
    if n_conflicts > MAX_PROBLEMS_PER_CHECK:
        check.add(f"one row per ({', '.join(original_name(frame, k) for k in keys)})",
                  f"{n_conflicts - MAX_PROBLEMS_PER_CHECK} more conflicting keys")
    exact = frame.duplicated(keys, keep="first")
    if exact.any() and not n_conflicts:
        check.warnings.append(f"{check.path.name}: dropped {int(exact.sum())} exact duplicate "
                              f"rows")
    return frame[~exact]


def _fmt(value) -> str:
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    return str(value)
