"""One ingest: every source found → validated frames → a new cube vintage.

A source that fails validation is reported with every problem found, its file is copied to the
quarantine folder with a JSON report, and the last good file of that source (kept in the raw
store) is used instead, so the new vintage loses nothing. Sources that pass still ingest. If
nothing changed since the current vintage (same file checksums), no vintage is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from features.catalog import get_engine, ingest_runs, utcnow
from features.cube import build_cube
from features.disclosure import store_masks
from features.errors import SourceError
from features.settings import Settings
from features.sources import SOURCES
from features.sources.contract import (
    ParseContext,
    RawFile,
    Source,
    SourceNotFound,
    SourceResult,
    raw_file,
)
from features.sources.insee_territories import load_territories, original_name
from features.storage import jsonsafe
from features.storage.atomic import atomic_path
from features.store import CubeStore
from features.territories import Territories
from features.uploads import UPLOAD_PREFIX, uploaded

log = logging.getLogger(__name__)


@dataclass
class SourceOutcome:
    """What happened to one source (or one file of a multi-file source) in an ingest."""

    source: str
    status: str  # ok, failed, missing, reused
    file: str | None = None
    summary: dict = field(default_factory=dict)
    error: str | None = None
    problems: list[dict] = field(default_factory=list)
    quarantined: str | None = None
    seconds: float = 0.0


@dataclass
class IngestReport:
    outcome: str  # ok, partial, unchanged, failed
    vintage_id: str | None
    sources: list[SourceOutcome]
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    message: str = ""
    #: Wall time of each phase, seconds (structured figures of the run, for logs and benchmarks).
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[SourceOutcome]:
        return [s for s in self.sources if s.status == "failed"]

    def to_dict(self) -> dict:
        return {
            "outcome": self.outcome,
            "vintage_id": self.vintage_id,
            "message": self.message,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "sources": [vars(s) for s in self.sources],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def raw_copy(settings: Settings, sha256: str, name: str) -> Path:
    """Where the raw store keeps the file ``name`` of content ``sha256``."""
    return settings.raw_dir / sha256[:2] / f"{sha256}-{name}"


def keep_raw(settings: Settings, raw: RawFile) -> Path:
    """Copy a raw input into the content-addressed raw store (once per distinct content)."""
    target = raw_copy(settings, raw.sha256, raw.path.name)
    if not target.exists():
        with atomic_path(target, suffix=".part") as tmp:
            shutil.copyfile(raw.path, tmp)
    return target


def quarantine(settings: Settings, source: str, path: Path, error: Exception) -> Path:
    """Copy the offending file and a JSON report into ``quarantine/<time>_<source>/``."""
    folder = settings.quarantine_dir / f"{utcnow():%Y%m%dT%H%M%S%fZ}_{source}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, folder / path.name)
    report = error.to_dict() if isinstance(error, SourceError) else {
        "source": source, "path": str(path), "error": f"{type(error).__name__}: {error}"}
    report["message"] = str(error)
    (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return folder


def _last_good_file(store: CubeStore, source: str, settings: Settings) -> list[Path]:
    """Raw-store copies of the files that source contributed to the current vintage."""
    try:
        files = store.current_vintage()["files"]
    except LookupError:
        return []
    out = []
    for info in files.values():
        if info.get("source") == source:
            candidate = raw_copy(settings, info["sha256"], info["name"])
            if candidate.exists():
                out.append(candidate)
    return out


def _files_for(source: Source, data_dir: Path, download: bool) -> list[Path]:
    if source.multiple:
        return source.locate_all(data_dir)
    return [source.fetch(data_dir, download=download)]


def _failed(source: str, exc: Exception, error: str | None = None, **fields) -> SourceOutcome:
    """A failed source's outcome, with every problem of a :class:`SourceError`."""
    outcome = SourceOutcome(source, "failed", error=error or str(exc), **fields)
    if isinstance(exc, SourceError):
        outcome.problems = [p.to_dict() for p in exc.problems]
    return outcome


def _manifest_entry(source: str, name: str, sha256: str, size: int, rows: int | None = None,
                    reused: bool = False) -> dict:
    """One input file of a vintage, as its manifest lists it."""
    entry = {"source": source, "name": name, "sha256": sha256, "size": size}
    if rows is not None:
        entry["rows"] = rows
    if reused:
        entry["reused_from_previous"] = True
    return entry


