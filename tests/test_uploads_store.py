"""Uploads against ingests and over time: one lock for changing the uploads in force and an
ingest reading them (never a replacement read half-way, even by a real ingest running at the
same moment), the quarantine capped, replaced uploads' copies pruned.

A small home: the territory registry, the EPCI registry and three real sources of the shared
data (linked, never copied), a SQLite catalog; the city file is the synthetic fixture of
tests/test_uploads.py (Rennes and Bruz, two communes of Rennes Métropole).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from features.catalog import utcnow
from features.settings import Settings
from tests.conftest import FIXTURES

CITY_FILE = FIXTURES / "city_indicators_synthetic_epci.csv"
LINKED = ("fr_departements_population.csv", "fr_communes_20k_population.csv",
          "fr_communes_population.csv", "fr_epci_communes.csv",
          "fr_spf_hosp_incid_dep_daily.csv", "fr_drees_critical_care_beds.csv")
RENNES = "35238"


def small_settings(data_dir, base, **overrides) -> Settings:
    data = base / "data"
    if not data.exists():
        data.mkdir(parents=True)
        for name in LINKED:
            (data / name).symlink_to(data_dir / name)
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    return Settings.from_env(home=str(home), data_dir=str(data),
                             database_url=f"sqlite:///{home}/vigie.sqlite", **overrides)


@pytest.fixture
def settings(data_dir, tmp_path) -> Settings:
    return small_settings(data_dir, tmp_path)


def version(value: int) -> bytes:
    """The fixture file with Rennes' last food-aid value set to ``value``."""
    frame = pd.read_csv(CITY_FILE, dtype=str)
    last = frame.index[(frame["territory_code"] == RENNES)
                       & (frame["indicator"] == "food_aid_requests")][-1]
    frame.loc[last, "value"] = str(value)
    return frame.to_csv(index=False).encode()


def send(settings, content: bytes, name: str = "rennes.csv", wait: bool = False) -> dict:
    from service.usecases.uploads import upload_file

    return upload_file(settings, content, name, sender="cli", role="admin", actor="test",
                       wait=wait)


def records(settings) -> dict[str, dict]:
    from features.uploads import UploadIndex

    return {r["id"]: r for r in UploadIndex(settings).records()}


def took(settings, *reports: dict, vintage: str = "v-test") -> SimpleNamespace:
    """An ingest report that read and took the files of ``reports`` (started now)."""
    return SimpleNamespace(
        started_at=utcnow(), vintage_id=vintage, outcome="ok", message="",
        sources=[SimpleNamespace(source="city_indicators", file=r["file"], status="ok",
                                 error=None, problems=[]) for r in reports])


# ---------------------------------------------------------------- one lock
def test_an_ingest_waits_for_a_replacement_and_reads_it_whole(settings, monkeypatch):
    """A replacement under the same name overwrites ``active/<file>`` before the index names
    it; an ingest copying the uploads in between (slowed here to 0.5 s) would read the new
    bytes as the old upload. The lock makes the copy wait and read the new file and index."""
    from features import uploads
    from features.storage import objects

    first = send(settings, version(100))
    new = version(999)
    written, index_saved = threading.Event(), []
    original = objects.LocalStore.write_bytes

    def slow(self, key, data, **options):
        original(self, key, data, **options)
        if key.startswith("active/") and data == new:
            written.set()
            time.sleep(0.5)
        if key == "index.json" and written.is_set() and not index_saved:
            index_saved.append(time.monotonic())

    monkeypatch.setattr(objects.LocalStore, "write_bytes", slow)
    replacing = threading.Thread(target=lambda: send(settings, new))
    replacing.start()
    assert written.wait(30)
    source = SimpleNamespace(name=uploads.UPLOADED_SOURCE)
    (path,) = uploads.uploaded(settings, source)  # what the ingest calls
    copied_at = time.monotonic()
    replacing.join(30)
    assert index_saved and copied_at > index_saved[0]  # it waited for the index
    assert path.read_bytes() == new and path.name == first["file"]
    (in_force,) = uploads.UploadIndex(settings).in_force()
    assert in_force["sha256"] != first["sha256"] and in_force["replaces"] == [first["id"]]


