"""A city sends its file through the service (POST /api/v1/uploads, ``python -m service
upload``): valid → kept and a new vintage, summed into its EPCI and département; refused →
quarantined with every problem named and nothing served changed; size, type, name and scope
checks; EPCI codes in the shared format. The API answers 202 at once and queues an ``ingest``
run (run here by :func:`_run_ingest`, as the scheduler leader would); the command line runs the
ingest itself.

The city file is tests/fixtures/city_indicators_synthetic_epci.csv: SYNTHETIC (its ``source``
says so) weekly food-aid requests and 115 calls of Rennes (35238) and Bruz (35047), two
communes of Rennes Métropole (243500139), 78 weeks (18 months) from 2020-07-04. One accepted
upload through the API and one through the command line each run a real ingest of the shared
data (about 30 s each); every refusal is decided before any ingest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json

import numpy as np
import pandas as pd
import pytest

from features.catalog import get_engine
from features.sources.city_indicators import SOURCE as CITY
from features.sources.contract import ParseContext
from features.store import CubeStore
from features.uploads import active_name
from service.api.uploads import MULTIPART_SLACK
from tests.api_fixtures import home_sharing
from tests.conftest import FIXTURES

CITY_FILE = FIXTURES / "city_indicators_synthetic_epci.csv"
RENNES_METROPOLE, LYON_METROPOLE = "243500139", "200046977"
RENNES, BRUZ = "35238", "35047"
URL = "/api/v1/uploads"
DATA = (f"/api/v1/data?indicator=food_aid_requests&frequency=weekly"
        f"&territory={RENNES_METROPOLE},35,{RENNES},{BRUZ}&per_page=1000")


@pytest.fixture(scope="module")
def home(real_cube, tmp_path_factory):
    """A home serving the real cube's vintage, where uploads make new vintages."""
    return home_sharing(real_cube, tmp_path_factory.mktemp("uploads") / "home")


@pytest.fixture(scope="module")
def tokens(home) -> dict[str, dict[str, str]]:
    from service.auth import create_token

    engine = get_engine(home.database_url)
    made = {"rennes": create_token(engine, "ville-rennes", "city", [RENNES_METROPOLE]),
            "lyon": create_token(engine, "ville-lyon", "city", [LYON_METROPOLE]),
            "admin": create_token(engine, "admin-uploads", "admin")}
    return {k: {"Authorization": f"Bearer {v}"} for k, v in made.items()}


def _client(settings):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": settings,
                       "RATELIMIT_ENABLED": False}).test_client()


@pytest.fixture(scope="module")
def client(home):
    return _client(home)


def _post(client, content: bytes, name: str, headers: dict):
    return client.post(URL, data={"file": (io.BytesIO(content), name)}, headers=headers,
                       content_type="multipart/form-data")


def _run_ingest(home, run_id: int) -> dict:
    """Run the queued ingest run ``run_id`` here, as the scheduler leader would; the run."""
    from features.catalog import utcnow
    from service.db import job_runs
    from service.jobs import execute, get_run

    engine = get_engine(home.database_url)
    with engine.begin() as conn:
        assert conn.execute(job_runs.update().where(
            job_runs.c.id == run_id, job_runs.c.status == "queued"
        ).values(status="running", worker="test", started_at=utcnow())).rowcount == 1
    assert execute(engine, home, get_run(engine, run_id)) == "ok", get_run(engine, run_id)
    return get_run(engine, run_id)


def _record(home, upload_id: str) -> dict:
    index = json.loads((home.uploads_dir / "index.json").read_text())["uploads"]
    return next(r for r in index if r["id"] == upload_id)


