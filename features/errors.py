"""Errors raised while reading and validating source files.

A validation error always says *where* (file, line, column) and *what* (what was expected, what
was found), so that whoever publishes the file can fix it without reading Vigie's code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file.

    ``line`` is the 1-based line number in the file as a text editor shows it (the header is
    line 1); ``None`` when the problem concerns the whole file or a whole column.
    """

    file: str
    expected: str
    found: str
    line: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = [self.file]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: expected {self.expected}, found {self.found}"

    def to_dict(self) -> dict:
        return asdict(self)


class SourceError(Exception):
    """A source could not be read or did not pass validation.

    Parameters
    ----------
    source:
        Name of the source module (e.g. ``spf_hospital_flows``).
    path:
        The offending file, if any.
    problems:
        Every problem found (reports are capped per check, see ``features.sources.reading``).
    """

    def __init__(self, source: str, path: Path | None, problems: list[Problem]):
        self.source = source
        self.path = path
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"source '{source}' rejected:\n  {shown}{more}")

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "path": str(self.path) if self.path else None,
            "problems": [p.to_dict() for p in self.problems],
        }


class UnknownTerritoryError(ValueError):
    """Codes that are not (or no longer) valid INSEE territories."""

    def __init__(self, codes: list[str]):
        self.codes = sorted(set(codes))
        super().__init__(f"unknown or retired territory codes: {', '.join(self.codes)}")


class NoVintageError(LookupError):
    """The store holds no cube vintage (nothing has been ingested yet)."""


class SchedulerUnreachable(ConnectionError):
    """The Dask scheduler of ``VIGIE_DASK_ADDRESS`` cannot be reached (or the address is not
    one): the message names the address and why."""