def run_ingest(settings: Settings | None = None, data_dir: Path | None = None,
               download: bool = False, only: list[str] | None = None,
               issued_at: dt.datetime | None = None, force: bool = False) -> IngestReport:
    """Ingest every source found in ``data_dir``; write a vintage unless nothing changed.

    Returns the report; raises only when the territory registry itself cannot be read (nothing
    else can be validated without it).
    """
    settings = settings or Settings.from_env()
    data_dir = Path(data_dir) if data_dir else settings.data_dir
    store = CubeStore(settings)
    report = IngestReport("failed", None, [], utcnow())
    engine = get_engine(settings.database_url)
    try:
        territories, territory_paths = _load_territories(settings, store, data_dir, report)
    except (SourceError, SourceNotFound) as exc:
        outcome = SourceOutcome("insee_territories", "failed", error=str(exc))
        if isinstance(exc, SourceError) and exc.path:
            outcome = _failed("insee_territories", exc, quarantined=str(
                quarantine(settings, "insee_territories", exc.path, exc)))
        report.sources.append(outcome)
        report.message = "territories could not be read; nothing ingested"
        _record(engine, report)
        return report
    phase_started = time.perf_counter()
    reader = _SourceReader(settings, store, ParseContext(territories), report)
    reader.add_territory_files(territory_paths)
    results = reader.read_all(data_dir, download, only)
    report.timings["sources"] = time.perf_counter() - phase_started
    if not results:
        report.message = "no source could be read"
    elif force or not _unchanged(store, report, reader.files):
        _write_vintage(settings, store, report, results, territories, reader.files,
                       data_dir, issued_at)
    _record(engine, report)
    return report


@dataclass
class _SourceReader:
    """Reads every source of one ingest into validated results, noting each one's outcome in
    ``report`` and each input file in ``files`` (the vintage's manifest)."""

    settings: Settings
    store: CubeStore
    ctx: ParseContext
    report: IngestReport
    files: dict[str, dict] = field(default_factory=dict)

    def add_territory_files(self, paths: list[Path]) -> None:
        """The registry's files: kept in the raw store and listed in the manifest."""
        for path in paths:
            raw = keep_raw(self.settings, raw_file(path))
            name = original_name(path)
            self.files[name] = _manifest_entry("insee_territories", name,
                                               raw.name.split("-", 1)[0], path.stat().st_size,
                                               reused=name != path.name)

    def read_all(self, data_dir: Path, download: bool, only: list[str] | None
                 ) -> list[SourceResult]:
        """Every source (``only``: those named; the others keep their last good files)."""
        results: list[SourceResult] = []
        for source in SOURCES:
            if only and source.name not in only:
                results.extend(self.reuse_last_good(source))
                continue
            try:
                paths = _files_for(source, data_dir, download)
            except SourceNotFound as exc:
                self.report.sources.append(SourceOutcome(source.name, "missing",
                                                         error=str(exc)))
                results.extend(self.reuse_last_good(source))
                continue
            paths += uploaded(self.settings, source)
            for path in paths:
                results.extend(self.load(source, path))
            if source.multiple:
                results.extend(self.keep_withdrawn(source, {p.name for p in paths}))
        return results

    def keep_withdrawn(self, source: Source, present: set[str]) -> list[SourceResult]:
        """Files of a multi-file source (a city's indicators) that the current vintage read
        and the data directory no longer holds: re-read from the raw store, so their
        indicators stay in the cube with their last dates instead of vanishing (reported as
        ``reused``, with why)."""
        results: list[SourceResult] = []
        for good in _last_good_file(self.store, source.name, self.settings):
            original = good.name.split("-", 1)[1]
            if original in present or original.startswith(UPLOAD_PREFIX):
                continue  # an upload leaves active/ only when a newer one replaces it
            log.warning("%s: %s is no longer in the data directory; its last values are "
                        "kept", source.name, original)
            kept = self.reuse(source, good)
            if kept and self.report.sources[-1].status == "reused":
                self.report.sources[-1].error = ("no longer in the data directory: the "
                                                 "values of its last ingest are kept")
            results.extend(kept)
        return results

    def load(self, source: Source, path: Path) -> list[SourceResult]:
        """One file of a source; a refused one is quarantined and its last good copy used."""
        t0 = time.perf_counter()
        try:
            result = source.load(path, self.ctx)
        except Exception as exc:
            log.error("source %s failed on %s: %s", source.name, path.name, exc)
            outcome = _failed(source.name, exc, file=path.name,
                              seconds=time.perf_counter() - t0)
            outcome.quarantined = str(quarantine(self.settings, source.name, path, exc))
            self.report.sources.append(outcome)
            return self.reuse_last_good(source, None if not source.multiple else path.name)
        raw = result.files[0]
        keep_raw(self.settings, raw)
        self.files[path.name] = _manifest_entry(source.name, path.name, raw.sha256, raw.size,
                                                raw.rows)
        self.report.sources.append(SourceOutcome(source.name, "ok", file=path.name,
                                                 summary=result.summary(),
                                                 seconds=time.perf_counter() - t0))
        return [result]

    def reuse_last_good(self, source: Source, name: str | None = None) -> list[SourceResult]:
        """The source's files of the current vintage, re-read (``name``: only that file's)."""
        results: list[SourceResult] = []
        for good in _last_good_file(self.store, source.name, self.settings):
            if name is None or good.name.split("-", 1)[1] == name:
                results.extend(self.reuse(source, good))
        return results

    def reuse(self, source: Source, path: Path) -> list[SourceResult]:
        """Re-read a source's last good raw file (content-addressed copy) into this vintage.

        Returns ``[]`` (reported as failed) when that file no longer validates, e.g. against
        a territory registry that lost a level it needs: the ingest goes on without this
        source.
        """
        original = path.name.split("-", 1)[1]
        try:
            result = source.load(path, self.ctx)
        except Exception as exc:
            log.error("last good file of %s (%s) no longer valid: %s", source.name, original,
                      exc)
            self.report.sources.append(_failed(
                source.name, exc, error=f"last good file no longer valid: {exc}",
                file=original))
            return []
        raw = result.files[0]
        self.files[original] = _manifest_entry(source.name, original, raw.sha256, raw.size,
                                               raw.rows, reused=True)
        self.report.sources.append(SourceOutcome(source.name, "reused", file=original,
                                                 summary=result.summary()))
        return [result]


