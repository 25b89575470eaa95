"""Uploads: a city sends a file in the shared format; valid, it is kept and the ingest that
makes its vintage is queued (the API) or run at once (the command line); refused, it is
quarantined with its report and nothing served changes.

Called by ``POST /api/v1/uploads`` (:mod:`service.api.uploads`, a ``city`` token or above,
scoped to its territories) and ``python -m service upload FILE [--as NAME]`` (the operator:
every territory). The rules (file names, what replaces what, where files are kept, the uploads
lock) are :mod:`features.uploads`'; the validation is the ingest's
(:mod:`features.sources.city_indicators`) plus the sender's scope.

An upload: validate (outside any lock) → refused: quarantine, index, audit; stop → under the
uploads lock (:func:`features.uploads.locked`, shared with every ingest's read of the uploads
in force) check again what it replaces against the index as it is now, write its copy
(``raw/``) and its file (``active/``), then the index (record ``accepted``; the uploads it
replaces ``replaced``), then remove the replaced files → queue an ``ingest`` run (API) or run
the ingest (CLI). The ingest that reads it settles it (:func:`settle_uploads`, called by the
``ingest`` job and the command line): taken, the upload is ``active`` with the vintage made;
not taken, it is ``undone`` (the uploads it replaced are back in force, byte for byte) with the
ingest's reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from features.uploads import UploadRefused

log = logging.getLogger(__name__)

__all__ = ["UploadRefused", "ingest_or_undo", "ingest_settling", "list_uploads", "settle_uploads",
           "upload_file"]


def upload_file(settings: Any, content: bytes, name: str | None, *, sender: str, role: str,
                territories: frozenset[str] | None = None, actor: str = "cli",
                size: int | None = None, wait: bool = True) -> dict:
    """Validate ``content`` (the file ``name`` sent by ``sender``, of ``role``; may write
    ``territories`` and their EPCIs' communes, None: every territory); keep it when valid and
    ingest it: ``wait`` runs the ingest here and answers with its vintage (``status``
    ``accepted``, or ``refused`` when the ingest did not take it: undone), else queues an
    ``ingest`` run and answers at once (``status`` ``accepted``, ``job_id``; the upload's record
    says the vintage when that run is done). Refused: quarantined. The report: ``status``,
    ``problems``, ``out_of_scope``, ``vintage_id``, ``job_id``… ``size``: the file's size when
    ``content`` was not read (over the limit), else ``len(content)``.

    Raises :class:`UploadRefused` (audited, nothing kept) for a forged name or a file over
    ``settings.upload_max_bytes``."""
    from features.uploads import check_name

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
    report = _Upload(settings, content, name, sender, role, territories).run(actor, wait)
    _audit(settings, actor, role, {k: report.get(k) for k in (
        "id", "name", "sender", "status", "rows", "indicators", "territories", "replaces",
        "vintage_id", "job_id", "out_of_scope")} | {"problems": len(report["problems"])})
    return report


def list_uploads(settings: Any, sender: str | None = None) -> list[dict]:
    """Every upload, newest first (``sender``: only that sender's), without the pairs."""
    from features.uploads import UploadIndex

    records = [r for r in UploadIndex(settings).records()
               if sender is None or r["sender"] == sender]
    return [{k: v for k, v in r.items() if k != "pairs"} for r in reversed(records)]


def settle_uploads(settings: Any, report: Any, actor: str = "ingest") -> dict:
    """After an ingest (``report``, an :class:`features.ingest.IngestReport`): each upload
    still ``accepted`` when that ingest started (so in the uploads it read) becomes ``active``
    with the vintage made (or the one served, when nothing changed) if the ingest took its
    file, else ``undone`` with the ingest's reason, the uploads it replaced back in force.

    Returns ``{"settled": [{id, status, vintage_id, message}], "restored": [ids]}``:
    ``restored`` uploads are back in ``active/`` but not in the vintage just made (queue or
    run another ingest)."""
    from features.uploads import UploadIndex, locked

    started = getattr(report, "started_at", None)
    if started is None or not any(r["status"] == "accepted"
                                  for r in UploadIndex(settings).records()):
        return {"settled": [], "restored": []}
    settled, restored = [], []
    with locked(settings):
        index = UploadIndex(settings)
        records = index.records()
        waiting = [r for r in records if r["status"] == "accepted"
                   and r.get("accepted_at") and _time(r["accepted_at"]) < started]
        if not waiting:
            return {"settled": [], "restored": []}
        served = report.vintage_id or _served_vintage(settings)
        for record in waiting:
            outcome = next((s for s in report.sources if s.file == record["file"]
                            and s.status != "reused"), None)
            if outcome is not None and outcome.status == "ok":
                record.update(status="active", vintage_id=served,
                              message=f"in force: vintage {served}")
            else:
                restored += _undo(settings, records, record, report, outcome)
            settled.append({k: record.get(k) for k in ("id", "status", "vintage_id",
                                                        "message")})
        index.save(records)
        _remove_undone(settings, records, waiting)
    for item in settled:
        _audit(settings, actor, "system", {"id": item["id"], "status": item["status"],
                                           "vintage_id": item["vintage_id"],
                                           "message": item["message"]})
    return {"settled": settled, "restored": restored}


def ingest_or_undo(settings: Any, actor: str = "cli", **options: Any) -> Any:
    """Ingest (:func:`service.usecases.ingest.ingest`, ``options`` passed on); the report.

    An ingest that stops with an exception (instead of a failed report: a file that makes it
    run out of memory, say) undoes the uploads still waiting when it started, with that
    exception as their reason, and puts back what they replaced, then re-raises: else the
    upload that broke it would stay in force and break every later ingest."""
    from features.catalog import utcnow
    from features.ingest import IngestReport
    from service.usecases.ingest import ingest

    started = utcnow()
    try:
        return ingest(settings, actor=actor, **options)
    except Exception as exc:
        stopped = IngestReport(outcome="failed", vintage_id=None, sources=[], started_at=started,
                               message=f"the ingest stopped: {type(exc).__name__}: {exc}")
        try:
            settle_uploads(settings, stopped, actor=actor)
        except Exception:  # the ingest's own error is the one to report
            log.exception("the uploads the stopped ingest read could not be undone")
        raise


def ingest_settling(settings: Any, actor: str = "cli", **options: Any) -> tuple[Any, dict]:
    """Ingest (:func:`ingest_or_undo`, ``options`` passed on) and settle the uploads it read
    (:func:`settle_uploads`); when an undone upload put older ones back in force, ingest once
    more so that they are served again. ``(report, settled)``: the first ingest's report and
    what it settled."""
    from service.usecases.ingest import ingest

    report = ingest_or_undo(settings, actor=actor, **options)
    settled = settle_uploads(settings, report, actor=actor)
    if settled["restored"]:
        ingest(settings, actor=f"{actor} (uploads put back: "
                               f"{', '.join(settled['restored'])})")
    return report, settled


def _time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _undo(settings: Any, records: list[dict], record: dict, report: Any, outcome: Any
          ) -> list[str]:
    """Mark ``record`` undone and put the uploads it replaced back into ``active/`` (from their
    own copies, written before the index says so); the ids put back."""
    from features.uploads import raw_key, upload_store

    store = upload_store(settings)
    reason = (outcome.error if outcome is not None else report.message) or report.outcome
    back = []
    for old in records:
        if old["id"] in record.get("replaces", []) and old["status"] == "replaced":
            try:
                store.write_bytes(f"active/{old['file']}", store.read_bytes(raw_key(old)))
            except FileNotFoundError:
                log.error("upload %s: its copy %s is gone; it cannot be put back", old["id"],
                          raw_key(old))
                continue
            old.update(status="active" if old.get("vintage_id") else "accepted",
                       replaced_by=None)
            back.append(old["id"])
    problems = list(outcome.problems) if outcome is not None else []
    record.update(status="undone", problems=len(problems), ingest_problems=problems[:50],
                  message=f"the ingest did not take the file: {reason}"[:1000])
    log.warning("upload %s (%s) undone: %s", record["id"], record["name"], reason)
    return back


def _remove_undone(settings: Any, records: list[dict], settled: list[dict]) -> None:
    """Remove the files and copies of the undone uploads that nothing in force uses (after the
    index that no longer names them)."""
    from features.uploads import IN_FORCE, raw_key, upload_store

    store = upload_store(settings)
    files = {r["file"] for r in records if r["status"] in IN_FORCE}
    copies = {raw_key(r) for r in records if r.get("sha256") and r["status"] != "undone"}
    for record in settled:
        if record["status"] != "undone":
            continue
        if record["file"] not in files:
            store.delete(f"active/{record['file']}")
        if record.get("sha256") and raw_key(record) not in copies:
            store.delete(raw_key(record))


def _audit(settings: Any, actor: str, role: str, details: dict) -> None:
    from features.catalog import get_engine
    from service.audit import record

    record(get_engine(settings.database_url), event="upload", actor=actor, role=role,
           details=details, vintage_id=details.get("vintage_id"))


class _Upload:
    """One upload: its record, its incoming copy, its outcome."""

    def __init__(self, settings: Any, content: bytes, name: str, sender: str, role: str,
                 territories: frozenset[str] | None) -> None:
        from features.catalog import utcnow
        from features.uploads import active_name

        self.settings, self.content, self.territories = settings, content, territories
        now = utcnow()
        self.record: dict = {
            "id": f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}", "name": name,
            "sender": sender, "role": role, "status": "refused",
            "received_at": now.isoformat(), "accepted_at": None, "size": len(content),
            "file": active_name(sender, name), "rows": 0, "indicators": [],
            "territories": [], "pairs": [], "replaces": [], "replaced_by": None,
            "vintage_id": None, "job_id": None, "problems": 0, "quarantine": None}
        self.folder = Path(tempfile.mkdtemp(prefix="vigie-upload-"))
        self.incoming = self.folder / name
        self.fixed: list[dict] = []

    def run(self, actor: str, wait: bool) -> dict:
        from features.errors import Problem, SourceError
        from features.sources.contract import sha256_of

        try:
            self.incoming.write_bytes(self.content)
            self.record["sha256"] = sha256_of(self.incoming)
            try:
                self.validate()
                problems = self.accept()
                if problems:
                    from features.sources.city_indicators import SOURCE

                    raise SourceError(SOURCE.name, self.incoming, problems)
            except SourceError as exc:
                return self.refuse(exc, scope=self.out_of_scope(exc))
            except (ValueError, UnicodeError, OverflowError) as exc:  # unforeseen bad input
                log.exception("upload %s: the file could not be read", self.record["id"])
                return self.refuse(SourceError("city_indicators", self.incoming, [Problem(
                    self.incoming.name, "a CSV file in Vigie's shared format",
                    f"a file the reader refuses ({type(exc).__name__}: {exc})"[:300])]), [])
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
        return self.ingest_now(actor) if wait else self.queue(actor)

    # -- validation
    def writable(self) -> Callable[[str], bool] | None:
        if self.territories is None:
            return None
        from features.store import CubeStore
        from service.scopes import covered, epci_members

        mine = covered(self.territories, epci_members(CubeStore(self.settings)))
        return mine.__contains__

    def validate(self) -> None:
        """Parse the file: :class:`SourceError` with every problem (the ingest's, the
        scope's, overlaps with the files in force now)."""
        from features.errors import SourceError
        from features.sources.city_indicators import SOURCE
        from features.sources.contract import ParseContext
        from features.sources.insee_territories import load_territories
        from features.uploads import pairs_of

        territories = load_territories(self.settings.data_dir)[0]
        result = SOURCE.parse_checked(self.incoming, ParseContext(territories),
                                      writable=self.writable())
        pairs = pairs_of(result.frame)
        self.fixed = _data_dir_files(self.settings, territories)
        frame = result.frame
        self.record.update(
            rows=len(frame), indicators=sorted(frame["indicator"].unique()),
            territories=sorted(frame["territory"].unique()), pairs=sorted(pairs),
            warnings=list(result.warnings))
        problems = self.conflicts()[1]
        if problems:
            raise SourceError(SOURCE.name, self.incoming, problems)

    def conflicts(self, records: list[dict] | None = None) -> tuple[list[dict], list]:
        from features.uploads import IN_FORCE, UploadIndex, replaced_and_conflicts

        records = UploadIndex(self.settings).records() if records is None else records
        return replaced_and_conflicts(
            [r for r in records if r["status"] in IN_FORCE] + self.fixed,
            self.record["sender"], self.record["name"],
            {tuple(p) for p in self.record["pairs"]}, self.incoming.name)

    def out_of_scope(self, exc: Exception) -> list[str]:
        """The territory codes a refusal names as outside the sender's scope."""
        return [p.found.split("'")[1] for p in getattr(exc, "problems", [])
                if p.expected.startswith("a territory of this token's scope") and "'" in p.found]

    # -- outcomes
    def refuse(self, exc: Exception, scope: list[str]) -> dict:
        from features.errors import SourceError
        from features.uploads import UploadIndex, locked, quarantine

        problems = [p.to_dict() for p in getattr(exc, "problems", [])]
        report = exc.to_dict() if isinstance(exc, SourceError) else {"error": str(exc)}
        report["message"] = str(exc)
        self.record.update(status="refused", problems=len(problems), out_of_scope=scope,
                           quarantine=self.record["id"])
        quarantine(self.settings, self.record["id"], self.incoming.name, self.content, report)
        with locked(self.settings):  # the index after the objects it names
            index = UploadIndex(self.settings)
            index.save(index.records() + [self.record])
        log.warning("upload %s (%s) refused: %d problem(s)", self.record["id"],
                    self.record["name"], len(problems))
        return self.answer(problems, message=str(exc))

    def accept(self) -> list:
        """Under the uploads lock: what the file replaces, checked again against the index as
        it is now (problems: refused), then its copy and file written, the index last, the
        replaced files removed. The uploads in force change in one step for any ingest."""
        from features.catalog import utcnow
        from features.uploads import UploadIndex, locked, raw_key, upload_store

        store = upload_store(self.settings)
        with locked(self.settings):
            index = UploadIndex(self.settings)
            records = index.records()
            replaced, problems = self.conflicts(records)
            if problems:
                return problems
            store.write_bytes(raw_key(self.record), self.content)
            store.write_bytes(f"active/{self.record['file']}", self.content)
            ids = {r["id"] for r in replaced}
            for old in records:
                if old["id"] in ids:
                    old.update(status="replaced", replaced_by=self.record["id"])
            self.record.update(status="accepted", replaces=sorted(ids),
                               accepted_at=utcnow().isoformat())
            index.save(records + [self.record])
            for old in replaced:
                if old["file"] != self.record["file"]:
                    store.delete(f"active/{old['file']}")
        return []

    def queue(self, actor: str) -> dict:
        """The ingest that makes the vintage, queued for the scheduler leader."""
        from features.catalog import get_engine
        from features.uploads import UploadIndex, locked
        from service.jobs import enqueue

        engine = get_engine(self.settings.database_url)
        run_id = enqueue(engine, "ingest",
                         {"upload": self.record["id"]}, trigger="upload", requested_by=actor)
        self.record["job_id"] = run_id
        with locked(self.settings):
            index = UploadIndex(self.settings)
            index.save([r | {"job_id": run_id} if r["id"] == self.record["id"] else r
                        for r in index.records()])
        from service.jobs import lock_holder

        message = (f"accepted: ingest run {run_id} makes its vintage (GET /api/v1/uploads "
                   "gives this upload's status)")
        lease = lock_holder(engine)
        if not (lease and lease["alive"]):
            # serve --no-scheduler everywhere: nobody runs the queue; say it, don't let the
            # sender wait for a vintage that never comes.
            message += ("; no scheduler runs on this Vigie now: the run waits until one "
                        "starts ('serve' with its scheduler) or an operator runs "
                        "'python -m service jobs run ingest'")
        return self.answer([], previous=_served_vintage(self.settings), message=message)

    def ingest_now(self, actor: str) -> dict:
        """The command line: the ingest run here, the upload settled by it."""
        from features.uploads import UploadIndex

        previous = _served_vintage(self.settings)
        report, _ = ingest_settling(self.settings, actor=f"{actor} (upload {self.record['id']})")
        self.record = next(r for r in UploadIndex(self.settings).records()
                           if r["id"] == self.record["id"])
        if self.record["status"] == "undone":
            return self.answer(self.record.get("ingest_problems", []),
                               message=self.record["message"])
        return self.answer([], previous=previous, ingest={
            "outcome": report.outcome, "message": report.message})

    def answer(self, problems: list[dict], message: str = "", previous: str | None = None,
               ingest: dict | None = None) -> dict:
        out = {k: v for k, v in self.record.items() if k not in ("pairs", "ingest_problems")}
        status = "accepted" if self.record["status"] in ("active", "accepted") else "refused"
        out.update(status=status, upload_status=self.record["status"], problems=problems,
                   message=message or (
                       f"accepted: vintage {self.record['vintage_id']}"
                       if self.record["vintage_id"] else ""),
                   previous_vintage_id=previous, ingest=ingest,
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
