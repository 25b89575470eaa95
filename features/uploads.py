"""City files sent through the service: their names, their checks, the index of uploads and
which accepted upload replaces which.

A city sends a file in the shared format (:mod:`features.sources.city_indicators`) with
``POST /api/v1/uploads`` or ``python -m service upload FILE``. Before a byte of it is read as
data, its **name** is checked (:func:`check_name`: a plain ``.csv`` file name of at most
:data:`MAX_NAME_CHARS` letters, digits, ``.``, ``_`` or ``-``; no folder, no control character)
and its **size** (``Settings.upload_max_bytes``). It is then validated as the ingest validates
a city file, plus one rule: every territory must be one the sender may write (its token's
scope), reported with the line it first appears on.

Where things are kept (:func:`upload_store`: ``$VIGIE_HOME/uploads``, or ``uploads/`` of the
object store named by ``VIGIE_STORE_URL``, so that every host's ingest reads the same): an
accepted file is written to ``active/`` as ``upload-<sender>-<digest>-<name>``
(:func:`active_name`), which every ingest reads beside the data directory (so the file need not
be copied there, and stays across ingests), and to ``raw/`` (its own copy, to put it back if an
upload replacing it is undone); the ingest keeps it in its raw store too (every version a
vintage read). A refused file goes to ``quarantine/<id>/`` with its report (capped:
:func:`cap_quarantine`). ``index.json`` lists every upload (:class:`UploadIndex`), written after
the objects it names.

**One lock** (:func:`locked`, a row of ``service_locks``): the uploads in force change (an
upload accepted or undone, a prune) and an ingest copies them (:func:`snapshot`, called through
:func:`uploaded` by every ingest) one at a time, across processes and hosts.

**A newer file replaces an older one** (:func:`replaced_and_conflicts`) when it comes from the
same sender under the same name, or when it carries every (indicator, territory) pair the
older one carries (the same city sending the same indicators again, under any name): the older
file leaves ``active/`` (it stays in ``raw/`` and the index, ``replaced_by`` the newer one,
until :func:`prune`), so a value is never read from two files. A newer file that overlaps an
older one only in part (some of its pairs, not all) is refused, naming the older upload: the
city sends a file covering it, or the same name (``--as``) to replace it whole.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from features.errors import Problem
from features.settings import Settings
from features.storage import objects

log = logging.getLogger(__name__)

#: The ingest reads the accepted uploads as files of this prefix (never a data-directory name).
UPLOAD_PREFIX = "upload-"
#: The source whose files a city may upload (the shared format).
UPLOADED_SOURCE = "city_indicators"
#: Longest file name accepted (characters, extension included).
MAX_NAME_CHARS = 100
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.csv", re.IGNORECASE)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SLUG = re.compile(r"[^a-z0-9]+")


class UploadRefused(ValueError):
    """An upload refused before its content is validated (name, size, type): nothing kept.

    ``kind``: ``name``, ``size`` or ``type``; ``details``: what helps fix it."""

    def __init__(self, kind: str, message: str, **details) -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details


def check_name(name: str | None) -> str:
    """The file name an upload is kept under, checked: raises :class:`UploadRefused` (kind
    ``name``) for an empty name, a control character, a folder or ``..`` (path traversal), a
    name over :data:`MAX_NAME_CHARS` characters, or anything but a plain ``.csv`` name."""
    name = "" if name is None else str(name)
    expected = (f"a plain .csv file name of at most {MAX_NAME_CHARS} characters: letters, "
                "digits, '.', '_' or '-', starting with a letter or a digit")

    def refuse(found: str) -> UploadRefused:
        return UploadRefused("name", f"file name refused: expected {expected}, found {found}",
                             expected=expected, found=found)

    if not name.strip():
        raise refuse("an empty name")
    control = _CONTROL.search(name)
    if control:
        raise refuse(f"a control character U+{ord(control.group()):04X}")
    if len(name) > MAX_NAME_CHARS:
        raise refuse(f"a name of {len(name)} characters")
    if "/" in name or "\\" in name or ".." in name:
        raise refuse(f"a path ({name!r}): no folder, no '..'")
    if not NAME_PATTERN.fullmatch(name):
        raise refuse(repr(name))
    return name


def sender_slug(sender: str) -> str:
    """The sender's name as it appears in its files' names (lower-case letters and digits,
    ``-`` between words, at most 40 characters; ``sender`` when nothing is left)."""
    return _SLUG.sub("-", sender.lower()).strip("-")[:40].strip("-") or "sender"


def active_name(sender: str, name: str) -> str:
    """The name under which the ingest reads the accepted upload ``name`` of ``sender``:
    ``upload-<sender's slug>-<digest>-<name>``. The slug keeps it readable; the digest (10 hex
    digits of the SHA-256 of the exact sender and name) keeps it unique: slugs collide
    ("Ville A" and "ville-a"), and so do slug and name joined by "-" ("ville-a" sending
    "b-c.csv", "ville-a-b" sending "c.csv"), and one file in ``active/`` would then silently
    overwrite another sender's."""
    digest = hashlib.sha256(f"{sender}\x00{name}".encode()).hexdigest()[:10]
    return f"{UPLOAD_PREFIX}{sender_slug(sender)}-{digest}-{name}"