@pytest.fixture(scope="module")
def accepted(client, home, tokens) -> tuple[str, dict]:
    """The fixture file sent by Rennes' scoped token, its ingest run: (the vintage served
    before, the answer completed by the upload's record once its ingest has run)."""
    before = CubeStore(home).current_vintage()["id"]
    response = _post(client, CITY_FILE.read_bytes(), "rennes_social.csv", tokens["rennes"])
    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    # Answered before any ingest: nothing served changed yet, the upload waits for its run.
    assert CubeStore(home).current_vintage()["id"] == before
    assert answer["vintage_id"] is None and answer["upload_status"] == "accepted"
    assert answer["job_url"] == f"/api/v1/jobs/runs/{answer['job_id']}"
    assert response.headers["Location"] == answer["job_url"]
    listed = client.get(URL, headers=tokens["rennes"]).get_json()["items"]
    assert [r["status"] for r in listed if r["id"] == answer["id"]] == ["accepted"]
    run = _run_ingest(home, answer["job_id"])
    record = _record(home, answer["id"])
    assert record["status"] == "active"
    assert run["result"]["vintage_id"] == record["vintage_id"]
    assert run["result"]["upload"] == answer["id"]
    assert {"id": answer["id"], "status": "active", "vintage_id": record["vintage_id"],
            "message": f"in force: vintage {record['vintage_id']}"} in run["result"]["uploads"]
    listed = client.get(URL, headers=tokens["rennes"]).get_json()["items"]
    assert [(r["status"], r["vintage_id"]) for r in listed if r["id"] == answer["id"]] == [
        ("active", record["vintage_id"])]
    return before, answer | {"vintage_id": record["vintage_id"]}


def _served(client, home, headers) -> tuple[str, object, list]:
    """(served vintage, /data answer, uploads/active listing): what a refusal must not change."""
    answer = client.get(DATA, headers=headers).get_json()
    return (CubeStore(home).current_vintage()["id"], answer,
            sorted(p.name for p in home.uploads_active_dir.glob("*")))


def _quarantined(home) -> set[str]:
    return {p.name for p in (home.uploads_dir / "quarantine").glob("*")}


def _line_of(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start))


# ---------------------------------------------------------------- accepted, summed, served
def test_a_scoped_city_token_uploads_its_file_and_makes_a_new_vintage(accepted, home):
    before, report = accepted
    assert report["status"] == "accepted" and report["problems"] == []
    assert report["vintage_id"] and report["vintage_id"] != before
    assert report["previous_vintage_id"] == before
    assert report["rows"] == 312 and report["territories"] == [BRUZ, RENNES]
    assert report["indicators"] == ["emergency_housing_calls_115", "food_aid_requests"]
    vintage = next(v for v in CubeStore(home).list_vintages() if v["id"] == report["vintage_id"])
    assert report["file"] == active_name("ville-rennes", "rennes_social.csv")
    # Kept: read by every ingest from uploads/active (not the data directory), and in the raw
    # store under its checksum, listed in the new vintage's manifest.
    kept = home.uploads_active_dir / report["file"]
    assert kept.read_bytes() == CITY_FILE.read_bytes()
    assert vintage["files"][report["file"]]["source"] == "city_indicators"
    assert (home.raw_dir / report["sha256"][:2] / f"{report['sha256']}-{report['file']}").exists()
    assert not (home.data_dir / report["file"]).exists()
    from service.audit import query

    rows, _ = query(get_engine(home.database_url), event="upload", limit=100)
    mine = {r["actor"]: r for r in rows if (r["details"] or {}).get("id") == report["id"]}
    assert set(mine) == {"token:ville-rennes", "job:ingest"}
    assert mine["token:ville-rennes"]["details"]["status"] == "accepted"
    assert mine["job:ingest"]["details"]["status"] == "active"
    assert mine["job:ingest"]["vintage_id"] == report["vintage_id"]


