"""The audit journal: audit rows leave the request path, and no acknowledged row is lost.

An authenticated request's audit row is appended, as one JSON line, to this process's journal,
an append-only file under ``Settings.audit_journal_dir`` (``<home>/audit_journal``), before
its answer is sent. A background thread (one per process) ships the journal's new lines to the
database in batches (one transaction, one multi-row ``INSERT`` of up to :data:`BATCH_ROWS`),
then records how far it got in a ``.shipped`` file beside the journal.

What "acknowledged" guarantees
------------------------------
The line is written with ``os.write`` on an ``O_APPEND`` descriptor before the response
leaves: once a client has its answer, the row is in the kernel. Concurrent requests share
that write (group commit, :meth:`AuditJournal.append`): the first line of a batch makes its
thread the leader, which writes every line that joined meanwhile in one ``os.write`` once the
previous batch is written, then releases the others; a request alone writes its own line.
A crash of the process (exception, ``SIGKILL``, the OOM killer) loses nothing: the next start
of the API on the same home replays every line past the dead journal's shipped offset.

Against power loss or a kernel crash the policy is ``AUDIT_SYNC`` (``VIGIE_API_AUDIT_SYNC``):

* ``"write"`` (default): no fsync in the request path. Rows already shipped are as durable as
  the database; what power loss can take is the rows acknowledged and not yet shipped, i.e.
  at most the last :data:`SHIP_INTERVAL` (0.1 s: the shipper wakes when a line is written and
  ships at most that often, so that batches are large and cheap), and anything written while
  the database is unreachable until the shipper's next ``fdatasync`` (it syncs the journal
  after every failed attempt).
* ``"fsync"``: a request is answered only after an ``fdatasync`` of the journal covering its
  line; the leader syncs its batch after writing it, so concurrent requests share one write
  and one ``fdatasync``. Survives power loss, at the cost of one disk
  flush (about 5 ms here) in the latency of each authenticated request.

Exactly once
------------
Every line carries a random ``request_id``, unique in ``audit_log``; the insert skips ids
already there (``ON CONFLICT DO NOTHING``), so a batch shipped twice (a crash between the
database's commit and the shipped offset, a replay after a partial one) is stored once.

Many processes
--------------
Each process (each app, when one process builds several) has its own journal,
``<host>-<pid>-<random>.jsonl``, and holds an exclusive ``flock`` on it while alive. At start
(:func:`recover`, called by ``create_app`` through :func:`service.audit.init_app`) every
journal in the folder whose lock can be taken belongs to a dead process: its unshipped lines
are replayed and the file removed. A live process's journal is never touched. The lock is the
liveness test (not the pid, which can be reused), so the journal folder must be local to the
host or on a file system with working ``flock`` (the home usually is).

Readers
-------
Rows reach the database at most about :data:`SHIP_INTERVAL` after the answer. Readers of the
audit trail in this process call :func:`flush` first (``service.audit.query`` does, so
``/api/v1/audit`` and every test that reads rows right after a request see them). Rows of
another live process appear once its shipper ran (within about :data:`SHIP_INTERVAL`).

Segments
--------
A journal is a sequence of files: once the current one has grown past :data:`ROTATE_BYTES`,
the next batch starts a new one (``<name>.<n>.jsonl``, its own ``.shipped`` file and lock).
An earlier segment stays open and locked until its last row is shipped, then it is removed;
so under steady load, when rows are always waiting to be shipped, the disk holds the rows not
yet shipped plus at most one segment, instead of a file that grows as long as the process
lives. A crash leaves the segments of the dead process, each replayed like a journal. A
cleanly stopped process removes its (shipped) segments.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import errno
import fcntl
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from service.db import audit_log

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
SHIPPED_SUFFIX = ".shipped"
BATCH_ROWS = 500          # rows per INSERT (and per transaction)
SHIP_INTERVAL = 0.1       # seconds between two batches of one process: ≤ 10 commits/s, and
                          # batches of ~100 rows at 1,000 requests/s (~25 µs of CPU a row,
                          # ~65 µs at 20 rows, ~600 µs one by one, SQLite here)
ROTATE_BYTES = 16 << 20   # a segment larger than this is followed by a new one
SYNC_POLICIES = ("write", "fsync")
COLUMNS = tuple(c.name for c in audit_log.columns if c.name != "id")


class _RequestIds:
    """Request ids unique across processes without a system call each: 64 random bits drawn
    once per process (again after a fork) and a counter (os.urandom per request cost ~1 ms on
    this loaded machine's authenticated path, profiled)."""

    def __init__(self) -> None:
        self.reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = uuid.uuid4().hex[:16]
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"  # 32 characters, the column's size


new_request_id = _RequestIds()


def _encode(row: dict) -> bytes:
    """One line: JSON with every non-ASCII and control character escaped, so a value holding a
    newline can never split the line."""
    return (json.dumps(row, ensure_ascii=True, separators=(",", ":"), default=str)
            + "\n").encode("ascii")


def _decode(line: bytes) -> dict:
    row = json.loads(line)
    if not isinstance(row, dict) or not row.get("request_id"):
        raise ValueError("not an audit journal row")
    return row


def _db_row(row: dict) -> dict:
    """A journal row as the insert's parameters: every column present, ``at`` a datetime."""
    out = {name: row.get(name) for name in COLUMNS}
    at = out.get("at")
    out["at"] = dt.datetime.fromisoformat(at) if isinstance(at, str) else at
    return out


# ---------------------------------------------------------------------------- database side
def insert_rows(engine: sa.Engine, rows: list[dict]) -> int:
    """Insert journal rows in one transaction, skipping request ids already stored; how many
    rows were new.

    A batch the database refuses for a reason other than being unreachable (one bad value) is
    retried row by row and the refused rows are logged and dropped, so that one row can never
    stop the journal.
    """
    if not rows:
        return 0
    params = [_db_row(r) for r in rows]
    try:
        return _insert(engine, params)
    except sa.exc.DBAPIError as exc:
        if isinstance(exc, sa.exc.OperationalError) or exc.connection_invalidated:
            raise  # unreachable, locked: the caller retries the whole batch later
        if len(params) == 1:
            log.exception("audit row refused by the database, dropped: %r", rows[0])
            return 0
    done = 0
    for row in rows:
        done += insert_rows(engine, [row])
    return done


def _insert(engine: sa.Engine, params: list[dict]) -> int:
    dialect = engine.dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(audit_log).on_conflict_do_nothing(index_elements=["request_id"])
        with engine.begin() as conn:
            result = conn.execute(stmt, params)
        return max(result.rowcount, 0) if result.rowcount is not None else len(params)
    # Other databases: skip the ids already there, then a plain insert (same transaction).
    with engine.begin() as conn:
        ids = [p["request_id"] for p in params]
        known = set(conn.execute(sa.select(audit_log.c.request_id)
                                 .where(audit_log.c.request_id.in_(ids))).scalars())
        fresh = [p for p in params if p["request_id"] not in known]
        if fresh:
            conn.execute(audit_log.insert(), fresh)
    return len(fresh)


# ---------------------------------------------------------------------------- one journal
def _close_files(files: list[_File]) -> None:
    """Close every segment (each removed if everything in it was shipped)."""
    for segment in files:
        segment.close()


class _Batch:
    """Lines written together by their leader (the thread whose line came first). ``latch``
    is held until they are written (or failed); the others wait by taking it in turn (a plain
    lock: no condition to build or re-acquire)."""

    __slots__ = ("error", "latch", "lines", "rows")

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.rows: list[dict] = []
        self.error: BaseException | None = None
        self.latch = threading.Lock()
        self.latch.acquire()


def _follower_error(path: Path, error: BaseException) -> OSError:
    """The error a batch's leader met, as the OSError each other appender of the batch gets."""
    if isinstance(error, OSError):
        return OSError(error.errno, f"audit journal {path}: {error.strerror or error}")
    return OSError(errno.EIO, f"audit journal {path}: {error!r}")


class _File:
    """A journal's descriptors; closed (and the file removed when everything in it was
    shipped) by :meth:`AuditJournal.close`, or when the journal is garbage-collected."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.shipped_fd: int | None = None
        self.clean = True  # everything written was shipped

    def open(self) -> int:
        if self.fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while this process lives
                self.shipped_fd = os.open(self.path.with_suffix(SHIPPED_SUFFIX),
                                          os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                os.close(fd)
                raise
            self.fd = fd
        return self.fd

    def close(self, remove: bool = True) -> None:
        fd, self.fd = self.fd, None
        shipped_fd, self.shipped_fd = self.shipped_fd, None
        if fd is not None and remove and self.clean:
            self.path.unlink(missing_ok=True)
            self.path.with_suffix(SHIPPED_SUFFIX).unlink(missing_ok=True)
        for one in (shipped_fd, fd):  # the journal's last: its lock goes with it
            if one is not None:
                with contextlib.suppress(OSError):
                    os.close(one)


class AuditJournal:
    """This process's journal of one app (one home and one database).

    ``append`` (request path) writes one line; ``ship`` (background thread, or ``flush``)
    inserts the next batch; ``close`` ships what is left and removes the file.
    """

    def __init__(self, folder: Path, engine: sa.Engine, *, sync: str = "write") -> None:
        if sync not in SYNC_POLICIES:
            raise ValueError(f"AUDIT_SYNC must be one of {', '.join(SYNC_POLICIES)}; got "
                             f"{sync!r}")
        self.folder = Path(folder)
        self.engine = engine
        self.sync = sync
        self._reset()
        _SHIPPER.register(self)

    def _reset(self) -> None:
        """A fresh identity (at creation, and in the child after a fork)."""
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = self.folder / (self.name + SUFFIX)  # the current segment
        self._file = _File(self.path)
        # Every open segment, earlier ones (rows left to ship) first, the current one last.
        self._files: list[_File] = [self._file]
        self._finalizer = weakref.finalize(self, _close_files, self._files)
        self._lock = threading.Lock()          # the files, their offsets and the pending rows
        self._ship_lock = threading.Lock()     # one batch at a time
        # (bytes appended to the journal up to the line's end, its segment, end offset of the
        # line in that segment, row)
        self._pending: list[tuple[int, _File, int, dict]] = []
        self._written = 0                      # the current segment's size
        self._appended = 0                     # bytes ever appended
        self._write_lock = threading.Lock()    # one batch written at a time (its leader)
        self._open = _Batch()                  # the batch arriving lines join
        self._torn = False                     # the file ends with a torn line (see _write)
        self._closed = False
        self.writes = 0                        # batches written (tests, metrics)
        self.segments = 1                      # segments started (tests, metrics)
        self.batches = 0                       # batches shipped (tests, metrics)
        self.failures = 0                      # failed attempts in a row (the shipper's)
        self.retry_at = 0.0                    # monotonic time of the shipper's next attempt

    # -- request path
    def append(self, row: dict[str, Any]) -> None:
        """Write one row to the journal and return once its line is in the file (and, with
        ``sync="fsync"``, on disk): before the answer is sent. Raises OSError when the journal
        cannot be written (the caller falls back to a direct insert).

        Group commit: the line joins the open batch; the thread that opened it is the batch's
        leader, which waits for the previous batch's write, closes its own batch and writes
        every line in it with one ``os.write`` (and one ``fdatasync``), then wakes the others.
        Alone, a thread is its own leader (no other thread involved, one write as before);
        under contention one write serves everyone who arrived meanwhile.
        """
        line = _encode(row)
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "the audit journal is closed")
            batch = self._open
            batch.lines.append(line)
            batch.rows.append(row)
            leader = len(batch.lines) == 1
        if not leader:  # the batch's leader writes this line; wait for it (no lock held)
            batch.latch.acquire()
            batch.latch.release()  # the next one waiting on the batch goes on
            if batch.error is not None:
                raise _follower_error(self.path, batch.error)
            return
        try:
            with self._write_lock:  # the previous batch written first (lines in order)
                with self._lock:
                    self._open = _Batch()  # later arrivals form the next batch
                self._write(batch)
        except BaseException as exc:
            batch.error = exc
            raise  # the leader's own error as it is; the others get an OSError
        finally:
            batch.latch.release()
        _SHIPPER.wake()

    def _write(self, batch: _Batch) -> None:
        """One batch into the file (the caller holds ``_write_lock``): one ``os.write`` of all
        its lines (more only if the kernel takes part of it), ``fdatasync`` in fsync mode, then
        its rows become pending for the shipper. A write that fails half-way is cut back, so
        that no torn line is left for the next batch to be glued to."""
        data = b"".join(batch.lines)
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "the audit journal is closed")
            if self._written > ROTATE_BYTES:
                self._next_segment()
            fd = self._file.open()
            start = self._written
            segment = self._file
        if self._torn:  # a failed write could not be cut back: end its torn line first
            data = b"\n" + data
        view, done = memoryview(data), 0
        try:
            while done < len(data):
                done += os.write(fd, view[done:])
            if self.sync == "fsync":
                os.fdatasync(fd)
        except BaseException:
            if done:
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    self._torn = True
                    with self._lock:
                        self._written = start + done
            raise
        if self._torn:
            self._torn = False
            start += 1
        with self._lock:
            end = start
            for line, row in zip(batch.lines, batch.rows, strict=True):
                end += len(line)
                self._pending.append((self._appended + end - start, segment, end, row))
            self._written = end
            self._appended += end - start
            segment.clean = False
            self.writes += 1

    def _next_segment(self) -> None:
        """Start a new segment (the caller holds ``_lock`` and ``_write_lock``): the current one
        is closed and removed now if everything in it was shipped, else when its last row is
        (:meth:`ship`)."""
        done = self._file
        if done.clean:
            done.close()
            self._files.remove(done)
        self.path = self.folder / f"{self.name}.{self.segments}{SUFFIX}"
        self._file = _File(self.path)
        self._files.append(self._file)
        self._written = 0
        self._torn = False  # a torn line ends the previous segment; replay skips it
        self.segments += 1

    # -- shipping
    def ship(self, limit: int = BATCH_ROWS) -> int:
        """Insert the next batch of pending rows; how many were shipped (0: nothing pending)."""
        with self._ship_lock:
            with self._lock:
                batch = self._pending[:limit]
            if not batch:
                return 0
            insert_rows(self.engine, [entry[3] for entry in batch])
            with self._lock:
                del self._pending[:len(batch)]
                self.batches += 1
                shipped_to: dict[_File, int] = {}
                for _, segment, end, _ in batch:
                    shipped_to[segment] = end
                waiting = {entry[1] for entry in self._pending}
                for segment, end in shipped_to.items():
                    segment.clean = segment not in waiting
                    if segment.shipped_fd is not None:
                        os.pwrite(segment.shipped_fd, b"%020d\n" % end, 0)
                for segment in self._files[:-1]:  # earlier segments now fully shipped
                    if segment.clean:
                        segment.close()
                        self._files.remove(segment)
            return len(batch)

    @contextlib.contextmanager
    def hold(self):
        """Hold shipping while the block runs (the shipper and :meth:`flush` wait): tests, a
        maintenance window. Do not read the audit trail inside it from the same thread."""
        with self._ship_lock:
            yield self

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def segment_paths(self) -> list[Path]:
        """The open segments' files, oldest first (the current one last)."""
        with self._lock:
            return [segment.path for segment in self._files]

    def flush(self) -> None:
        """Ship every row appended before this call, in the caller's thread (raises when the
        database refuses)."""
        with self._lock:
            end = self._appended
        while True:
            with self._lock:
                if not self._pending or self._pending[0][0] > end:
                    return
            self.ship()

    def on_failure(self) -> None:
        """The database is unreachable: make what waits in the journal survive power loss.

        Under the shipping lock, which :meth:`close` (and :meth:`ship`, which removes shipped
        segments) takes too: a descriptor is never closed while it is being synced. Closed
        during the sync, the file (and its lock) would stay open until the sync returned, and
        a new start replaying the journals would skip it as a live process's."""
        with self._ship_lock:
            with self._lock:
                fds = [segment.fd for segment in self._files if segment.fd is not None]
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.fdatasync(fd)

    def close(self) -> None:
        """Ship what is left, close, and remove the journal (kept for the next start to replay
        when the database refuses)."""
        with self._lock:
            if self._closed:
                return
        try:
            self.flush()
        except Exception:
            log.exception("audit journal %s: rows left for the next start to replay", self.path)
        # Never under a batch being written, nor a sync of the shipper's (on_failure).
        with self._ship_lock, self._write_lock, self._lock:
            self._closed = True
            self._finalizer.detach()
            _close_files(self._files)

    def _reset_in_child(self) -> None:
        """After a fork: the parent's file, lock and pending rows stay the parent's (closing
        the child's copies of the descriptors leaves the parent's lock in place)."""
        self._finalizer.detach()
        for segment in self._files:
            segment.close(remove=False)
        self._reset()


# ---------------------------------------------------------------------------- the shipper
class _Shipper:
    """One daemon thread per process shipping every journal of the process."""

    def __init__(self) -> None:
        self._journals: weakref.WeakSet[AuditJournal] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, journal: AuditJournal) -> None:
        with self._lock:
            self._journals.add(journal)

    def journals(self) -> list[AuditJournal]:
        with self._lock:
            return list(self._journals)

    def wake(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()
        self._event.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="vigie-audit-shipper",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._event.wait(timeout=1.0)
            self._event.clear()
            started = time.monotonic()
            more = False
            for journal in self.journals():
                if journal.retry_at > started:
                    continue  # its database refused lately: others are not held up
                try:
                    more |= journal.ship() > 0 and journal.pending() > 0
                except Exception:
                    journal.failures += 1
                    if journal.failures in (1, 10) or journal.failures % 100 == 0:
                        log.exception("audit journal %s: shipping failed (%d times); the rows "
                                      "stay in the journal and are retried", journal.path,
                                      journal.failures)
                    journal.on_failure()
                    journal.retry_at = started + min(0.1 * 2 ** min(journal.failures, 9), 30.0)
                else:
                    journal.failures, journal.retry_at = 0, 0.0
            if more:
                self._event.set()
            time.sleep(max(0.0, SHIP_INTERVAL - (time.monotonic() - started)))

    def after_fork_in_child(self) -> None:
        journals = list(self._journals)
        self._journals = weakref.WeakSet()
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._thread = None
        for journal in journals:
            journal._reset_in_child()
            self._journals.add(journal)


_SHIPPER = _Shipper()
os.register_at_fork(after_in_child=_SHIPPER.after_fork_in_child)


def flush(engine: sa.Engine | None = None) -> None:
    """Ship every row this process's journals hold (those of ``engine`` only, when given)."""
    for journal in _SHIPPER.journals():
        if engine is None or journal.engine.url == engine.url:
            journal.flush()


@atexit.register
def _close_all() -> None:
    for journal in _SHIPPER.journals():
        journal.close()


# ---------------------------------------------------------------------------- recovery
def recover(folder: Path, engine: sa.Engine) -> int:
    """Replay the journals of dead processes in ``folder`` into ``engine`` and remove them;
    how many rows were new in the database. A journal whose lock is held (a live process,
    or another app of this process) is left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    replayed = 0
    for path in sorted(folder.glob("*" + SUFFIX)):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # replayed by another process meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # alive
            if os.fstat(fd).st_nlink == 0:
                continue  # replayed and removed by another process before we got the lock
            replayed += _replay(path, fd, engine)
            path.with_suffix(SHIPPED_SUFFIX).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return replayed


def _replay(path: Path, fd: int, engine: sa.Engine) -> int:
    size = os.fstat(fd).st_size
    start = _shipped_offset(path.with_suffix(SHIPPED_SUFFIX))
    if start > size:
        start = 0  # truncated after the offset was read: replay it all (ids make it harmless)
    data = os.pread(fd, size - start, start) if size > start else b""
    rows, bad = [], 0
    for number, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            rows.append(_decode(line))
        except ValueError:
            bad += 1  # torn last line of a crash in the middle of a write (never acknowledged)
            log.warning("audit journal %s: unreadable line %d after offset %d skipped: %r",
                        path, number + 1, start, line[:200])
    new = 0
    for i in range(0, len(rows), BATCH_ROWS):
        new += insert_rows(engine, rows[i:i + BATCH_ROWS])
    log.warning("audit journal %s of a stopped process: %d rows replayed (%d new, %d were "
                "already in the database, %d unreadable lines)", path.name, len(rows), new,
                len(rows) - new, bad)
    return new


def _shipped_offset(path: Path) -> int:
    try:
        return int(path.read_bytes().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return 0
