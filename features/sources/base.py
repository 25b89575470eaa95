"""The toolkit of a source module, in one import: what a source is and gives
(:mod:`features.sources.contract`), reading a publisher's file (:mod:`features.sources.reading`)
and checking its cells (:mod:`features.sources.checks`).

The source modules import from those three; this module gathers their names for code and
notebooks that take them from one place (``from features.sources.base import ParseContext``).
"""

from __future__ import annotations

from features.errors import Problem, SourceError
from features.sources.checks import (
    CONTROL_CHARACTERS,
    FORMULA_STARTS,
    as_text,
    check_control_characters,
    check_formula_starts,
    check_territories,
    drop_duplicates,
    line_numbers,
    name_key,
    original_name,
    report_rows,
    to_date,
    to_number,
    window_end,
)
from features.sources.contract import (
    TIDY_COLUMNS,
    ParseContext,
    RawFile,
    Source,
    SourceNotFound,
    SourceResult,
    raw_file,
    sha256_of,
    to_tidy,
)
from features.sources.reading import (
    MAX_PROBLEMS_PER_CHECK,
    Collector,
    detect_separator,
    header_text,
    read_table,
)

__all__ = [
    "CONTROL_CHARACTERS", "FORMULA_STARTS", "MAX_PROBLEMS_PER_CHECK", "TIDY_COLUMNS",
    "Collector", "ParseContext", "Problem", "RawFile", "Source", "SourceError", "SourceNotFound",
    "SourceResult", "as_text", "check_control_characters", "check_formula_starts",
    "check_territories", "detect_separator", "drop_duplicates", "header_text", "line_numbers",
    "name_key", "original_name", "raw_file", "read_table", "report_rows", "sha256_of",
    "to_date", "to_number", "to_tidy", "window_end",
]