def test_the_upload_is_summed_into_its_epci_and_departement(accepted, home, runner, tmp_path,
                                                            client, tokens):
    _, report = accepted
    weekly = CubeStore(home).open("weekly", vintage_id=report["vintage_id"])
    for name in ("food_aid_requests", "emergency_housing_calls_115"):
        var = weekly[name]
        both = var.sel(territory=RENNES).values + var.sel(territory=BRUZ).values
        assert np.isfinite(both).sum() == 78
        np.testing.assert_array_equal(var.sel(territory=RENNES_METROPOLE).values, both)
        np.testing.assert_array_equal(var.sel(territory="35").values, both)
    # The same through `cube export` (the served vintage is this one or the CLI's newer
    # upload of the same communes: EPCI = département = Rennes + Bruz either way).
    out = tmp_path / "food.csv"
    code, _, err = runner(["cube", "export", "--indicator", "food_aid_requests", "--territory",
                           RENNES_METROPOLE, "35", RENNES, BRUZ, "--out", str(out)],
                          {"VIGIE_HOME": str(home.home), "VIGIE_DATABASE_URL": home.database_url,
                           "VIGIE_DATA_DIR": str(home.data_dir)})
    assert code == 0, err
    table = pd.read_csv(out, dtype={"territory": str}).pivot(
        index="date", columns="territory", values="value").dropna()
    assert len(table) == 78
    np.testing.assert_array_equal(table[RENNES_METROPOLE], table[RENNES] + table[BRUZ])
    np.testing.assert_array_equal(table["35"], table[RENNES] + table[BRUZ])
    # And through /data, as Rennes' own token reads it (its territories unsuppressed).
    items = client.get(DATA, headers=tokens["rennes"]).get_json()["items"]
    served = pd.DataFrame(items).pivot(index="date", columns="territory", values="value")
    served = served[[RENNES_METROPOLE, RENNES, BRUZ]].dropna()
    assert len(served) == 78
    np.testing.assert_array_equal(served[RENNES_METROPOLE], served[RENNES] + served[BRUZ])


# ---------------------------------------------------------------- refused, nothing changed
def test_the_same_file_with_one_bad_row_is_refused_with_the_row_named(accepted, client, home,
                                                                      tokens):
    text = CITY_FILE.read_text()
    lines = text.splitlines()
    bad_line = 100
    fields = lines[bad_line - 1].split(",")
    fields[3] = "douze"  # the value
    lines[bad_line - 1] = ",".join(fields)
    before = _served(client, home, tokens["admin"])
    quarantined = _quarantined(home)
    response = _post(client, ("\n".join(lines) + "\n").encode(), "rennes_social.csv",
                     tokens["rennes"])
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "invalid_file"
    report = body["details"]["report"]
    assert report["status"] == "refused" and report["vintage_id"] is None
    (problem,) = report["problems"]
    assert problem["line"] == bad_line and problem["column"] == "value"
    assert problem["file"] == "rennes_social.csv" and "douze" in problem["found"]
    assert problem["expected"]
    # Nothing served changed: vintage, /data answer, the uploads in force.
    assert _served(client, home, tokens["admin"]) == before
    # Quarantined with its report, listed for the admins.
    (folder,) = _quarantined(home) - quarantined
    assert report["quarantine"] == folder
    saved = json.loads((home.uploads_dir / "quarantine" / folder / "report.json").read_text())
    assert saved["problems"][0]["line"] == bad_line
    kept = (home.uploads_dir / "quarantine" / folder / "rennes_social.csv").read_text()
    assert kept.splitlines()[bad_line - 1].split(",")[3] == "douze"
    listed = client.get(URL, headers=tokens["admin"]).get_json()["items"]
    assert any(r["id"] == report["id"] and r["status"] == "refused" for r in listed)


def test_rows_outside_the_tokens_territories_are_refused_and_named(accepted, client, home,
                                                                   tokens):
    text = CITY_FILE.read_text()
    before = _served(client, home, tokens["admin"])
    response = _post(client, text.encode(), "rennes_social.csv", tokens["lyon"])
    assert response.status_code == 403
    body = response.get_json()
    assert body["code"] == "out_of_scope"
    report = body["details"]["report"]
    assert report["out_of_scope"] == [RENNES, BRUZ]
    by_code = {p["found"].split("'")[1]: p for p in report["problems"]}
    assert by_code[RENNES]["line"] == _line_of(text, RENNES)
    assert by_code[BRUZ]["line"] == _line_of(text, BRUZ)
    assert by_code[BRUZ]["column"] == "territory_code"
    assert "156 row(s)" in by_code[BRUZ]["found"]
    assert _served(client, home, tokens["admin"]) == before
    # Lyon lists its own refused upload, never Rennes'.
    listed = client.get(URL, headers=tokens["lyon"]).get_json()["items"]
    assert {r["sender"] for r in listed} == {"ville-lyon"}
    assert client.post(URL, data=text.encode(), content_type="text/csv").status_code == 401