def _unchanged(store: CubeStore, report: IngestReport, files: dict) -> bool:
    """Whether the inputs are those of the current vintage (then it stays current, and the
    report says so)."""
    try:
        previous = store.current_vintage()
    except LookupError:
        return False
    if _checksums(previous["files"]) != _checksums(files):
        return False
    report.vintage_id = previous["id"]
    if report.failed:
        report.outcome = "partial"
        report.message = (f"{len(report.failed)} source(s) failed; the other inputs did not "
                          f"change: vintage {previous['id']} stays current")
    else:
        report.outcome = "unchanged"
        report.message = "same input files as the current vintage; no new vintage written"
    return True


def _write_vintage(settings: Settings, store: CubeStore, report: IngestReport,
                   results: list[SourceResult], territories: Territories, files: dict,
                   data_dir: Path, issued_at: dt.datetime | None) -> None:
    """Build the cube, write it as a new vintage and compute its disclosure record."""
    phase_started = time.perf_counter()
    datasets, fitted = build_cube(results, territories)
    report.timings["build"] = time.perf_counter() - phase_started
    tables = {**territories.tables,
              **{name: table for r in results for name, table in r.tables.items()}}
    manifest = {
        "data_dir": str(data_dir),
        "files": files,
        "sources": {o.source if not o.file else f"{o.source}:{o.file}":
                    {"status": o.status, **o.summary} for o in report.sources},
        "fitted": fitted,
    }
    phase_started = time.perf_counter()
    report.vintage_id = store.write_vintage(datasets, tables, manifest, issued_at=issued_at)
    report.timings["write"] = time.perf_counter() - phase_started
    phase_started = time.perf_counter()
    _disclosure_record(store, report.vintage_id, settings.small_count_threshold)
    report.timings["disclosure"] = time.perf_counter() - phase_started
    report.outcome = "partial" if report.failed else "ok"
    report.message = (f"vintage {report.vintage_id} written"
                      + (f"; {len(report.failed)} source(s) failed and kept their last good "
                         "data" if report.failed else ""))


def _disclosure_record(store: CubeStore, vintage_id: str, threshold: float) -> None:
    """Compute the new vintage's public masks and record now (docs/DISCLOSURE.md), so that no
    public request waits for them. Best effort: if it fails, the first public request computes
    them (and fails closed there); the vintage itself is already written."""
    try:
        store_masks(store, vintage_id, threshold)
    except Exception:
        log.exception("disclosure record of vintage %s not written ahead", vintage_id)


#: The optional EPCI level's files: a refused one is quarantined and its last good copy used (or
#: the level left out), instead of stopping the whole ingest as a bad département file does.
EPCI_SOURCES = ("insee_epci", "insee_communes_all")


def _load_territories(settings: Settings, store: CubeStore, data_dir: Path,
                      report: IngestReport) -> tuple[Territories, list[Path]]:
    try:
        return load_territories(data_dir)
    except SourceError as exc:
        if exc.source not in EPCI_SOURCES or exc.path is None:
            raise
        log.error("territory level epci refused: %s", exc)
        report.sources.append(_failed(
            exc.source, exc, file=exc.path.name,
            quarantined=str(quarantine(settings, exc.source, exc.path, exc))))
    good = _last_good_file(store, "insee_territories", settings)
    try:
        territories, paths = load_territories(data_dir, epci_files=good)
    except SourceError as exc:
        if exc.source not in EPCI_SOURCES:
            raise
        report.sources.append(SourceOutcome(exc.source, "failed", error="last good file no "
                                            f"longer valid: {exc}"))
        territories, paths = load_territories(data_dir, epci_files=[])
    reused = [p for p in paths if p in good]
    for path in reused:
        report.sources.append(SourceOutcome("insee_epci", "reused", file=original_name(path)))
    if not reused:
        log.error("no last good EPCI file: the epci level is left out of this vintage")
    return territories, paths


def _checksums(files: dict) -> dict[str, str]:
    return {name: info["sha256"] for name, info in files.items()}


def _record(engine: sa.Engine, report: IngestReport) -> None:
    report.finished_at = utcnow()
    report.timings["total"] = (report.finished_at - report.started_at).total_seconds()
    log.info("ingest %s in %s", report.outcome,
             ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items()))
    with engine.begin() as conn:
        conn.execute(ingest_runs.insert().values(
            started_at=report.started_at, finished_at=report.finished_at,
            outcome=report.outcome, vintage_id=report.vintage_id,
            report=jsonsafe.plain(report.to_dict())))
