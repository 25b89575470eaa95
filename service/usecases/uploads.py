"""Uploads: a city sends a file in the shared format; valid, it is kept and a new vintage is
made; refused, it is quarantined with its report and nothing served changes.

Called by ``POST /api/v1/uploads`` (:mod:`service.api.uploads`, a ``city`` token or above,
scoped to its territories) and ``python -m service upload FILE [--as NAME]`` (the operator:
every territory). The rules (file names, what replaces what, where files are kept) are
:mod:`features.uploads`'; the validation is the ingest's (:mod:`features.sources.city_indicators`)
plus the sender's scope.

One upload at a time per home (:func:`features.uploads.locked`): validate → (refused:
quarantine, index, audit; stop) → copy into ``uploads/active`` (the older uploads it replaces
leave it) → ingest (the data directory and every upload in force) → index and audit. The
answer is the validation report, the same problems (file, line, column, expected, found) the
ingest reports, with the vintage made.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from features.uploads import UploadRefused

log = logging.getLogger(__name__)

__all__ = ["UploadRefused", "list_uploads", "upload_file"]


def upload_file(settings: Any, content: bytes, name: str | None, *, sender: str, role: str,
                territories: frozenset[str] | None = None, actor: str = "cli",
                size: int | None = None) -> dict:
    """Validate ``content`` (the file ``name`` sent by ``sender``, of ``role``; may write
    ``territories`` and their EPCIs' communes, None: every territory); keep it and ingest a
    new vintage when valid, quarantine it otherwise. The report (``status`` ``accepted`` or
    ``refused``, ``problems``, ``out_of_scope``, ``vintage_id``…). ``size``: the file's size
    when ``content`` was not read (over the limit), else ``len(content)``.

    Raises :class:`UploadRefused` (audited, nothing kept) for a forged name or a file over
    ``settings.upload_max_bytes``."""
    from features.uploads import check_name, locked

    try:
        name = check_name(name)
        size = len(content) if size is None else size
        if size > settings.upload_max_bytes:
            raise UploadRefused("size", f"the file is over {settings.upload_max_bytes} bytes "
                                f"({size})", limit_bytes=settings.upload_max_bytes, size=size)
    except UploadRefused as exc:
        _audit(settings, actor, role, {"status": "refused", "reason": exc.kind,
                                       "message": str(exc), "sender": sender})
        raise
    with locked(settings):
        report = _Upload(settings, content, name, sender, role, territories).run(actor)
    _audit(settings, actor, role, {k: report.get(k) for k in (
        "id", "name", "sender", "status", "rows", "indicators", "territories", "replaces",
        "vintage_id", "out_of_scope")} | {"problems": len(report["problems"])})
    return report


def list_uploads(settings: Any, sender: str | None = None) -> list[dict]:
    """Every upload, newest first (``sender``: only that sender's), without the pairs."""
    from features.uploads import UploadIndex

    records = [r for r in UploadIndex(settings).records()
               if sender is None or r["sender"] == sender]
    return [{k: v for k, v in r.items() if k != "pairs"} for r in reversed(records)]


def _audit(settings: Any, actor: str, role: str, details: dict) -> None:
    from features.catalog import get_engine
    from service.audit import record

    record(get_engine(settings.database_url), event="upload", actor=actor, role=role,
           details=details, vintage_id=details.get("vintage_id"))


class _Upload:
    """One upload under the lock: its record, its incoming copy, its outcome."""

    def __init__(self, settings: Any, content: bytes, name: str, sender: str, role: str,
                 territories: frozenset[str] | None) -> None:
        from features.catalog import utcnow
        from features.uploads import active_name

        self.settings, self.content, self.territories = settings, content, territories
        now = utcnow()
        self.record: dict = {
            "id": f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}", "name": name,
            "sender": sender, "role": role, "status": "refused",
            "received_at": now.isoformat(), "size": len(content),
            "file": active_name(sender, name), "rows": 0, "indicators": [],
            "territories": [], "pairs": [], "replaces": [], "replaced_by": None,
            "vintage_id": None, "problems": 0, "quarantine": None}
        self.incoming = settings.uploads_dir / "incoming" / self.record["id"] / name

    def run(self, actor: str) -> dict:
        from features.errors import Problem, SourceError
        from features.sources.contract import sha256_of

        self.incoming.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.incoming.write_bytes(self.content)
            self.record["sha256"] = sha256_of(self.incoming)
            try:
                result, replaced = self.validate()
            except SourceError as exc:
                return self.refuse(exc, scope=self.out_of_scope(exc))
            except (ValueError, UnicodeError, OverflowError) as exc:  # unforeseen bad input
                log.exception("upload %s: the file could not be read", self.record["id"])
                return self.refuse(SourceError("city_indicators", self.incoming, [Problem(
                    self.incoming.name, "a CSV file in Vigie's shared format",
                    f"a file the reader refuses ({type(exc).__name__}: {exc})"[:300])]), [])
            return self.accept(result, replaced, actor)
        finally:
            shutil.rmtree(self.incoming.parent, ignore_errors=True)

    # -- validation
    def writable(self) -> Callable[[str], bool] | None:
        if self.territories is None:
            return None
        from features.store import CubeStore
        from service.scopes import covered, epci_members

        mine = covered(self.territories, epci_members(CubeStore(self.settings)))
        return mine.__contains__

    def validate(self) -> tuple[Any, list[dict]]:
        """The parsed file and the uploads in force it replaces; :class:`SourceError` with
        every problem (the ingest's, the scope's, overlaps with files in force)."""
        from features.errors import SourceError
        from features.sources.city_indicators import SOURCE
        from features.sources.contract import ParseContext
        from features.sources.insee_territories import load_territories
        from features.uploads import UploadIndex, pairs_of, replaced_and_conflicts

        territories = load_territories(self.settings.data_dir)[0]
        result = SOURCE.parse_checked(self.incoming, ParseContext(territories),
                                      writable=self.writable())
        pairs = pairs_of(result.frame)
        fixed = _data_dir_files(self.settings, territories)
        replaced, problems = replaced_and_conflicts(
            UploadIndex(self.settings).active() + fixed, self.record["sender"],
            self.record["name"], pairs, self.incoming.name)
        if problems:
            raise SourceError(SOURCE.name, self.incoming, problems)
        frame = result.frame
        self.record.update(
            rows=len(frame), indicators=sorted(frame["indicator"].unique()),
            territories=sorted(frame["territory"].unique()), pairs=sorted(pairs),
            warnings=list(result.warnings))
        return result, replaced

    def out_of_scope(self, exc: Exception) -> list[str]:
        """The territory codes a refusal names as outside the sender's scope."""
        return [p.found.split("'")[1] for p in getattr(exc, "problems", [])
                if p.expected.startswith("a territory of this token's scope") and "'" in p.found]

    # -- outcomes
    def refuse(self, exc: Exception, scope: list[str]) -> dict:
        from features.ingest import quarantine
        from features.uploads import UploadIndex

        folder = quarantine(self.settings, "upload", self.incoming, exc)
        problems = [p.to_dict() for p in getattr(exc, "problems", [])]
        self.record.update(status="refused", problems=len(problems), quarantine=folder.name,
                           out_of_scope=scope)
        index = UploadIndex(self.settings)
        index.save(index.records() + [self.record])
        log.warning("upload %s (%s) refused: %d problem(s)", self.record["id"],
                    self.record["name"], len(problems))
        return self.answer(problems, message=str(exc))

    def accept(self, result: Any, replaced: list[dict], actor: str) -> dict:
        from features.storage.atomic import atomic_write_bytes
        from features.uploads import UploadIndex
        from service.usecases.ingest import ingest

        active = self.settings.uploads_active_dir
        # Written whole under a temporary name then renamed: an ingest running meanwhile (the
        # scheduled one) reads the file complete or not at all.
        atomic_write_bytes(active / self.record["file"], self.content)
        for old in replaced:
            if old["file"] != self.record["file"]:
                (active / old["file"]).unlink(missing_ok=True)
        index = UploadIndex(self.settings)
        records = index.records()
        for old in records:
            if old["id"] in {r["id"] for r in replaced}:
                old.update(status="replaced", replaced_by=self.record["id"])
        self.record.update(status="active", replaces=[r["id"] for r in replaced])
        index.save(records + [self.record])
        previous = _served_vintage(self.settings)
        report = ingest(self.settings, actor=f"{actor} (upload {self.record['id']})")
        outcome = next((s for s in report.sources if s.file == self.record["file"]), None)
        if outcome is None or outcome.status != "ok":
            return self.undo(report, outcome, replaced)
        self.record["vintage_id"] = report.vintage_id
        index.save([self.record if r["id"] == self.record["id"] else r
                    for r in index.records()])
        return self.answer([], previous=previous, ingest={
            "outcome": report.outcome, "message": report.message})

    def undo(self, report: Any, outcome: Any, replaced: list[dict]) -> dict:
        """The ingest did not take the file (it passed the same checks a moment before: the
        registry changed in between): back to the uploads in force before it."""
        from features.ingest import raw_copy
        from features.uploads import UploadIndex

        active = self.settings.uploads_active_dir
        (active / self.record["file"]).unlink(missing_ok=True)
        for old in replaced:
            kept = raw_copy(self.settings, old["sha256"], old["file"])
            if kept.exists():
                shutil.copyfile(kept, active / old["file"])
        problems = list(outcome.problems) if outcome else []
        index = UploadIndex(self.settings)
        ids = {r["id"] for r in replaced}
        records = [r for r in index.records() if r["id"] != self.record["id"]]
        for old in records:
            if old["id"] in ids:
                old.update(status="active", replaced_by=None)
        self.record.update(status="refused", replaces=[], problems=len(problems))
        index.save(records + [self.record])
        return self.answer(problems, message=f"the ingest did not take the file: "
                           f"{outcome.error if outcome else report.message}")

    def answer(self, problems: list[dict], message: str = "", previous: str | None = None,
               ingest: dict | None = None) -> dict:
        out = {k: v for k, v in self.record.items() if k != "pairs"}
        out.update(status="accepted" if self.record["status"] == "active" else "refused",
                   problems=problems, message=message or (
            f"accepted: vintage {self.record['vintage_id']}" if self.record["vintage_id"]
            else ""), previous_vintage_id=previous, ingest=ingest,
                   out_of_scope=self.record.get("out_of_scope", []))
        return out


def _served_vintage(settings: Any) -> str | None:
    from features.errors import NoVintageError
    from features.store import CubeStore

    try:
        return CubeStore(settings).current_vintage()["id"]
    except (NoVintageError, LookupError):
        return None


def _data_dir_files(settings: Any, territories: Any) -> list[dict]:
    """The data directory's city files as records an upload can overlap but never replace
    (the operator's files: a value there would win over the upload's)."""
    from features.errors import SourceError
    from features.sources.city_indicators import SOURCE
    from features.sources.contract import ParseContext
    from features.uploads import pairs_of

    out = []
    for path in SOURCE.locate_all(Path(settings.data_dir)):
        try:
            frame = SOURCE.parse(path, ParseContext(territories, dt.date.today())).frame
        except SourceError:
            continue  # refused by the ingest too: it brings no value
        out.append({"id": f"data directory {path.name}", "name": path.name, "fixed": True,
                    "sender": "the operator (data directory)", "pairs": sorted(pairs_of(frame))})
    return out