def test_a_file_overlapping_an_upload_in_force_in_part_is_refused(accepted, client, home,
                                                                  tokens):
    _, first = accepted
    text = CITY_FILE.read_text()
    rennes_food = [line for line in text.splitlines()[1:]
                   if line.startswith(RENNES) and ",food_aid_requests," in line]
    content = "\n".join([text.splitlines()[0], *rennes_food]) + "\n"
    before = _served(client, home, tokens["admin"])
    response = client.post(f"{URL}?name=rennes_food.csv", data=content.encode(),
                           content_type="text/csv; charset=utf-8", headers=tokens["rennes"])
    assert response.status_code == 400
    (problem,) = response.get_json()["details"]["report"]["problems"]
    assert f"upload {first['id']} ('rennes_social.csv' of ville-rennes" in problem["expected"] \
        or "of cli" in problem["expected"]  # or the command line's newer upload, if run first
    assert "'food_aid_requests' for '35238'" in problem["found"]
    assert _served(client, home, tokens["admin"]) == before


@pytest.mark.parametrize("cell, column, expected", [
    ("=HYPERLINK(\"http://x\")", "unit", "formula"),
    ("@SUM(A1)", "source", "formula"),
])
def test_csv_injection_in_a_text_cell_is_refused(accepted, client, home, tokens, cell, column,
                                                 expected):
    frame = pd.read_csv(CITY_FILE, dtype=str)
    frame.loc[4, column] = cell  # line 6
    before = _served(client, home, tokens["admin"])
    response = _post(client, frame.to_csv(index=False).encode(), "rennes_social.csv",
                     tokens["rennes"])
    assert response.status_code == 400
    problems = response.get_json()["details"]["report"]["problems"]
    assert any((p["line"], p["column"]) == (6, column) and expected in p["expected"]
               for p in problems), problems
    assert _served(client, home, tokens["admin"]) == before


# ---------------------------------------------------------------- size, type, names
def test_a_file_over_the_size_limit_is_refused_with_413_before_reading(accepted, home, tokens,
                                                                       runner, tmp_path):
    small = dataclasses.replace(home, upload_max_bytes=2000)
    client = _client(small)
    index = (home.uploads_dir / "index.json").read_text()
    response = _post(client, CITY_FILE.read_bytes(), "rennes_social.csv", tokens["rennes"])
    assert response.status_code == 413
    body = response.get_json()
    # Refused from its Content-Length, before a byte is read: the file's limit plus the
    # multipart envelope's allowance.
    assert body["code"] == "too_large"
    assert body["details"]["limit_bytes"] == 2000 + MULTIPART_SLACK
    response = client.post(f"{URL}?name=r.csv", data=CITY_FILE.read_bytes(),
                           content_type="text/csv", headers=tokens["rennes"])
    assert response.status_code == 413 and response.get_json()["code"] == "too_large"
    # Just under the limit with its multipart envelope: read, then refused on the file's size.
    response = _post(client, b"x" * 2001, "r.csv", tokens["rennes"])
    assert response.status_code == 413 and response.get_json()["details"]["size"] == 2001
    code, _, err = runner(["upload", str(CITY_FILE)], {
        "VIGIE_HOME": str(home.home), "VIGIE_DATABASE_URL": home.database_url,
        "VIGIE_DATA_DIR": str(home.data_dir), "VIGIE_UPLOAD_MAX_BYTES": "2000"})
    assert code == 2 and "over 2000 bytes" in err
    assert (home.uploads_dir / "index.json").read_text() == index  # nothing kept


FORGED = ["../../../etc/cron.d/vigie.csv", "..%2F..%2Fx.csv", "x" * 300 + ".csv",
          "rapport.exe", "a\\b.csv", "rennes\x1b[31m.csv", ".csv", "-rf .csv"]
# Each name as the file part's name (Werkzeug drops a backslash there: sent as a field only),
# as the form field 'name', and as ?name= (a control character there is the guard's 400,
# tested below).
FORGED_CASES = ([(n, "multipart") for n in FORGED if "\\" not in n]
                + [(n, "field") for n in FORGED]
                + [(n, "query") for n in FORGED if "\x1b" not in n])


