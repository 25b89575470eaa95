"""CSV exports that a spreadsheet opens without running anything (CSV/formula injection).

Every CSV Vigie writes for people (the API's ``format=csv``, French Excel's ``sep=;``, the Hub
CSV, the command line's ``cube export``, ``forecast``, ``backtest`` and ``score`` files) passes
its text cells through :func:`neutralise`: a text cell starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return (OWASP's list; a line feed too) gets a leading apostrophe, which
spreadsheets show as text and do not evaluate. Numbers stay numbers: the exporter writes them
itself from numeric values (``-3.5``, or ``-3,5`` with a decimal comma) and never prefixes
them, and a text cell that is exactly a number (``-12``, ``-4,5``, ``+1e3``) is left as is
too, since a spreadsheet reads it as that number and nothing else.

Ingest refuses such text in city files already (``features/sources/city_indicators.py``); this
is the second line: vintages ingested earlier, and text from any other source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?")


def neutralise(text: str) -> str:
    """``text`` with a leading apostrophe when a spreadsheet would read it as a formula."""
    if not text:
        return text
    stripped = text.lstrip(" ")
    if stripped[:1] in FORMULA_STARTS and not _NUMBER.fullmatch(stripped):
        return "'" + text
    return text


def neutralise_cell(value: Any) -> Any:
    """Text neutralised; anything else (numbers, dates, missing values) unchanged."""
    return neutralise(value) if isinstance(value, str) else value


def neutralise_frame(frame):
    """A copy of a pandas frame whose text columns are neutralised (numeric columns are not
    touched, so pandas writes them as numbers)."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_object_dtype(out[column]) or pd.api.types.is_string_dtype(
                out[column]):
            out[column] = out[column].map(neutralise_cell)
    return out


def write_csv(frame, path: str | Path, **kwargs) -> None:
    """``frame.to_csv(path, **kwargs)`` with formula cells neutralised."""
    neutralise_frame(frame).to_csv(path, **kwargs)
