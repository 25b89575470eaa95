"""The audit journal (service.audit_journal): an authenticated request's audit row is appended
to this process's journal before the answer is sent and shipped to the database in batches;
a crash loses no answered request's row and a row shipped twice is stored once; values with
control characters keep one line per row; several apps (processes) on one home and one
database each have their own journal. SQLite and, with VIGIE_TEST_DATABASE_URL, PostgreSQL.

The default policy ("write") copies lines into a memory mapping of a preallocated file (lines,
then zeros); "fsync" writes them with os.write and group commit (lines only).

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


def _content(path: Path) -> bytes:
    """A journal's lines: its bytes up to the first NUL (a "write" journal's preallocated,
    never written tail)."""
    data = path.read_bytes()
    end = data.find(b"\0")
    return data if end < 0 else data[:end]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in _content(path).splitlines()]


def test_rows_reach_the_database_in_batches(tmp_path, db_url):
    from features.catalog import get_engine
    from service.audit import query
    from service.audit_journal import CHUNK_BYTES

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
    assert shipped == len(_content(journal.path))  # the end of the last line
    assert journal.path.stat().st_size == CHUNK_BYTES  # preallocated: zeros after the lines
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
    content = _content(journal)
    assert journal.stat().st_size > len(content)  # preallocated: zeros after the lines
    with journal.open("r+b") as f:  # a copy the crash cut short (never answered), zeros after
        f.seek(len(content))
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
        lines = _content(journal.path).split(b"\n")
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


@pytest.mark.parametrize("sync", ["write", "fsync"])
def test_a_shipped_journal_is_truncated_past_its_size_limit(tmp_path, db_url, monkeypatch, sync):
    """Truncated once everything in it is shipped; a "write" journal is preallocated again
    (zeros): after a truncation the file holds the requests since, whole, and nothing of
    before (what a crash at any point would replay)."""
    import mmap

    from service import audit_journal
    from service.audit import query

    monkeypatch.setattr(audit_journal, "ROTATE_BYTES", 1000)
    monkeypatch.setattr(audit_journal, "CHUNK_BYTES", mmap.ALLOCATIONGRANULARITY)
    settings = _settings(tmp_path, db_url)
    app = _app(settings, AUDIT_SYNC=sync)
    token = _token(settings)
    journal = _journal(app)
    truncated = 0
    for i in range(12):
        with journal.hold():
            app.test_client().get(f"/api/v1/nope?i={i}",
                                  headers={"Authorization": f"Bearer {token}"})
        journal.flush()
        content = _content(journal.path)
        assert len(content) < 1000 + 400
        truncated += content == b""
        queries = [r["query"] for r in _lines(journal.path)]
        assert queries == [f"i={j}" for j in range(i + 1 - len(queries), i + 1)]
        size = journal.path.stat().st_size
        assert size == (len(content) if sync == "fsync" else mmap.ALLOCATIONGRANULARITY
                        if content else 0)
    assert truncated >= 2
    assert int(journal.path.with_suffix(".shipped").read_bytes()) == len(_content(journal.path))
    assert query(app.extensions["vigie"].engine, actor="reader")[1] == 12


def test_a_journal_closed_with_unshipped_rows_is_cut_to_its_lines(tmp_path, db_url,
                                                                    monkeypatch):
    """The database refuses at close: the "write" journal stays for the next start, cut to
    its lines (no zero tail), and is replayed there."""
    from service import audit_journal

    settings = _settings(tmp_path, db_url)
    app = _app(settings)
    journal = _journal(app)
    rows = _request_rows(30, "k")

    def refuse(engine, batch):
        raise sa.exc.OperationalError("INSERT", {}, Exception("database unreachable"))

    with journal.hold():
        for row in rows:
            journal.append(row)
        assert journal.path.stat().st_size == audit_journal.CHUNK_BYTES
        monkeypatch.setattr(audit_journal, "insert_rows", refuse)  # (before the shipper runs)
    journal.close()
    monkeypatch.undo()
    data = journal.path.read_bytes()
    assert data.endswith(b"\n") and b"\0" not in data and len(data.splitlines()) == 30
    _app(settings)  # the next start replays it
    assert not journal.path.exists()
    assert sorted(r["query"] for r in _stored(settings, "reader")) == sorted(
        r["query"] for r in rows)


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


@pytest.mark.parametrize("sync", ["write", "fsync"])
def test_concurrent_appends_share_writes_and_keep_every_row_once(tmp_path, db_url,
                                                                  monkeypatch, sync):
    """"fsync": group commit (threads waiting behind a slow write share the next one).
    "write": every line copied whole under the lock, the file preallocated and mapped again
    chunk after chunk (a small chunk here) while threads append."""
    import mmap

    from service import audit_journal
    from service.audit import query

    chunk = 4 * mmap.ALLOCATIONGRANULARITY
    monkeypatch.setattr(audit_journal, "CHUNK_BYTES", chunk)
    settings = _settings(tmp_path, db_url)
    app = _app(settings, AUDIT_SYNC=sync)
    journal = _journal(app)
    rows = _request_rows(400, "c")
    writes = _journal_calls(monkeypatch, journal, "write", 0.002)
    allocations = _journal_calls(monkeypatch, journal, "posix_fallocate", 0.002)
    with journal.hold():
        problems = _append_from_threads(journal, rows, threads=16)
        lines = _content(journal.path).split(b"\n")
        size = journal.path.stat().st_size
    monkeypatch.undo()
    assert problems == []
    assert lines[-1] == b"" and len(lines) == 401  # whole lines only, never interleaved
    written = [json.loads(line) for line in lines[:-1]]
    assert sorted(r["request_id"] for r in written) == sorted(r["request_id"] for r in rows)
    assert all(r == next(x for x in rows if x["request_id"] == r["request_id"])
               for r in written[:20])
    content = sum(len(line) + 1 for line in lines[:-1])
    if sync == "fsync":
        # Batches: fewer writes than rows (threads waited behind a slow write), one each.
        assert len(writes) == journal.writes < 400
        assert max(writes) == size == content and allocations == []
    else:
        assert writes == [] and journal.writes == 400  # copies, no write
        assert size == -(-content // chunk) * chunk and len(allocations) == size // chunk > 2
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
    """"fsync" (os.write): a write cut short is cut back."""
    import errno

    settings = _settings(tmp_path, db_url)
    app = _app(settings, AUDIT_SYNC="fsync")
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


def test_a_full_disk_fails_the_allocation_not_the_process(tmp_path, db_url, monkeypatch):
    """"write": the next chunk cannot be allocated (disk full): append raises OSError before
    copying anything (never a copy past the allocated space: SIGBUS), the lines before stay
    whole, a request's row goes straight to the database, and appends resume once the disk
    has room."""
    import errno
    import mmap

    from service import audit_journal

    chunk = mmap.ALLOCATIONGRANULARITY
    monkeypatch.setattr(audit_journal, "CHUNK_BYTES", chunk)
    settings = _settings(tmp_path, db_url)
    app = _app(settings)
    token = _token(settings)
    journal = _journal(app)
    rows = _request_rows(60, "d")
    full = threading.Event()
    real = os.posix_fallocate

    def fallocate(fd, offset, length):
        if full.is_set():
            real(fd, offset, min(length, 100))  # a part of it…
            raise OSError(errno.ENOSPC, "No space left on device")  # …then the disk is full
        return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    full.set()
    with pytest.raises(OSError, match="No space left"):  # the first chunk already
        journal.append(rows[0])
    full.clear()
    done = []
    with journal.hold():
        journal.append(rows[0])
        done.append(rows[0])
        full.set()
        with pytest.raises(OSError, match="No space left"):
            for row in rows[1:]:
                journal.append(row)  # fills the first chunk, then cannot have the next one
                done.append(row)
        assert 3 < len(done) < 60
        with pytest.raises(OSError, match="No space left"):
            journal.append(rows[-1])  # still full
        assert [r["query"] for r in _lines(journal.path)] == [r["query"] for r in done]
        assert journal._file.allocated == chunk and len(journal._file.map) == chunk
        resp = app.test_client().get("/api/v1/nope?direct=1",
                                     headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 404
        assert [r["query"] for r in _stored(settings, "reader")] == ["direct=1"]
        full.clear()
        journal.append(rows[-1])  # room again
        done.append(rows[-1])
    assert [r["query"] for r in _lines(journal.path)] == [r["query"] for r in done]
    assert journal.path.stat().st_size == 2 * chunk
    journal.flush()
    assert sorted(r["query"] for r in _stored(settings, "reader")) == sorted(
        [r["query"] for r in done] + ["direct=1"])


def test_replay_reads_lines_up_to_the_zeros_and_skips_a_torn_last_line(tmp_path, db_url):
    """A crafted dead journal: the shipped offset after the first line, whole lines, a line cut
    short (all but its newline), zeros; and an "fsync" one (no zeros) ending with a torn line, its
    offset past its size (replayed from the start). Every whole line past the offset is
    stored, once, the torn ones never; the files are removed."""
    import fcntl

    from features.catalog import get_engine
    from service.audit_journal import _encode, recover

    settings = _settings(tmp_path, db_url)
    _app(settings)  # the database's tables
    engine = get_engine(settings.database_url)
    folder = tmp_path / "journals"
    folder.mkdir()
    rows = _request_rows(6, "r")
    lines = [_encode(row) for row in rows]
    torn = _encode(_request_rows(1, "torn")[0])
    mapped = folder / "host-1-aaaa.jsonl"  # cut right before its newline: whole JSON, yet
    mapped.write_bytes(b"".join(lines[:4]) + torn[:-1] + bytes(8192))  # never acknowledged
    torn = torn[:-30]
    mapped.with_suffix(".shipped").write_bytes(b"%020d\n" % len(lines[0]))
    written = folder / "host-2-bbbb.jsonl"
    written.write_bytes(b"".join(lines[4:]) + torn)
    written.with_suffix(".shipped").write_bytes(b"%020d\n" % 1_000_000)
    alive = folder / "host-3-cccc.jsonl"  # a live process's: left alone
    alive.write_bytes(lines[0])
    with alive.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        recover(folder, engine)  # (its count of new rows: SQLite's only, psycopg gives 0)
        recover(folder, engine)
    assert sorted(r["query"] for r in _stored(settings, "reader")) == [f"r={i}"
                                                                      for i in range(1, 6)]
    assert sorted(p.name for p in folder.iterdir()) == [alive.name]


LOAD_CRASH = textwrap.dedent("""
    import os, sys, threading
    from features.settings import Settings
    from service import audit_journal
    from service.app import create_app
    from service.audit_journal import new_request_id

    home, data, url, sync, chunk = sys.argv[1:6]
    audit_journal.CHUNK_BYTES = int(chunk)  # small: mapped again and again under the load
    settings = Settings.from_env(home=home, data_dir=data, database_url=url)
    app = create_app({"TESTING": True, "SETTINGS": settings, "RATELIMIT_ENABLED": False,
                      "AUDIT_SYNC": sync})
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