def test_the_lock_is_one_row_for_every_process_sharing_the_database(settings, tmp_path,
                                                                      data_dir):
    """Another home on the same database (another host) waits on the same lock."""
    from features import uploads

    other = dataclasses.replace(small_settings(data_dir, tmp_path / "other"),
                                database_url=settings.database_url)
    with uploads.locked(settings), pytest.raises(uploads.UploadsBusy), \
            uploads.locked(other, wait=0.3):
        pass
    with uploads.locked(other, wait=0.3):
        pass


def test_a_real_ingest_running_during_a_replacement_reads_one_version_whole(settings):
    """An ingest runs while a city replaces its file: the vintage holds one version, and its
    manifest names that version's checksum (never the old values under the new file or the
    reverse); the upload that ingest read is settled, the one it did not waits for its own."""
    from features.ingest import run_ingest
    from features.store import CubeStore
    from service.usecases.uploads import settle_uploads

    send(settings, version(100), wait=True)  # in force, with its vintage
    reports = []
    ingest = threading.Thread(target=lambda: reports.append(run_ingest(settings, force=True)))
    ingest.start()
    second = send(settings, version(999))
    ingest.join(300)
    (report,) = reports
    assert report.outcome in ("ok", "partial"), report.to_dict()
    vintage = CubeStore(settings).current_vintage()
    entry = vintage["files"][second["file"]]
    food = CubeStore(settings).open("weekly", vintage_id=vintage["id"])["food_aid_requests"]
    last = food.sel(territory=RENNES).dropna("date").values[-1]
    read = {100: records(settings)[second["replaces"][0]]["sha256"], 999: second["sha256"]}
    assert entry["sha256"] == read[int(last)]
    settled = settle_uploads(settings, report)["settled"]
    status = records(settings)[second["id"]]["status"]
    if settled:  # accepted before the ingest started: it read it
        assert (status, int(last)) == ("active", 999)
    else:
        assert status == "accepted"


# ---------------------------------------------------------------- quarantine, prune
def test_the_quarantine_is_capped_oldest_first(data_dir, tmp_path):
    from features import uploads

    settings = small_settings(data_dir, tmp_path, upload_quarantine_max_files=3)
    refused = [send(settings, b"territory_code,date\n" + f"x{i}".encode() * 50, f"bad{i}.csv")
               for i in range(5)]
    assert all(r["status"] == "refused" for r in refused)
    kept = uploads.upload_store(settings).names("quarantine")
    assert kept == [r["quarantine"] for r in refused[2:]]
    assert [r["id"] for r in records(settings).values()] == [r["id"] for r in refused[2:]]
    report = json.loads((settings.uploads_dir / "quarantine" / kept[0] / "report.json")
                        .read_text())
    assert report["problems"]
    # A byte cap: the oldest go until the rest fits (each folder is over 100 bytes).
    sizes = dict(uploads._quarantine_sizes(uploads.upload_store(settings)))
    small = dataclasses.replace(settings, upload_quarantine_max_bytes=sizes[kept[2]] + 1)
    assert uploads.prune(small, dry_run=True)["quarantine_dropped"] == kept[:2]
    assert uploads.upload_store(settings).names("quarantine") == kept  # a dry run
    assert uploads.prune(small)["quarantine_dropped"] == kept[:2]
    assert uploads.upload_store(settings).names("quarantine") == kept[2:]


