"""Shared machinery of every source: locate/download → read → validate → tidy frame.

Each source module (one per publisher's dataset) subclasses :class:`Source` and implements
:meth:`Source.parse`, using the checks below. A check never raises on the first problem: it
collects every :class:`~features.errors.Problem` (capped per check) so that a publisher gets the
whole list at once; :meth:`Source.load` raises one :class:`~features.errors.SourceError` at the end.

Line numbers are those a text editor shows: the header is line 1, the first data row line 2.
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import hashlib
import io
import logging
import re
import time
import unicodedata
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import Problem, SourceError
from features.indicators import IndicatorSpec
from features.storage.atomic import atomic_write_bytes
from features.territories import Territories

log = logging.getLogger(__name__)

#: At most this many problems are reported per check and file (the rest are counted).
MAX_PROBLEMS_PER_CHECK = 10

TIDY_COLUMNS = ["territory", "date", "indicator", "value"]


@dataclass(frozen=True)
class RawFile:
    """A raw input file as it was read: its checksum ties a vintage to its exact inputs."""

    path: Path
    sha256: str
    size: int
    rows: int = 0


@dataclass
class ParseContext:
    """What a parser needs besides the file: the territory registry and 'now'."""

    territories: Territories
    today: dt.date = field(default_factory=dt.date.today)


@dataclass
class SourceResult:
    """A validated source, ready for the cube.

    Attributes
    ----------
    frame:
        Tidy rows ``territory`` (str), ``date`` (datetime64[ns]), ``indicator`` (str),
        ``value`` (float64).
    indicators:
        Metadata of every indicator in ``frame``.
    files:
        The raw files read.
    warnings:
        Things worth knowing that did not stop the source (e.g. identical duplicate rows dropped).
    tables:
        Extra tidy tables that are not time series (e.g. population by age and sex).
    """

    source: str
    frame: pd.DataFrame
    indicators: list[IndicatorSpec]
    files: list[RawFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def summary(self) -> dict:
        f = self.frame
        return {
            "source": self.source,
            "rows": len(f),
            "territories": int(f["territory"].nunique()) if len(f) else 0,
            "indicators": sorted(pd.unique(f["indicator"])) if len(f) else [],
            "first_date": f["date"].min().date().isoformat() if len(f) else None,
            "last_date": f["date"].max().date().isoformat() if len(f) else None,
            "warnings": list(self.warnings),
        }


class SourceNotFound(FileNotFoundError):
    """None of a source's files is in the data directory."""


class Source:
    """Base class of a source. Subclasses set the class attributes and implement ``parse``.

    Attributes
    ----------
    name:
        Stable identifier (module name).
    file_patterns:
        Glob patterns of the files this source reads, in order of preference: the extract's name
        first, then the official publication's names. The first pattern that matches wins.
    official_url:
        Where the publisher serves the file; used by ``fetch(download=True)``.
    """

    name: str = ""
    title: str = ""
    publisher: str = ""
    licence: str = ""
    official_url: str = ""
    file_patterns: tuple[str, ...] = ()
    indicators: tuple[IndicatorSpec, ...] = ()
    required: bool = True
    #: True when every matching file is a separate input (city indicators), not one publication.
    multiple: bool = False

    # ------------------------------------------------------------------ fetch
    def locate(self, data_dir: Path) -> Path | None:
        """The file of this source in ``data_dir`` (newest match of the first pattern that hits)."""
        if not data_dir.is_dir():
            return None
        names = sorted(p.name for p in data_dir.iterdir() if p.is_file())
        for pattern in self.file_patterns:
            hits = [n for n in names if fnmatch.fnmatch(n, pattern)]
            if hits:
                return data_dir / hits[-1]
        return None

    def locate_all(self, data_dir: Path) -> list[Path]:
        """Every file in ``data_dir`` matching any of the patterns (for ``multiple`` sources)."""
        if not data_dir.is_dir():
            return []
        return [p for p in sorted(data_dir.iterdir()) if p.is_file()
                and any(fnmatch.fnmatch(p.name, pattern) for pattern in self.file_patterns)]

    def fetch(self, data_dir: Path, download: bool = False, timeout: float = 60.0) -> Path:
        """Find the source file, downloading the official publication if asked and possible.

        The download goes to ``data_dir`` under a dated name matching the official pattern, via a
        temporary file so that an interrupted download never leaves a truncated file behind.
        """
        found = self.locate(data_dir)
        if found is not None and not download:
            return found
        if download and self.official_url:
            data_dir.mkdir(parents=True, exist_ok=True)
            stem = self.download_name()
            target = data_dir / stem
            try:
                log.info("downloading %s from %s", self.name, self.official_url)
                with urllib.request.urlopen(self.official_url, timeout=timeout) as resp:
                    atomic_write_bytes(target, resp.read(), suffix=".part")
                return target
            except OSError as exc:
                if found is not None:
                    log.warning("download of %s failed (%s); using %s", self.name, exc, found)
                    return found
                raise SourceNotFound(f"{self.name}: download from {self.official_url} failed: "
                                     f"{exc}") from exc
        if found is None:
            raise SourceNotFound(
                f"{self.name}: no file matching {', '.join(self.file_patterns)} in {data_dir}")
        return found

    def download_name(self) -> str:
        pattern = self.file_patterns[-1]
        return pattern.replace("*", dt.date.today().isoformat())

    # ------------------------------------------------------------------ parse
    def parse(self, path: Path, ctx: ParseContext) -> SourceResult:  # pragma: no cover
        raise NotImplementedError

    def load(self, path: Path, ctx: ParseContext) -> SourceResult:
        """Parse and validate one file; raise :class:`SourceError` listing every problem."""
        started = time.perf_counter()
        result = self.parse(path, ctx)
        result.files = [raw_file(path, rows=len(result.frame))] + result.files[1:]
        log.info("source %s: %d rows from %s in %.2fs", self.name, len(result.frame), path.name,
                 time.perf_counter() - started)
        return result