def upload_store(settings: Settings) -> objects.ObjectStore:
    """Where the uploads are kept: ``$VIGIE_HOME/uploads`` (the default, layout unchanged), or
    ``uploads/`` under ``VIGIE_STORE_URL`` (an object store every host of a Vigie shares).

    Keys: ``index.json`` (:class:`UploadIndex`), ``active/<file>`` (the uploads in force, read
    by every ingest), ``raw/<sha256>-<file>`` (each accepted version, to undo a replacement),
    ``quarantine/<id>/`` (a refused file and its ``report.json``)."""
    if settings.store_url:
        return objects.for_settings(settings).child("uploads")
    return objects.LocalStore(settings.uploads_dir)


def active_files(settings: Settings) -> list[str]:
    """The names of the accepted uploads in force (the index's ``active`` and ``accepted``
    records), in name order."""
    return sorted({r["file"] for r in UploadIndex(settings).in_force()
                   if NAME_PATTERN.fullmatch(r["file"])})


def snapshot(settings: Settings) -> list[Path]:
    """The uploads in force, copied under the uploads lock into a local folder of this process
    (:func:`locked`): an ingest reads the set as one upload left it, never a replacement half
    made, wherever the uploads are kept (local folder or object store)."""
    with locked(settings):
        names = active_files(settings)
        if not names:
            return []
        store = upload_store(settings)
        folder = Path(tempfile.mkdtemp(prefix="vigie-uploads-"))
        _SNAPSHOTS.append((time.monotonic(), folder))
        paths = []
        for name in names:
            try:
                data = store.read_bytes(f"active/{name}")
            except FileNotFoundError:
                log.error("upload %s is in force in the index but not in active/: not read",
                          name)
                continue
            (folder / name).write_bytes(data)
            paths.append(folder / name)
    _forget_old_snapshots()
    return paths


#: (made at, folder) of the snapshots this process made; a snapshot is read by the ingest that
#: asked for it within seconds, removed an hour later (or when the process ends).
_SNAPSHOTS: list[tuple[float, Path]] = []
SNAPSHOT_HOURS = 1.0


def _forget_old_snapshots(everything: bool = False) -> None:
    now = time.monotonic()
    for made, folder in list(_SNAPSHOTS):
        if everything or now - made > SNAPSHOT_HOURS * 3600:
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(ValueError):
                _SNAPSHOTS.remove((made, folder))


atexit.register(_forget_old_snapshots, True)


def uploaded(settings: Settings, source) -> list[Path]:
    """The files of ``source`` the ingest reads beside the data directory: the accepted
    uploads in force for the city source (:data:`UPLOADED_SOURCE`, a :func:`snapshot`), none
    for the others."""
    return snapshot(settings) if source.name == UPLOADED_SOURCE else []


#: The row of ``service_locks`` (the table of the scheduler lease) that uploads and ingests
#: take: one per database, so every host and process sharing a Vigie waits on the same one.
LOCK_NAME = "uploads"
#: Seconds the lock is held at most (a holder that died frees it then); what runs under it
#: (an index write, copies of the files in force) lasts well under a second.
LOCK_TTL = 60.0
#: Seconds a caller waits for the lock before giving up.
LOCK_WAIT = 180.0


class UploadsBusy(RuntimeError):
    """The uploads lock stayed taken longer than :data:`LOCK_WAIT` seconds."""


