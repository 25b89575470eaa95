"""Attacks on the surfaces of the cities / scale session (fast path, uploads, derived targets,
city pages, scoped tokens), each one a request an outsider can send; every test failed before
its fix."""

from __future__ import annotations

URL = "/api/v1/forecasts?target=icu&territory=75"


def _app(settings, fast: bool, **config):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": settings, "FAST_PATH": fast,
                       "RATELIMIT_ENABLED": True, "TOKEN_CACHE_SECONDS": 0.2, **config})


def test_fast_path_keeps_every_limit_of_a_multi_limit_rate(api_settings, auth):
    """``RATELIMIT_TOKEN = "1000 per minute;3 per 10 seconds"``: Flask-Limiter applies both;
    the fast path once counted only the first, so cached reads escaped the burst limit."""
    codes = {}
    for fast in (False, True):
        app = _app(api_settings, fast, RATELIMIT_TOKEN="1000 per minute;3 per 10 seconds",
                   RATELIMIT_PUBLIC="1000 per minute;3 per 10 seconds")
        client = app.test_client()
        for who, headers in (("token", auth["crisis_cell"]), ("public", {})):
            got = [client.get(URL, headers=headers,
                              environ_base={"REMOTE_ADDR": f"192.0.2.{60 + fast}"}).status_code
                   for _ in range(6)]
            codes[fast, who] = got
    for who in ("token", "public"):
        assert codes[False, who] == codes[True, who] == [200] * 3 + [429] * 3, (who, codes)


def test_an_upload_with_two_file_parts_is_refused_not_half_read(api_settings):
    """multipart with two ``file`` parts (or a second file under another field): the first was
    taken and the second dropped unread (here a file for another EPCI's commune); now 400,
    nothing kept."""
    import io

    from features.catalog import get_engine
    from service.auth import create_token

    token = create_token(get_engine(api_settings.database_url), "hh-two-files", "city",
                         territories=["243500139"])
    client = _app(api_settings, True, RATELIMIT_ENABLED=False).test_client()
    head = "territory_code,date,indicator,value,unit,source,frequency,aggregation\n"
    mine = head + "35238,2021-06-05,hh_calls,5,calls/week,T,weekly,sum\n"
    other = head + "69123,2021-06-05,hh_calls,5,calls/week,T,weekly,sum\n"
    for data in ({"file": [(io.BytesIO(mine.encode()), "one.csv"),
                           (io.BytesIO(other.encode()), "two.csv")]},
                 {"file": (io.BytesIO(mine.encode()), "one.csv"),
                  "extra": (io.BytesIO(other.encode()), "two.csv")}):
        response = client.post("/api/v1/uploads", data=data, content_type="multipart/form-data",
                               headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 400, response.get_json()
        assert "one file per upload" in response.get_json()["message"]


def test_an_upload_dated_1900_is_refused_before_it_stretches_the_cube(api_settings):
    """A two-row daily file, one row dated 1900-01-01, was accepted; its ingest then built a
    daily cube of 44,560 dates for every territory (MemoryError under a 4 GB cap on a running
    server). Now the date is refused, with its line and column."""
    from features.catalog import get_engine
    from service.auth import create_token

    token = create_token(get_engine(api_settings.database_url), "hh-old-date", "city",
                         territories=["243500139"])
    client = _app(api_settings, True, RATELIMIT_ENABLED=False).test_client()
    text = ("territory_code,date,indicator,value,unit,source,frequency,aggregation\n"
            "35238,2021-06-05,hh_old,5,calls/day,T,daily,sum\n"
            "35238,1900-01-01,hh_old,5,calls/day,T,daily,sum\n")
    response = client.post("/api/v1/uploads?name=old.csv", data=text.encode(),
                           content_type="text/csv", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400, response.get_json()
    (problem,) = response.get_json()["details"]["report"]["problems"]
    assert (problem["line"], problem["column"]) == (3, "date"), problem
    assert problem["expected"] == "a date not before 2010-01-01", problem


def test_token_scope_codes_are_ascii_digits_and_names_printable():
    """``--territory ３５２３８`` (full-width digits) passed the scope's pattern (``\\d`` is any
    Unicode digit); a name with an escape sequence (``evil\\x1b[31m``) was stored and printed
    as such by ``token list``."""
    import pytest

    from service.auth import check_scope, create_token

    for code in ("３５２３８", "٣٥٢٣٨", "24350013９"):
        with pytest.raises(ValueError, match="expected a commune INSEE code"):
            check_scope("city", [code])
    assert check_scope("city", ["35238", "2A004", "243500139"]) == ["35238", "2A004",
                                                                   "243500139"]
    for name in ("evil\x1b[31m", "a\nb", "x" * 101):
        with pytest.raises(ValueError, match="token name"):
            create_token(None, name, "analyst")


def test_forecast_with_an_unknown_model_is_a_clear_error(api_settings, runner, tmp_path):
    """``forecast --model naive`` printed a KeyError traceback; now exit 2 and the registry's
    message (the models it knows)."""
    env = {"VIGIE_HOME": str(api_settings.home), "VIGIE_DATA_DIR": str(api_settings.data_dir),
           "VIGIE_DATABASE_URL": api_settings.database_url}
    code, _, err = runner(["forecast", "--target", "inc_hosp", "--level", "department",
                           "--territory", "35", "--sequential", "--model", "naive",
                           "--out", str(tmp_path / "f.csv")], env)
    assert code == 2, err
    assert "--model: unknown model 'naive'; registered: " in err and "baseline" in err