@pytest.mark.parametrize("name, how", FORGED_CASES)
def test_forged_file_names_are_refused(accepted, client, home, tokens, name, how):
    index = (home.uploads_dir / "index.json").read_text()
    content = CITY_FILE.read_bytes()
    if how == "multipart":
        response = _post(client, content, name, tokens["rennes"])
    elif how == "field":
        response = client.post(URL, data={"file": (io.BytesIO(content), "r.csv"),
                                          "name": name}, headers=tokens["rennes"],
                               content_type="multipart/form-data")
    else:
        response = client.post(URL, query_string={"name": name}, data=content,
                               content_type="text/csv", headers=tokens["rennes"])
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["code"] == "invalid_file_name" and "plain .csv file name" in body["message"]
    assert (home.uploads_dir / "index.json").read_text() == index
    assert not list(home.home.parent.glob("etc")) and not (home.home / "etc").exists()


def test_a_name_with_a_control_character_in_the_query_is_refused(accepted, client, tokens):
    response = client.post(f"{URL}?name=r%0d%0aX-Injected:%201.csv",
                           data=CITY_FILE.read_bytes(), content_type="text/csv",
                           headers=tokens["rennes"])
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_input"


def test_types_and_encodings(accepted, client, tokens):
    text = CITY_FILE.read_text()
    for content_type in ("application/json", "text/csv; charset=iso-8859-1", "text/plain"):
        response = client.post(f"{URL}?name=r.csv", data=text.encode(),
                               content_type=content_type, headers=tokens["rennes"])
        assert response.status_code == 415, content_type
        assert response.get_json()["code"] == "unsupported_media_type"
    latin1 = text.replace("SYNTHETIC test data", "données SYNTHÉTIQUES").encode("latin-1")
    response = client.post(f"{URL}?name=r.csv", data=latin1, content_type="text/csv",
                           headers=tokens["rennes"])
    assert response.status_code == 400
    (problem,) = response.get_json()["details"]["report"]["problems"]
    assert problem["expected"] == "UTF-8 text" and problem["line"] == 2
    response = client.post(URL, data={"other": (io.BytesIO(b"x"), "r.csv")},
                           content_type="multipart/form-data", headers=tokens["rennes"])
    assert response.status_code == 400 and "'file'" in response.get_json()["message"]


# ---------------------------------------------------------------- the command line, replacing
def test_the_command_line_upload_replaces_the_older_file_it_covers(accepted, home, runner,
                                                                   tmp_path):
    _, first = accepted
    frame = pd.read_csv(CITY_FILE, dtype=str)
    last = frame.index[(frame["territory_code"] == RENNES)
                       & (frame["indicator"] == "food_aid_requests")][-1]
    frame.loc[last, "value"] = "999"
    path = tmp_path / "aide_2021-12.csv"
    frame.to_csv(path, index=False)
    env = {"VIGIE_HOME": str(home.home), "VIGIE_DATABASE_URL": home.database_url,
           "VIGIE_DATA_DIR": str(home.data_dir)}
    code, out, err = runner(["upload", str(path), "--as", "rennes_2021.csv"], env)
    assert code == 0, out + err
    assert "accepted" in out and f"replaces upload(s) {first['id']}" in out
    records = {r["id"]: r for r in json.loads((home.uploads_dir / "index.json").read_text())[
        "uploads"]}
    new = next(r for r in records.values() if r["name"] == "rennes_2021.csv")
    assert new["sender"] == "cli" and new["replaces"] == [first["id"]]
    assert new["status"] == "active" and new["vintage_id"]
    assert records[first["id"]]["status"] == "replaced"
    assert records[first["id"]]["replaced_by"] == new["id"]
    # The older file left uploads/active (no value from two files) and stays in the raw store.
    assert sorted(p.name for p in home.uploads_active_dir.iterdir()) == [new["file"]]
    assert (home.uploads_dir / "raw" / f"{first['sha256']}-{first['file']}").exists()
    assert (home.raw_dir / first["sha256"][:2] / f"{first['sha256']}-{first['file']}").exists()
    served = CubeStore(home).current_vintage()
    assert served["id"] == new["vintage_id"] and first["file"] not in served["files"]
    weekly = CubeStore(home).open("weekly", vintage_id=new["vintage_id"])
    food = weekly["food_aid_requests"]
    day = pd.Timestamp(frame.loc[last, "date"])
    assert food.sel(territory=RENNES, date=day).item() == 999
    assert food.sel(territory=RENNES_METROPOLE, date=day).item() == \
        999 + food.sel(territory=BRUZ, date=day).item()
    # A refused file through the command line: exit 1, every problem printed with its line.
    frame.loc[9, "date"] = "2021-13-02"
    frame.to_csv(path, index=False)
    code, out, _ = runner(["upload", str(path)], env)
    assert code == 1 and "refused" in out and "line 11, column 'date'" in out
    assert CubeStore(home).current_vintage()["id"] == new["vintage_id"]