@contextlib.contextmanager
def locked(settings: Settings, wait: float | None = None) -> Iterator[None]:
    """The uploads lock: a row of ``service_locks`` taken by compare-and-set, as the scheduler
    lease is. Held while the uploads in force change (an upload accepted, undone, pruned) and
    while an ingest copies them (:func:`snapshot`), so neither ever sees the other half-way,
    on one host or several sharing the database. Raises :class:`UploadsBusy` after ``wait``
    seconds (default :data:`LOCK_WAIT`)."""
    from features.catalog import get_engine
    from features.storage.leases import release_lock, try_lock

    engine = get_engine(settings.database_url)
    holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"[:128]
    deadline = time.monotonic() + (LOCK_WAIT if wait is None else wait)
    pause = 0.02
    while not try_lock(engine, holder, LOCK_TTL, LOCK_NAME):
        if time.monotonic() > deadline:
            raise UploadsBusy(f"the uploads lock stayed taken over {LOCK_WAIT:.0f} s; "
                              "try again")
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
    try:
        yield
    finally:
        release_lock(engine, holder, LOCK_NAME)


class UploadIndex:
    """``index.json`` of the uploads' store (:func:`upload_store`): one record per upload,
    newest last. A record: ``id``, ``name``, ``sender``, ``role``, ``status``
    (``accepted``: in ``active/``, waiting for the ingest that makes its vintage; ``active``:
    in force, ``vintage_id`` the vintage it made; ``replaced``; ``undone``: the ingest did not
    take it, ``message`` says why; ``refused``), ``received_at``, ``accepted_at``, ``size``,
    ``sha256``, ``file`` (its name in ``active/``), ``rows``, ``indicators``,
    ``territories``, ``pairs`` ((indicator, territory) it carries), ``replaces`` /
    ``replaced_by`` (ids), ``job_id`` (the ingest run queued for it), ``problems`` (how many),
    ``quarantine`` (the folder of a refused file). Written whole in one object (one ``PUT``
    on an object store), after the objects it names."""

    KEY = "index.json"

    def __init__(self, settings: Settings) -> None:
        self.store = upload_store(settings)

    def records(self) -> list[dict]:
        try:
            data = self.store.read_bytes(self.KEY)
        except FileNotFoundError:
            return []
        return json.loads(data.decode("utf-8"))["uploads"]

    def save(self, records: list[dict]) -> None:
        text = json.dumps({"uploads": records}, ensure_ascii=False, indent=1)
        self.store.write_bytes(self.KEY, text.encode("utf-8"))

    def in_force(self) -> list[dict]:
        """The records whose file is in ``active/`` (in force, or waiting for its ingest)."""
        return [r for r in self.records() if r["status"] in IN_FORCE]

    # The name hb2's code and tests use.
    active = in_force


#: The statuses of an upload whose file is in ``active/``.
IN_FORCE = ("active", "accepted")


def raw_key(record: dict) -> str:
    """The key of an accepted upload's own copy (its content, to put it back on an undo)."""
    return f"raw/{record['sha256']}-{record['file']}"