@pytest.mark.parametrize("sync", ["write", "fsync"])
def test_a_crash_under_load_loses_no_acknowledged_row(tmp_path, db_url, sync):
    """SIGKILL while 8 threads append (and, "write", the file is preallocated and mapped
    again every 64 KiB): every acknowledged row is in the journal, whole, and stored exactly
    once by the next start; a line the crash cut short was never acknowledged."""
    settings = _settings(tmp_path, db_url)
    _app(settings)  # the database's tables
    chunk = 64 << 10
    proc = subprocess.Popen([sys.executable, "-c", LOAD_CRASH, str(settings.home),
                             str(tmp_path), db_url, sync, str(chunk)], cwd=ROOT,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
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
    content = _content(journal)
    if sync == "write":  # preallocated chunks: zeros after the lines
        assert len(data) % chunk == 0 and len(data) - chunk <= len(content) < len(data)
        assert len(data) > chunk  # (mapped again at least once)
    else:
        assert content == data
    *lines, fragment = content.split(b"\n")  # whole lines, then what a crash cut short
    rows = [json.loads(line) for line in lines]
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert sorted(acknowledged - set(ids)) == []  # every answered row is in the journal
    assert not any(ack.encode() in fragment for ack in acknowledged)

    _app(settings)  # the next start replays the dead process's journal
    stored = [r["request_id"] for r in _stored(settings, "reader")]
    assert len(stored) == len(set(stored))
    assert sorted(acknowledged - set(stored)) == []
    assert set(stored) == set(ids)
    assert not journal.exists()


FILE_LIMIT = textwrap.dedent("""
    import os, resource, signal, sys
    from features.settings import Settings
    from service import audit_journal
    from service.app import create_app
    from service.audit_journal import new_request_id

    home, data, url, chunk = sys.argv[1:5]
    audit_journal.CHUNK_BYTES = int(chunk)
    settings = Settings.from_env(home=home, data_dir=data, database_url=url)
    app = create_app({"TESTING": True, "SETTINGS": settings, "RATELIMIT_ENABLED": False})
    journal = app.extensions["vigie"].extra["audit_journal"]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (else the kernel's refusal kills us)
    limit = 3 * int(chunk) - 1000  # no file of ours larger: the third chunk is refused
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    acknowledged = []
    with journal.hold():  # (nothing written to the database)
        try:
            for i in range(100_000):
                row = {"request_id": new_request_id(), "at": "2026-12-01T23:00:00+00:00",
                       "event": "request", "actor": "reader", "role": "admin",
                       "method": "GET", "path": "/api/v1/forecasts", "query": f"i={i}"}
                journal.append(row)
                acknowledged.append(row["request_id"])
        except OSError as exc:
            print(exc.errno, journal.path, len(acknowledged), flush=True)
        try:
            journal.append(row)
        except OSError:
            pass
    os.write(1, "\\n".join(acknowledged).encode())
    os._exit(0)  # as if killed: the next start replays the journal
""")


def test_a_file_size_limit_refuses_the_next_chunk_and_the_process_lives(tmp_path, db_url):
    """The kernel itself refuses the next chunk (RLIMIT_FSIZE, as a full disk would): append
    raises OSError (EFBIG), the process lives on (no SIGBUS), and every line appended before
    is replayed at the next start."""
    import errno

    settings = _settings(tmp_path, db_url)
    _app(settings)  # the database's tables
    chunk = 64 << 10
    proc = subprocess.run([sys.executable, "-c", FILE_LIMIT, str(settings.home), str(tmp_path),
                           db_url, str(chunk)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, *acknowledged = proc.stdout.splitlines()
    code, path, count = first.split()
    assert int(code) == errno.EFBIG and int(count) == len(acknowledged) > 200
    journal = Path(path)
    assert journal.stat().st_size == 2 * chunk  # nothing mapped past what was allocated
    assert [r["request_id"] for r in _lines(journal)] == acknowledged
    _app(settings)
    assert sorted(r["request_id"] for r in _stored(settings, "reader")) == sorted(acknowledged)