# ---------------------------------------------------------------- EPCI codes in the format
def test_epci_rows_are_accepted_kept_at_the_epci_and_never_summed_into_a_departement(
        data_dir, tmp_path):
    from features.cube import build_cube
    from features.sources.insee_territories import load_territories

    territories = load_territories(data_dir)[0]
    head = "territory_code,date,indicator,value,unit,source,frequency,aggregation\n"
    rows = [f"{code},2021-01-02,school_meals,{value},meals/week,SYNTHETIC test,weekly,sum"
            for code, value in ((RENNES_METROPOLE, 5000), ("247700644", 70), ("2A004", 12))]
    path = tmp_path / "epci.csv"
    path.write_text(head + "\n".join(rows) + "\n")
    result = CITY.parse(path, ParseContext(territories, dt.date(2022, 1, 1)))
    weekly = build_cube([result], territories)[0]["weekly"]["school_meals"]
    assert weekly.sel(territory=RENNES_METROPOLE).item() == 5000
    assert weekly.sel(territory="247700644").item() == 70  # spans 77 and 91
    assert weekly.sel(territory="2A004").item() == 12  # Ajaccio
    for parent in ("35", "77", "91", "R53", "FR"):
        if parent in weekly.territory.values:
            assert np.isnan(weekly.sel(territory=parent).item()), parent
    assert weekly.sel(territory="2A").item() == 12  # the commune still sums into its département
    # A 9-digit code that is no EPCI of the registry, and a malformed one, are refused.
    path.write_text(head + rows[0].replace(RENNES_METROPOLE, "999999999") + "\n"
                    + rows[1].replace("247700644", "24770064") + "\n")
    from features.errors import SourceError

    with pytest.raises(SourceError) as caught:
        CITY.parse(path, ParseContext(territories, dt.date(2022, 1, 1)))
    found = {(p.line, p.column): p for p in caught.value.problems}
    assert "'999999999'" in found[(2, "territory_code")].found
    assert "'24770064'" in found[(3, "territory_code")].found


def test_an_upload_the_ingest_does_not_take_is_undone(accepted, home, monkeypatch):
    """The file passed the checks but the ingest did not take it (e.g. the registry changed in
    between): the uploads in force are back as they were, byte for byte, and it is refused."""
    from types import SimpleNamespace

    from features.catalog import utcnow
    from service.usecases.uploads import upload_file

    def files() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in home.uploads_active_dir.iterdir()}

    def active_ids() -> set[str]:
        index = json.loads((home.uploads_dir / "index.json").read_text())["uploads"]
        return {r["id"] for r in index if r["status"] == "active"}

    def failed(settings, actor):
        return SimpleNamespace(sources=[], outcome="failed", vintage_id=None,
                               started_at=utcnow(),
                               message="territories could not be read; nothing ingested")

    before, ids, served = files(), active_ids(), CubeStore(home).current_vintage()["id"]
    assert len(ids) == 1  # the command line's upload, which this one would replace
    monkeypatch.setattr("service.usecases.ingest.ingest", failed)
    report = upload_file(home, CITY_FILE.read_bytes(), "rennes_social.csv",
                         sender="ville-rennes", role="city",
                         territories=frozenset({RENNES_METROPOLE}), actor="test")
    assert report["status"] == "refused" and report["upload_status"] == "undone"
    assert report["replaces"] == sorted(ids)
    assert "the ingest did not take the file: territories could not be read" in report["message"]
    assert files() == before and active_ids() == ids
    record = _record(home, report["id"])
    assert record["status"] == "undone" and record["message"] == report["message"]
    # Its own copy goes unless an upload kept in the index has the same (the first one, replaced).
    index = json.loads((home.uploads_dir / "index.json").read_text())["uploads"]
    copy = f"{record['sha256']}-{record['file']}"
    assert (home.uploads_dir / "raw" / copy).exists() == any(
        f"{r.get('sha256')}-{r['file']}" == copy for r in index if r["status"] != "undone")
    assert CubeStore(home).current_vintage()["id"] == served