def quarantine(settings: Settings, upload_id: str, name: str, content: bytes,
               report: dict) -> str:
    """Keep a refused file and its report under ``quarantine/<upload_id>/`` (the file first,
    the report last), then drop the oldest folders beyond the caps (:func:`cap_quarantine`).
    Returns the folder's name."""
    store = upload_store(settings)
    store.write_bytes(f"quarantine/{upload_id}/{name}", content)
    store.write_bytes(f"quarantine/{upload_id}/report.json",
                      json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8"))
    cap_quarantine(settings)
    return upload_id


def _quarantine_sizes(store: objects.ObjectStore) -> list[tuple[str, int]]:
    """(folder, bytes) of every quarantined upload, oldest first (ids begin with the time)."""
    out = []
    for folder in store.names("quarantine"):
        key = f"quarantine/{folder}"
        if store.remote:
            size = sum(int(info.get("size") or 0) for info in store.find(key).values())
        else:
            size = sum(p.stat().st_size for p in store.path(key).iterdir() if p.is_file())
        out.append((folder, size))
    return out


def cap_quarantine(settings: Settings, dry_run: bool = False) -> list[str]:
    """Drop the oldest quarantined uploads until at most ``upload_quarantine_max_files``
    folders of at most ``upload_quarantine_max_bytes`` in all are left (0: no cap); their
    index records go with them. The names of the folders dropped."""
    store = upload_store(settings)
    folders = _quarantine_sizes(store)
    max_files = settings.upload_quarantine_max_files
    max_bytes = settings.upload_quarantine_max_bytes
    total = sum(size for _, size in folders)
    dropped = []
    for folder, size in folders:
        over_count = max_files and len(folders) - len(dropped) > max_files
        over_bytes = max_bytes and total > max_bytes
        if not (over_count or over_bytes):
            break
        dropped.append(folder)
        total -= size
    if dropped and not dry_run:
        with locked(settings):
            index = UploadIndex(settings)
            gone = set(dropped)
            index.save([r for r in index.records()
                        if r["status"] in IN_FORCE or r.get("quarantine") not in gone])
        for folder in dropped:
            store.remove_tree(f"quarantine/{folder}")
        log.info("uploads: %d quarantined file(s) dropped (caps: %s files, %s bytes)",
                 len(dropped), max_files, max_bytes)
    return dropped


def prune(settings: Settings, dry_run: bool = False) -> dict:
    """The uploads' part of ``python -m service prune``: the quarantine capped
    (:func:`cap_quarantine`), and the replaced uploads' own copies (``raw/``) and records
    dropped (what they served stays in the ingest's raw store for the vintages that read
    them, and the audit log keeps every upload); the records of undone uploads beyond the
    newest ``upload_quarantine_max_files``. What was (or would be) dropped."""
    quarantined = cap_quarantine(settings, dry_run=dry_run)
    store = upload_store(settings)
    with contextlib.nullcontext() if dry_run else locked(settings):
        index = UploadIndex(settings)
        records = index.records()
        # A replaced upload is what an undo puts back while the upload that replaced it waits
        # for its ingest: kept until that one is settled.
        waiting = {r["id"] for r in records if r["status"] == "accepted"}
        dropped = {r["id"]: r for r in records if r["status"] == "replaced"
                   and r.get("replaced_by") not in waiting}
        undone = [r["id"] for r in records if r["status"] == "undone"]
        cap = settings.upload_quarantine_max_files
        undone = undone[:-cap] if cap else []  # the newest kept, as refused files are
        dropped |= {r["id"]: r for r in records if r["id"] in set(undone)}
        needed = {raw_key(r) for r in records if r["id"] not in dropped and r.get("sha256")}
        doomed = sorted({raw_key(r) for r in dropped.values() if r.get("sha256")} - needed)
        if dropped and not dry_run:
            index.save([r for r in records if r["id"] not in dropped])
            for key in doomed:
                store.delete(key)
    return {"quarantine_dropped": quarantined,
            "replaced_dropped": sorted(i for i in dropped if i not in set(undone)),
            "undone_dropped": undone,
            "raw_copies_dropped": len(doomed), "dry_run": dry_run}


def pairs_of(frame) -> set[tuple[str, str]]:
    """The (indicator, territory) pairs of a validated city file's tidy frame."""
    return set(map(tuple, frame[["indicator", "territory"]].drop_duplicates()
                   .itertuples(index=False, name=None)))


def replaced_and_conflicts(active: Iterable[dict], sender: str, name: str,
                           pairs: set[tuple[str, str]], file: str
                           ) -> tuple[list[dict], list[Problem]]:
    """Which uploads in force a new accepted file replaces (same sender and name, or every
    pair of theirs in the new file), and one problem per upload it overlaps only in part
    (module docstring).

    A record with ``fixed`` set (a data-directory file, the operator's) is never replaced:
    any overlap with it is a problem."""
    replaced, problems = [], []
    for record in active:
        theirs = {tuple(p) for p in record["pairs"]}
        fixed = record.get("fixed", False)
        same = record["sender"] == sender and record["name"] == name
        if not fixed and (same or (theirs and theirs <= pairs)):
            replaced.append(record)
            continue
        shared = sorted(theirs & pairs)
        if not shared:
            continue
        indicator, territory = shared[0]
        expected = (f"no (indicator, territory) of the data directory's {record['name']} "
                    "(the operator's file; ask them to remove it)" if fixed else
                    f"every (indicator, territory) of upload {record['id']} ('{record['name']}' "
                    f"of {record['sender']}, {len(theirs)} pairs) or none of them; to replace "
                    "it whole, send the file under the same name")
        problems.append(Problem(file, expected, f"{len(shared)} of them, e.g. '{indicator}' "
                                f"for '{territory}' (a value would come from two files)",
                                column="indicator"))
    return replaced, problems
