"""The audit journal (service.audit_journal): an authenticated request's audit row is appended
to this process's journal before the answer is sent and shipped to the database in batches;
a crash loses no answered request's row and a row shipped twice is stored once; values with
control characters keep one line per row; several apps (processes) on one home and one
database each have their own journal. SQLite and, with VIGIE_TEST_DATABASE_URL, PostgreSQL.

No cube is needed: every authenticated request is audited, a 404 too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent


def _settings(tmp_path: Path, db_url: str):
    from features.settings import Settings

    return Settings.from_env(home=str(tmp_path / "home"), data_dir=str(tmp_path),
                             database_url=db_url)


def _app(settings, **config):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": settings, "RATELIMIT_ENABLED": False,
                       **config})


def _token(settings, name: str = "reader") -> str:
    from features.catalog import get_engine
    from service.auth import create_token

    return create_token(get_engine(settings.database_url), name, "admin")


def _journal(app):
    return app.extensions["vigie"].extra["audit_journal"]


def _stored(settings, actor: str) -> list[dict]:
    """The rows in the database as they are (no journal shipped first)."""
    from features.catalog import get_engine
    from service.db import audit_log

    with get_engine(settings.database_url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            sa.select(audit_log).where(audit_log.c.actor == actor).order_by(audit_log.c.id))]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_rows_reach_the_database_in_batches(tmp_path, db_url):
    from features.catalog import get_engine
    from service.audit import query

    settings = _settings(tmp_path, db_url)
    app = _app(settings)
    token = _token(settings)
    journal = _journal(app)
    engine = get_engine(settings.database_url)
    client = app.test_client()
    inserts: list[int] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_LOG"):
            inserts.append(len(parameters) if executemany else 1)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        with journal.hold():  # the shipper waits: the rows pile up in the journal
            for i in range(25):
                resp = client.get(f"/api/v1/nope?i={i}",
                                  headers={"Authorization": f"Bearer {token}"})
                assert resp.status_code == 404
            assert len(_lines(journal.path)) == 25  # written before each answer
            assert _stored(settings, "reader") == []  # not in the request path
        rows, total = query(engine, actor="reader", limit=100)  # the read path ships first
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert total == 25
    assert [r["query"] for r in rows] == [f"i={i}" for i in reversed(range(25))]
    assert {r["status"] for r in rows} == {404} and {r["event"] for r in rows} == {"request"}
    assert "request_id" not in rows[0]  # the API's rows are unchanged
    # One batch: one INSERT statement carrying the 25 rows (however the driver spells it).
    assert journal.batches == 1 and sum(inserts) in (1, 25) and len(inserts) == 1
    shipped = int(journal.path.with_suffix(".shipped").read_bytes())
    assert shipped == journal.path.stat().st_size
    stored = _stored(settings, "reader")
    assert len({r["request_id"] for r in stored}) == 25
    assert all(r["at"] is not None for r in stored)


CRASH = textwrap.dedent("""
    import os, signal, sys
    from features.settings import Settings
    from service.app import create_app

    home, data, url, token = sys.argv[1:5]
    settings = Settings.from_env(home=home, data_dir=data, database_url=url)
    app = create_app({"TESTING": True, "SETTINGS": settings, "RATELIMIT_ENABLED": False})
    journal = app.extensions["vigie"].extra["audit_journal"]
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    with journal.hold():
        for i in range(5):
            client.get(f"/api/v1/nope?i={i}", headers=auth)
    journal.flush()  # shipped, and the shipped offset recorded
    # As if the process had died between the database's commit and the offset's write:
    journal.path.with_suffix(".shipped").write_bytes(b"0\\n")
    held = journal.hold()
    held.__enter__()  # never shipped again
    for i in range(5, 12):
        client.get(f"/api/v1/nope?i={i}", headers=auth)
    print(journal.path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_crash_loses_nothing_and_duplicates_nothing(tmp_path, db_url):
    from service.audit import query

    settings = _settings(tmp_path, db_url)
    token = _token(settings)
    proc = subprocess.run([sys.executable, "-c", CRASH, str(settings.home), str(tmp_path),
                           db_url, token], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    journal = Path(proc.stdout.strip())
    assert journal.parent == settings.audit_journal_dir and journal.exists()
    assert len(_lines(journal)) == 12  # every answered request is in the journal
    assert len(_stored(settings, "reader")) == 5  # only the first batch reached the database
    with journal.open("ab") as f:  # a write the crash cut short (never answered)
        f.write(b'{"request_id":"torn","at":"2026')

    app = _app(settings)  # the next start replays the dead process's journal
    assert not journal.exists() and not journal.with_suffix(".shipped").exists()
    stored = _stored(settings, "reader")
    assert sorted(r["query"] for r in stored) == sorted(f"i={i}" for i in range(12))
    assert len({r["request_id"] for r in stored}) == 12
    assert query(app.extensions["vigie"].engine, actor="reader")[1] == 12
    _app(settings)  # a second start finds nothing left to replay
    assert len(_stored(settings, "reader")) == 12


def test_control_characters_keep_one_line_per_row(tmp_path, db_url):
    from service.audit import query

    settings = _settings(tmp_path, db_url)
    app = _app(settings)
    token = _token(settings, name="cellule crise nord é")
    journal = _journal(app)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    with journal.hold():
        client.get("/api/v1/territories/ab%00cd%0A", headers=auth)
        client.get("/api/v1/nope", headers=auth,
                   environ_overrides={"QUERY_STRING": "x=a\nb\x00c\x7fd&y=\r\n"})
        lines = journal.path.read_bytes().split(b"\n")
    assert len(lines) == 3 and lines[-1] == b""  # two rows, two lines
    assert all(32 <= byte < 127 for line in lines for byte in line)  # escaped JSON
    rows, _ = query(app.extensions["vigie"].engine, actor="cellule crise nord é")
    assert [r["path"] for r in reversed(rows)] == ["/api/v1/territories/ab%00cd%0A",
                                                   "/api/v1/nope"]
    assert rows[0]["query"] == "x=a%0Ab%00c%7Fd&y=%0D%0A"


def test_two_apps_on_one_home_and_one_database(tmp_path, db_url):
    """Two processes (here two apps, one process: the journal lock is per open file) each
    write their own journal; starting one never replays the other's live journal."""
    from service.audit import query

    settings = _settings(tmp_path, db_url)
    first = _app(settings)
    token = _token(settings)
    auth = {"Authorization": f"Bearer {token}"}
    with _journal(first).hold():
        for i in range(3):
            first.test_client().get(f"/api/v1/nope?app=1&i={i}", headers=auth)
        second = _app(settings)  # its start replays dead journals only
        assert _stored(settings, "reader") == []
        assert _journal(first).path.exists()
        for i in range(4):
            second.test_client().get(f"/api/v1/nope?app=2&i={i}", headers=auth)
        assert _journal(first).path != _journal(second).path
        assert sorted(p.name for p in settings.audit_journal_dir.glob("*.jsonl")) == sorted(
            [_journal(first).path.name, _journal(second).path.name])
    rows, total = query(second.extensions["vigie"].engine, actor="reader")
    assert total == 7
    assert sorted(r["query"] for r in rows) == sorted(
        [f"app=1&i={i}" for i in range(3)] + [f"app=2&i={i}" for i in range(4)])
    # A cleanly closed journal, everything shipped, is removed; the other stays.
    _journal(first).close()
    assert not _journal(first).path.exists() and _journal(second).path.exists()
    assert len(_stored(settings, "reader")) == 7


def test_fsync_policy_and_unwritable_journal(tmp_path, db_url):
    from service.audit import query

    settings = _settings(tmp_path, db_url)
    with pytest.raises(ValueError, match="AUDIT_SYNC"):
        _app(settings, AUDIT_SYNC="sometimes")
    app = _app(settings, AUDIT_SYNC="fsync")
    token = _token(settings)
    app.test_client().get("/api/v1/nope", headers={"Authorization": f"Bearer {token}"})
    assert len(_lines(_journal(app).path)) == 1
    assert query(app.extensions["vigie"].engine, actor="reader")[1] == 1

    # A journal that cannot be written: the row goes straight to the database.
    other = _settings(tmp_path / "other", db_url)
    other.home.mkdir(parents=True)
    other.audit_journal_dir.write_text("not a folder")
    app = _app(other)
    token = _token(other, name="direct")
    app.test_client().get("/api/v1/nope?direct=1", headers={"Authorization": f"Bearer {token}"})
    assert [r["query"] for r in _stored(other, "direct")] == ["direct=1"]


def test_a_shipped_journal_moves_to_a_new_segment_past_its_size_limit(tmp_path, db_url,
                                                                      monkeypatch):
    from service import audit_journal
    from service.audit import query

    monkeypatch.setattr(audit_journal, "ROTATE_BYTES", 1000)
    settings = _settings(tmp_path, db_url)
    app = _app(settings)
    token = _token(settings)
    journal = _journal(app)
    for i in range(12):
        with journal.hold():
            app.test_client().get(f"/api/v1/nope?i={i}",
                                  headers={"Authorization": f"Bearer {token}"})
        journal.flush()
        assert journal.path.stat().st_size < 1000 + 400
        # everything shipped: the previous segment was removed when the next one started
        assert list(settings.audit_journal_dir.glob("*.jsonl")) == [journal.path]
    assert journal.segments > 2
    assert int(journal.path.with_suffix(".shipped").read_bytes()) == journal.path.stat().st_size
    assert query(app.extensions["vigie"].engine, actor="reader")[1] == 12


def test_segments_rotate_under_steady_load(tmp_path, db_url, monkeypatch):
    # Rows arrive while every batch is shipped, so some are always waiting: the journal must
    # still move on to new segments and remove each one once its rows are shipped (a single
    # file truncated only when nothing waits grew as long as the process lived).
    from features.catalog import get_engine
    from service import audit_journal
    from service.audit_journal import AuditJournal

    monkeypatch.setattr(audit_journal, "ROTATE_BYTES", 2000)
    settings = _settings(tmp_path, db_url)
    _app(settings)  # the schema
    folder = tmp_path / "steady"
    journal = AuditJournal(folder, get_engine(settings.database_url))
    audit_journal._SHIPPER._journals.discard(journal)  # shipped here only, batch by batch
    rows = _request_rows(410, "steady")  # 10, then 50 × 8
    for row in rows[:10]:
        journal.append(row)
    sizes, open_segments = [], []
    for i in range(10, len(rows), 8):
        for row in rows[i:i + 8]:
            journal.append(row)
        journal.ship(limit=8)  # as many as arrived: 10 always wait
        assert journal.pending() == 10
        sizes.append(sum(p.stat().st_size for p in folder.glob("*.jsonl")))
        open_segments.append(len(journal.segment_paths()))
    history = sum(len(audit_journal._encode(row)) for row in rows)
    assert journal.segments > 10
    # on disk: the segments holding the rows still waiting (a few), never the whole history
    assert max(open_segments) <= 3
    assert max(sizes) < 4 * 2000 < history / 8
    journal.close()
    assert list(folder.glob("*")) == []
    assert sorted(r["query"] for r in _stored(settings, "reader")) == \
        sorted(r["query"] for r in rows)


def test_a_crash_with_unshipped_segments_replays_each_once(tmp_path, db_url, monkeypatch):
    from features.catalog import get_engine
    from service import audit_journal
    from service.audit_journal import AuditJournal, recover

    monkeypatch.setattr(audit_journal, "ROTATE_BYTES", 1500)
    settings = _settings(tmp_path, db_url)
    _app(settings)
    engine = get_engine(settings.database_url)
    folder = tmp_path / "crashed"
    journal = AuditJournal(folder, engine)
    audit_journal._SHIPPER._journals.discard(journal)  # shipped here only
    rows = _request_rows(60, "crash")
    for row in rows[:25]:
        journal.append(row)
    journal.ship(limit=10)  # part of the first segment shipped before the crash
    with journal.hold():
        for row in rows[25:]:
            journal.append(row)
        segments = journal.segment_paths()
        assert len(segments) >= 3
        # A live process's segments are locked: another start leaves them alone.
        assert recover(folder, engine) == 0
        # The process dies: its descriptors (and locks) go, the files stay.
        for segment in journal._files:
            segment.close(remove=False)
    journal._finalizer.detach()
    recover(folder, engine)  # (how many were new: not every driver counts an executemany)
    assert list(folder.glob("*.jsonl")) == []
    assert sorted(r["query"] for r in _stored(settings, "reader")) == \
        sorted(r["query"] for r in rows)


# ---------------------------------------------------------------------------- group commit
def _request_rows(count: int, tag: str) -> list[dict]:
    from service.audit_journal import new_request_id

    return [{"request_id": new_request_id(), "at": "2026-12-01T23:00:00+00:00",
             "event": "request", "actor": "reader", "role": "admin", "method": "GET",
             "path": "/api/v1/forecasts", "query": f"{tag}={i}", "status": 200}
            for i in range(count)]


def _journal_calls(monkeypatch, journal, name: str, delay: float) -> list[int]:
    """Wrap ``os.<name>`` so that its calls on the journal's descriptor are slow (threads pile
    up behind a write, as on a loaded machine) and counted: the file's size at each call."""
    real = getattr(os, name)
    calls: list[int] = []

    def slow(fd, *args):
        if fd != journal._file.fd:
            return real(fd, *args)
        time.sleep(delay)
        out = real(fd, *args)
        calls.append(os.fstat(fd).st_size)
        return out

    monkeypatch.setattr(os, name, slow)
    return calls


def _append_from_threads(journal, rows: list[dict], threads: int) -> list[str]:
    """Append ``rows`` from ``threads`` threads at once; each thread reads the file right after
    each append returns: the problems found (its line missing, or not whole)."""
    problems: list[str] = []
    start = threading.Barrier(threads)

    def work(part: list[dict]) -> None:
        start.wait()
        for row in part:
            journal.append(row)
            data = journal.path.read_bytes()
            key = b'"request_id":"%s"' % row["request_id"].encode()
            at = data.find(key)
            if at < 0 or data.find(b"\n", at) < 0:
                problems.append(f"{row['query']}: not (whole) in the file when append returned")

    workers = [threading.Thread(target=work, args=(rows[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return problems


def test_concurrent_appends_share_writes_and_keep_every_row_once(tmp_path, db_url,
                                                                  monkeypatch):
    from service.audit import query

    settings = _settings(tmp_path, db_url)
    app = _app(settings)
    journal = _journal(app)
    rows = _request_rows(400, "c")
    writes = _journal_calls(monkeypatch, journal, "write", 0.002)
    with journal.hold():
        problems = _append_from_threads(journal, rows, threads=16)
        lines = journal.path.read_bytes().split(b"\n")
    monkeypatch.undo()
    assert problems == []
    assert lines[-1] == b"" and len(lines) == 401  # whole lines only, never interleaved
    written = [json.loads(line) for line in lines[:-1]]
    assert sorted(r["request_id"] for r in written) == sorted(r["request_id"] for r in rows)
    assert all(r == next(x for x in rows if x["request_id"] == r["request_id"])
               for r in written[:20])
    # Batches: fewer writes than rows (threads waited behind a slow write), one each.
    assert len(writes) == journal.writes < 400
    assert max(writes) == journal.path.stat().st_size
    stored, total = query(app.extensions["vigie"].engine, actor="reader", limit=1000)
    assert total == 400
    assert sorted(r["query"] for r in stored) == sorted(r["query"] for r in rows)
    assert len({r["request_id"] for r in _stored(settings, "reader")}) == 400


def test_fsync_policy_syncs_once_per_batch_before_returning(tmp_path, db_url, monkeypatch):
    settings = _settings(tmp_path, db_url)
    app = _app(settings, AUDIT_SYNC="fsync")
    journal = _journal(app)
    rows = _request_rows(240, "f")
    synced = _journal_calls(monkeypatch, journal, "fdatasync", 0.003)
    lock = threading.Lock()
    late: list[str] = []
    real_append = journal.append

    def append(row):  # each append must return after a sync covering its line
        real_append(row)
        data = journal.path.read_bytes()
        end = data.index(b"\n", data.index(row["request_id"].encode())) + 1
        with lock:
            if not synced or max(synced) < end:
                late.append(row["query"])

    monkeypatch.setattr(journal, "append", append)
    with journal.hold():
        problems = _append_from_threads(journal, rows, threads=12)
    monkeypatch.undo()
    assert problems == [] and late == []
    assert len(synced) == journal.writes < 240  # one fdatasync per batch, shared
    assert synced == sorted(synced) and synced[-1] == journal.path.stat().st_size
    assert len(_lines(journal.path)) == 240


def test_a_failed_write_fails_its_batch_and_leaves_no_torn_line(tmp_path, db_url,
                                                                 monkeypatch):
    import errno

    settings = _settings(tmp_path, db_url)
    app = _app(settings)
    journal = _journal(app)
    first, second, third = _request_rows(3, "w")
    journal.append(first)
    size = journal.path.stat().st_size
    real = os.write

    def half_then_full(fd, data):
        if fd != journal._file.fd:
            return real(fd, data)
        if len(data) > 10:
            return real(fd, bytes(data[:10]))  # the kernel took part of it…
        raise OSError(errno.ENOSPC, "No space left on device")  # …then the disk is full

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        journal.append(second)
    monkeypatch.undo()
    assert journal.path.stat().st_size == size  # the 10 bytes were cut back
    journal.append(third)
    assert [r["query"] for r in _lines(journal.path)] == ["w=0", "w=2"]
    journal.flush()
    assert sorted(r["query"] for r in _stored(settings, "reader")) == ["w=0", "w=2"]


LOAD_CRASH = textwrap.dedent("""
    import os, sys, threading
    from features.settings import Settings
    from service.app import create_app
    from service.audit_journal import new_request_id

    home, data, url = sys.argv[1:4]
    settings = Settings.from_env(home=home, data_dir=data, database_url=url)
    app = create_app({"TESTING": True, "SETTINGS": settings, "RATELIMIT_ENABLED": False})
    journal = app.extensions["vigie"].extra["audit_journal"]
    print(journal.path, flush=True)
    out = threading.Lock()

    def work(t):
        for i in range(1_000_000):
            row = {"request_id": new_request_id(), "at": "2026-12-01T23:00:00+00:00",
                   "event": "request", "actor": "reader", "role": "admin", "method": "GET",
                   "path": "/api/v1/forecasts", "query": f"t={t}&i={i}", "status": 200}
            journal.append(row)
            with out:  # the answer: sent only once append returned
                os.write(1, (row["request_id"] + "\\n").encode())

    for t in range(8):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
""")


def test_a_crash_under_load_loses_no_acknowledged_row(tmp_path, db_url):
    settings = _settings(tmp_path, db_url)
    _app(settings)  # the database's tables
    proc = subprocess.Popen([sys.executable, "-c", LOAD_CRASH, str(settings.home),
                             str(tmp_path), db_url], cwd=ROOT, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        journal = Path(proc.stdout.readline().decode().strip())
        acknowledged = [proc.stdout.readline() for _ in range(1500)]
    finally:
        proc.kill()  # SIGKILL in the middle of the load
        rest = proc.stdout.read()  # (through the buffered reader: communicate would skip it)
        proc.wait(timeout=60)
    acknowledged = {line.decode().strip() for line in acknowledged + rest.splitlines(True)
                    if line.endswith(b"\n")}
    assert len(acknowledged) >= 1500
    data = journal.read_bytes()
    lines = data.split(b"\n")
    rows = [json.loads(line) for line in lines[:-1]]  # whole lines (a torn one only last)
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert sorted(acknowledged - set(ids)) == []  # every answered row is in the journal

    _app(settings)  # the next start replays the dead process's journal
    stored = [r["request_id"] for r in _stored(settings, "reader")]
    assert len(stored) == len(set(stored))
    assert sorted(acknowledged - set(stored)) == []
    assert not journal.exists()


def test_close_waits_for_the_shippers_sync(tmp_path, db_url, monkeypatch):
    # The database refused: the shipper syncs the journal (on_failure) while the process
    # stops. close() must not close the file under that sync: the file and its lock stayed
    # open until the sync returned, and a start meanwhile skipped the journal as alive.
    import fcntl

    from features.catalog import get_engine
    from service import audit_journal
    from service.audit_journal import AuditJournal

    settings = _settings(tmp_path, db_url)
    _app(settings)
    folder = tmp_path / "closing"
    journal = AuditJournal(folder, get_engine(settings.database_url))
    audit_journal._SHIPPER._journals.discard(journal)
    journal.append(_request_rows(1, "sync")[0])
    path = journal.path
    syncing, real = threading.Event(), os.fdatasync

    def slow_sync(fd):
        # The kernel holds the open file (and so its lock) for the length of the call.
        held = os.dup(fd)
        syncing.set()
        try:
            time.sleep(0.5)
            return real(held)
        finally:
            os.close(held)

    def refused(engine, rows):
        raise sa.exc.OperationalError("INSERT", {}, Exception("database unreachable"))

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    monkeypatch.setattr(audit_journal, "insert_rows", refused)
    syncer = threading.Thread(target=journal.on_failure)
    syncer.start()
    assert syncing.wait(5)
    journal.close()  # the row could not be shipped: the file is kept for the next start
    assert path.exists()
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once close() returned
    finally:
        os.close(fd)
    syncer.join()
    monkeypatch.undo()
    audit_journal.recover(folder, get_engine(settings.database_url))
    assert [r["query"] for r in _stored(settings, "reader")] == ["sync=0"]