# ====================================================================== reading
def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def raw_file(path: Path, rows: int = 0) -> RawFile:
    return RawFile(path=path, sha256=sha256_of(path), size=path.stat().st_size, rows=rows)


class Collector:
    """Accumulates problems for one file; ``raise_if_any`` ends validation."""

    def __init__(self, source: str, path: Path):
        self.source = source
        self.path = path
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def add(self, expected: str, found: str, line: int | None = None,
            column: str | None = None) -> None:
        self.problems.append(Problem(self.path.name, expected, found, line, column))

    def raise_if_any(self) -> None:
        if self.problems:
            raise SourceError(self.source, self.path, self.problems)

    def fail(self, expected: str, found: str, line: int | None = None,
             column: str | None = None) -> None:
        self.add(expected, found, line, column)
        self.raise_if_any()


def read_table(path: Path, columns: dict[str, tuple[str, ...]], check: Collector,
               optional: dict[str, tuple[str, ...]] | None = None,
               numeric: Iterable[str] = ()) -> pd.DataFrame:
    """Read a delimited text file into a frame of strings with canonical column names.

    Accepts both the extracts (comma-separated UTF-8) and the official publications
    (semicolon-separated, often with a UTF-8 BOM). Every value is read as text: codes like
    ``'01'`` must not become numbers, and conversions are checked afterwards with line numbers.

    Parameters
    ----------
    columns:
        Canonical name → accepted header names (first is the canonical spelling).
    optional:
        Same, for columns that may be absent.

    Returns
    -------
    Frame with canonical names; its index + 2 is the line number in the file.
    """
    optional = optional or {}
    data = path.read_bytes()
    if not data.strip():
        check.fail("a header line and data rows", "an empty file")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start: exc.start + 1]
        check.fail("UTF-8 text", f"byte 0x{bad.hex()} that is not UTF-8 (Latin-1/Windows-1252 "
                   "file? save it as UTF-8)", line=line)
    header_line = text.split("\n", 1)[0].rstrip("\r")
    sep = _detect_separator(header_line, columns)
    header = next(csv.reader([header_line], delimiter=sep))
    mapping = _map_columns(header, columns, optional)
    missing = [c for c in columns if c not in mapping.values()]
    if missing:
        expected_cols = ", ".join(f"'{a[0]}'" for c, a in columns.items())
        names_inside = any(alias.lower() in header_line.lower()
                           for aliases in columns.values() for alias in aliases)
        if len(header) == 1 and names_inside:
            punctuation = [c for c in header_line if not (c.isalnum() or c in "_- \"'")]
            likely = max(set(punctuation), key=punctuation.count) if punctuation else "?"
            check.fail(f"columns {expected_cols} separated by ',' or ';'",
                       f"a single column '{header_line[:80]}' (wrong separator: "
                       f"{likely!r}?)", line=1)
        check.fail(f"columns {expected_cols}",
                   f"columns {', '.join(repr(h) for h in header)}; missing "
                   f"{', '.join(repr(columns[c][0]) for c in missing)}", line=1)
    if "\n" not in text.strip("\r\n"):
        check.fail("data rows after the header", "only a header line")
    usecols = list(mapping)
    numeric_headers = {orig: "float64" for orig, canon in mapping.items() if canon in set(numeric)}
    frame = None
    if numeric_headers:
        # Fast path: let the C parser read numbers. Any cell it cannot parse sends the file
        # down the text path, where every bad cell is reported with its line.
        try:
            frame = pd.read_csv(io.StringIO(text), sep=sep, keep_default_na=False,
                                na_values=[""], skip_blank_lines=False, usecols=usecols,
                                dtype={**{c: str for c in usecols}, **numeric_headers})
        except (ValueError, pd.errors.ParserError):
            frame = None
    if frame is None:
        try:
            frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                                na_values=[""], skip_blank_lines=False, usecols=usecols)
        except pd.errors.ParserError as exc:
            check.fail(f"{len(header)} fields on every line", str(exc).strip())
    frame = frame.rename(columns=mapping)
    # Messages must name the column as the publisher spelled it, not Vigie's canonical name.
    frame.attrs["original_columns"] = {canon: orig for orig, canon in mapping.items()}
    # A file cut short mid-line has a last line with fewer fields than the header.
    if not text.endswith("\n"):
        last_line = text.rsplit("\n", 1)[-1]
        n_fields = len(next(csv.reader([last_line], delimiter=sep)))
        if n_fields < len(header):
            check.add(f"{len(header)} fields", f"{n_fields} fields: the file looks truncated",
                      line=len(frame) + 1)
    check.raise_if_any()
    return frame