def test_a_cell_too_long_for_the_csv_reader_is_a_problem_not_a_crash(accepted, client, home,
                                                                     tokens):
    before = _served(client, home, tokens["admin"])
    header = CITY_FILE.read_text().splitlines()[0]
    content = ("a" * 200_000 + "\n" + header + "\n").encode()
    response = client.post(f"{URL}?name=long.csv", data=content, content_type="text/csv",
                           headers=tokens["rennes"])
    assert response.status_code == 400, response.get_json()
    (problem,) = response.get_json()["details"]["report"]["problems"]
    assert "at most 131,072 characters" in problem["expected"]
    assert _served(client, home, tokens["admin"]) == before


def _sent_to_a_home_of_its_own(real_cube, tmp_path, sender: str):
    """The fixture file sent (202, its ingest queued) by a new token of ``sender`` scoped to
    Rennes Métropole, to a home of its own sharing the real cube: (settings, token, answer)."""
    from service.auth import create_token

    other = home_sharing(real_cube, tmp_path / "home")
    token = create_token(get_engine(other.database_url), sender, "city", [RENNES_METROPOLE])
    response = _post(_client(other), CITY_FILE.read_bytes(), "rennes_social.csv",
                     {"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.get_json()
    return other, token, response


def test_a_plain_ingest_settles_the_uploads_it_read(real_cube, tmp_path, runner):
    """``python -m service ingest`` (not only the upload's own job) puts an accepted upload in
    force with the vintage it made, and says so."""
    other, token, response = _sent_to_a_home_of_its_own(real_cube, tmp_path, "ville-rennes-2")
    upload_id = response.get_json()["id"]
    assert _record(other, upload_id)["status"] == "accepted"
    # No serve process runs a scheduler here: the answer says who will run the ingest.
    assert "no scheduler runs on this Vigie now" in response.get_json()["message"]
    env = {"VIGIE_HOME": str(other.home), "VIGIE_DATABASE_URL": other.database_url,
           "VIGIE_DATA_DIR": str(other.data_dir)}
    code, out, err = runner(["ingest"], env)
    assert code == 0, out + err
    record = _record(other, upload_id)
    assert record["status"] == "active" and record["vintage_id"]
    assert record["vintage_id"] == CubeStore(other).current_vintage()["id"]
    assert f"upload {upload_id}: active (in force: vintage {record['vintage_id']})" in out
    # With a live scheduler lease (a serve process leading), the answer does not say so.
    from service.jobs import acquire_lease

    assert acquire_lease(get_engine(other.database_url), "leader", ttl=60) is not None
    again = _post(_client(other), CITY_FILE.read_bytes(), "rennes_social.csv",
                  {"Authorization": f"Bearer {token}"})
    assert again.status_code == 202 and "no scheduler" not in again.get_json()["message"]


def test_an_ingest_that_stops_with_an_exception_undoes_the_upload_it_read(real_cube, tmp_path,
                                                                         monkeypatch):
    """Found by an outside attack: a file that made the ingest raise (a MemoryError) stayed
    'accepted' in force, so every later ingest read it again and stopped again."""
    import features.ingest
    from service.usecases.uploads import ingest_settling

    other, _, response = _sent_to_a_home_of_its_own(real_cube, tmp_path, "ville-rennes-3")
    upload_id = response.get_json()["id"]
    served = CubeStore(other).current_vintage()["id"]

    def out_of_memory(*args, **kwargs):
        raise MemoryError("the daily cube would hold 44,560 dates")

    monkeypatch.setattr(features.ingest, "run_ingest", out_of_memory)
    with pytest.raises(MemoryError):
        ingest_settling(other, actor="test")
    record = _record(other, upload_id)
    assert record["status"] == "undone"
    assert "MemoryError" in record["message"] and "44,560" in record["message"]
    assert not any(other.uploads_active_dir.iterdir())
    assert CubeStore(other).current_vintage()["id"] == served
