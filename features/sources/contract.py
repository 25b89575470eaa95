"""What a source is and what it gives the cube: :class:`Source` (locate, download, parse),
:class:`SourceResult` (tidy rows ``territory, date, indicator, value`` and their indicators,
:func:`to_tidy`), :class:`ParseContext` and :class:`RawFile` (the checksum that ties a vintage
to its exact inputs).

A source module (one per publisher's dataset) subclasses :class:`Source` and implements
:meth:`Source.parse` with :mod:`features.sources.reading` (the file into a frame of text) and
:mod:`features.sources.checks` (every cell checked, problems collected with their line).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import logging
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.indicators import IndicatorSpec
from features.storage.atomic import atomic_write_bytes
from features.territories import Territories

log = logging.getLogger(__name__)

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


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def raw_file(path: Path, rows: int = 0) -> RawFile:
    return RawFile(path=path, sha256=sha256_of(path), size=path.stat().st_size, rows=rows)


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