def _detect_separator(header_line: str, columns: dict[str, tuple[str, ...]]) -> str:
    wanted = {alias.lower() for aliases in columns.values() for alias in aliases}
    best, best_hits = ",", -1
    for sep in (",", ";", "\t"):
        names = {h.strip().strip('"').lower() for h in header_line.split(sep)}
        hits = len(names & wanted)
        if hits > best_hits:
            best, best_hits = sep, hits
    return best


def _map_columns(header: list[str], columns: dict[str, tuple[str, ...]],
                 optional: dict[str, tuple[str, ...]]) -> dict[str, str]:
    lookup = {}
    for canonical, aliases in {**columns, **optional}.items():
        for alias in aliases:
            lookup.setdefault(alias.lower(), canonical)
    mapping: dict[str, str] = {}
    for name in header:
        canonical = lookup.get(name.strip().lower())
        if canonical is not None and canonical not in mapping.values():
            mapping[name] = canonical
    return mapping


# ====================================================================== checks
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
    label = original_name(frame, column)
    bad = mask[mask].index
    for idx in bad[:MAX_PROBLEMS_PER_CHECK]:
        value = frame.at[idx, column]
        empty = value is None or (isinstance(value, float) and np.isnan(value)) or value == ""
        check.add(expected, "an empty cell" if empty else found(value),
                  line=int(idx) + 2, column=label)
    if len(bad) > MAX_PROBLEMS_PER_CHECK:
        check.add(expected, f"{len(bad) - MAX_PROBLEMS_PER_CHECK} more such values",
                  column=label)


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
    sep = _detect_separator(header_line, {c: (c,) for c in wanted})
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


def header_text(path: Path) -> str:
    """The file's first line, lower-case, without BOM: tells an official layout from an extract."""
    with open(path, "rb") as fh:
        first = fh.readline(4096)
    return first.decode("utf-8", errors="replace").lstrip("\ufeff").lower()


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
        raw = raw.astype("float64")
        values = raw
        missing = raw.isna()
        if not allow_missing:
            _report(check, missing, raw, label, "a value", found=lambda v: "an empty cell")
        _range_checks(check, values, raw, label, count, minimum, maximum)
        return values
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    # Slow path only for the cells the fast parser refused: spaces, decimal commas, text.
    retry = values.isna() & raw.notna()
    missing = raw.isna()
    if retry.any():
        text = raw[retry].str.strip().str.replace(",", ".", regex=False)
        values[retry] = pd.to_numeric(text, errors="coerce")
        missing = missing | (retry & text.reindex(raw.index).eq(""))
    not_number = values.isna() & ~missing
    _report(check, not_number, raw, label, "a number")
    if not allow_missing:
        _report(check, missing, raw, label, "a value", found=lambda v: "an empty cell")
    _range_checks(check, values, raw, label, count, minimum, maximum)
    return values


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
    unknown = territories.unknown(codes.dropna())
    for code in unknown[:MAX_PROBLEMS_PER_CHECK]:
        first = int(codes.index[codes.eq(code)][0]) + 2
        check.add("a known INSEE territory code", territories.describe_unknown(code),
                  line=first, column=column)
    missing = codes.isna()
    _report(check, missing, codes, column, "a territory code", found=lambda v: "an empty cell")


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


def to_tidy(frame: pd.DataFrame, value_columns: dict[str, str],
            id_columns: tuple[str, str] = ("territory", "date")) -> pd.DataFrame:
    """Wide validated frame → tidy ``territory, date, indicator, value`` (NaN values dropped)."""
    parts = []
    for column, indicator in value_columns.items():
        part = pd.DataFrame({
            "territory": frame[id_columns[0]].to_numpy(),
            "date": frame[id_columns[1]].to_numpy(),
            "indicator": indicator,
            "value": frame[column].to_numpy(dtype="float64"),
        })
        parts.append(part[part["value"].notna()])
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                             zip(TIDY_COLUMNS, [object, "datetime64[ns]", object, "float64"],
                                 strict=True)})
    tidy = pd.concat(parts, ignore_index=True)
    if not pd.api.types.is_datetime64_dtype(tidy["date"]):
        tidy["date"] = pd.to_datetime(tidy["date"])
    tidy["date"] = tidy["date"].astype("datetime64[ns]")
    return tidy