def test_prune_drops_replaced_copies_once_their_replacement_is_settled(settings):
    from features import uploads
    from service.retention import prune
    from service.usecases.uploads import settle_uploads

    first = send(settings, version(100))
    settle_uploads(settings, took(settings, first))
    second = send(settings, version(999))
    raw = settings.uploads_dir / "raw"
    copies = {f"{r['sha256']}-{r['file']}" for r in (first, second)}
    assert {p.name for p in raw.iterdir()} == copies
    # The second waits for its ingest: the first's copy is what an undo would put back.
    assert uploads.prune(settings)["replaced_dropped"] == []
    assert {p.name for p in raw.iterdir()} == copies
    settle_uploads(settings, took(settings, second))
    summary = prune(settings, dry_run=True).summary()["uploads"]
    assert summary["replaced_dropped"] == [first["id"]] and summary["dry_run"]
    assert first["id"] in records(settings)
    summary = prune(settings).summary()["uploads"]
    assert summary == {"quarantine_dropped": [], "replaced_dropped": [first["id"]],
                       "undone_dropped": [], "raw_copies_dropped": 1, "dry_run": False}
    assert {p.name for p in raw.iterdir()} == {f"{second['sha256']}-{second['file']}"}
    assert list(records(settings)) == [second["id"]]
    assert records(settings)[second["id"]]["status"] == "active"


def test_a_queued_upload_its_ingest_refuses_is_undone_with_the_reason(settings):
    """Through the queue: the ingest that reads the upload reports its file failed (e.g. the
    registry changed since the checks): undone, the ingest's reason and problems on its
    record, the upload it replaced back in ``active/`` byte for byte and in force."""
    from service.usecases.uploads import settle_uploads

    first = send(settings, version(100))
    settle_uploads(settings, took(settings, first))
    active = settings.uploads_active_dir / first["file"]
    before = active.read_bytes()
    second = send(settings, version(999), name="rennes_2.csv")  # covers every pair: replaces
    assert second["replaces"] == [first["id"]] and not active.exists()
    problem = {"file": second["file"], "line": 2, "column": "territory_code",
               "expected": "a commune of the registry", "found": "'35238'"}
    report = took(settings, second)
    report.sources[0].status, report.sources[0].error = "failed", "territory unknown"
    report.sources[0].problems = [problem]
    settled = settle_uploads(settings, report)
    assert settled["restored"] == [first["id"]]
    assert settled["settled"] == [{"id": second["id"], "status": "undone", "vintage_id": None,
                                   "message": "the ingest did not take the file: territory "
                                              "unknown"}]
    index = records(settings)
    assert index[second["id"]]["ingest_problems"] == [problem]
    assert index[first["id"]]["status"] == "active" and index[first["id"]]["replaced_by"] is None
    assert active.read_bytes() == before
    assert sorted(p.name for p in settings.uploads_active_dir.iterdir()) == [first["file"]]
    # Settled once: a later ingest leaves it alone.
    assert settle_uploads(settings, took(settings, first))["settled"] == []


def test_the_ingest_job_settles_and_queues_an_ingest_for_the_uploads_put_back(settings,
                                                                               monkeypatch):
    from features.catalog import get_engine
    from service.jobs import claim, execute, get_run
    from service.usecases.uploads import settle_uploads

    first = send(settings, version(100))
    settle_uploads(settings, took(settings, first))
    second = send(settings, version(999))

    def ingest(settings_, **kwargs):
        report = took(settings_, second, vintage=None)
        report.outcome, report.message = "failed", "territories could not be read"
        report.sources[0].status, report.sources[0].error = "failed", "no registry"
        report.failed = report.sources
        return report

    monkeypatch.setattr("service.usecases.ingest.ingest", ingest)
    engine = get_engine(settings.database_url)
    run = claim(engine, "test")
    # The first upload's run, never run, is the oldest; the second's is coalesced into it.
    assert run["id"] == first["job_id"]
    assert get_run(engine, second["job_id"])["status"] == "coalesced"
    assert execute(engine, settings, run) == "failed"  # the ingest failed: retried later
    assert records(settings)[second["id"]]["status"] == "undone"
    chained = [r for r in (get_run(engine, i) for i in range(1, second["job_id"] + 4)) if r
               and r["trigger"] == "chain"]
    assert [(r["job"], r["status"]) for r in chained] == [("ingest", "queued")]
