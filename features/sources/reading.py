"""Reading a publisher's delimited text file into a frame of strings, and the
:class:`Collector` of the problems found in it.

Accepts both the extracts (comma-separated UTF-8) and the official publications
(semicolon-separated, often with a UTF-8 BOM). A reader never raises on the first problem: it
collects every :class:`~features.errors.Problem` (capped per check, :data:`MAX_PROBLEMS_PER_CHECK`)
so that a publisher gets the whole list at once; :meth:`Collector.raise_if_any` raises one
:class:`~features.errors.SourceError` at the end.

Line numbers are those a text editor shows: the header is line 1, the first data row line 2.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import pandas as pd

from features.errors import Problem, SourceError

#: At most this many problems are reported per check and file (the rest are counted).
MAX_PROBLEMS_PER_CHECK = 10


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
             column: str | None = None) -> NoReturn:
        """Add the problem and end the validation (raises :class:`SourceError`)."""
        self.add(expected, found, line, column)
        raise SourceError(self.source, self.path, self.problems)


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
    text = _decoded_text(path, check)
    header_line = text.split("\n", 1)[0].rstrip("\r")
    sep = detect_separator(header_line, columns)
    header = next(csv.reader([header_line], delimiter=sep))
    mapping = _map_columns(header, columns, optional or {})
    _check_header(header_line, header, mapping, columns, check)
    if "\n" not in text.strip("\r\n"):
        check.fail("data rows after the header", "only a header line")
    frame = _parse_rows(text, sep, len(header), mapping, numeric, check)
    frame = frame.rename(columns=mapping)
    # Messages must name the column as the publisher spelled it, not Vigie's canonical name.
    frame.attrs["original_columns"] = {canon: orig for orig, canon in mapping.items()}
    _check_last_line(text, sep, len(header), len(frame), check)
    check.raise_if_any()
    return frame


def _decoded_text(path: Path, check: Collector) -> str:
    """The file as text: UTF-8 without BOM; an empty file or a byte that is not UTF-8 ends
    the validation (with the line of that byte)."""
    data = path.read_bytes()
    if not data.strip():
        check.fail("a header line and data rows", "an empty file")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start: exc.start + 1]
        check.fail("UTF-8 text", f"byte 0x{bad.hex()} that is not UTF-8 (Latin-1/Windows-1252 "
                   "file? save it as UTF-8)", line=line)


def _check_header(header_line: str, header: list[str], mapping: dict[str, str],
                  columns: dict[str, tuple[str, ...]], check: Collector) -> None:
    """End the validation when a required column is missing, naming a likely wrong separator
    when the whole header reads as one column that holds the expected names."""
    missing = [c for c in columns if c not in mapping.values()]
    if not missing:
        return
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


def _parse_rows(text: str, sep: str, n_fields: int, mapping: dict[str, str],
                numeric: Iterable[str], check: Collector) -> pd.DataFrame:
    """The mapped columns of every row, as text (empty cells NaN); the ``numeric`` ones
    (canonical names) as float64 when every cell of the file parses as a number."""
    usecols = list(mapping)
    numeric_headers = {orig: "float64" for orig, canon in mapping.items() if canon in set(numeric)}
    if numeric_headers:
        # Fast path: let the C parser read numbers. Any cell it cannot parse sends the file
        # down the text path, where every bad cell is reported with its line.
        try:
            return pd.read_csv(io.StringIO(text), sep=sep, keep_default_na=False,
                               na_values=[""], skip_blank_lines=False, usecols=usecols,
                               dtype={**{c: str for c in usecols}, **numeric_headers})
        except (ValueError, pd.errors.ParserError):
            pass
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                           na_values=[""], skip_blank_lines=False, usecols=usecols)
    except pd.errors.ParserError as exc:
        check.fail(f"{n_fields} fields on every line", str(exc).strip())


def _check_last_line(text: str, sep: str, n_fields: int, n_rows: int, check: Collector
                     ) -> None:
    """A file cut short mid-line has a last line with fewer fields than the header."""
    if text.endswith("\n"):
        return
    last_line = text.rsplit("\n", 1)[-1]
    found = len(next(csv.reader([last_line], delimiter=sep)))
    if found < n_fields:
        check.add(f"{n_fields} fields", f"{found} fields: the file looks truncated",
                  line=n_rows + 1)


def detect_separator(header_line: str, columns: dict[str, tuple[str, ...]]) -> str:
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


def header_text(path: Path) -> str:
    """The file's first line, lower-case, without BOM: tells an official layout from an extract."""
    with open(path, "rb") as fh:
        first = fh.readline(4096)
    return first.decode("utf-8", errors="replace").lstrip("\ufeff").lower()
