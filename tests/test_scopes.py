"""Territorial scopes (issue 16): a ``city`` token reads its territories unsuppressed and the
public answers elsewhere, on every endpoint.

The home: the SYNTHETIC city file of tests/fixtures/city_indicators_synthetic_epci.csv (Rennes
35238 and Bruz 35047, Rennes Métropole 243500139; Bruz's 115 calls mostly below the threshold)
and, made from it here, a second city in the same département: Vitré (35360, 30 % of Rennes'
values) and Châteaubourg (35068, Bruz's small values), Vitré Communauté (200039022). Ille-et-
Vilaine (35) sums the four communes, so a scope's own small counts could give the other city's
back through the département: the scope check must see to that.

Every GET route of the app (the OpenAPI paths and the dashboard's data routes) is read with the
public, the Rennes token (scope: the EPCI), the Vitré token (scope: the commune 35360) and an
analyst, in an order that would let the response cache leak (analyst first). A row of a scoped
answer about a territory outside its scope must be the public's row, byte for byte."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import re

import pandas as pd
import pytest

from tests.conftest import FIXTURES

RENNES_METROPOLE, RENNES, BRUZ = "243500139", "35238", "35047"
VITRE_COMMUNAUTE, VITRE, CHATEAUBOURG = "200039022", "35360", "35068"
RENNES_SCOPE = {RENNES_METROPOLE, RENNES, BRUZ}
VITRE_SCOPE = {VITRE}
CODES = [BRUZ, RENNES, RENNES_METROPOLE, CHATEAUBOURG, VITRE, VITRE_COMMUNAUTE, "35", "R53",
         "FR"]
INDICATORS = ["emergency_housing_calls_115", "food_aid_requests"]
TERRITORY_KEYS = ("territory", "location", "code")
TERRITORY_CODE = re.compile(r"FR|R\d{2}|\d{2,3}|2[AB]|\d{5}|2[AB]\d{3}|\d{9}")


def _code_of(record: dict) -> str | None:
    """The territory a record is about, or None."""
    return next((str(record[k]) for k in TERRITORY_KEYS if isinstance(record.get(k), str)
                 and TERRITORY_CODE.fullmatch(record[k])), None)


def two_cities(path) -> None:
    """The two cities' file (module docstring) at ``path``."""
    rennes = pd.read_csv(FIXTURES / "city_indicators_synthetic_epci.csv", dtype=str)
    vitre = rennes.copy()
    vitre["territory_code"] = vitre["territory_code"].map({RENNES: VITRE, BRUZ: CHATEAUBOURG})
    value = vitre["value"].astype(float)
    vitre["value"] = value.where(vitre["territory_code"] == CHATEAUBOURG,
                                 (value * 0.3).round()).astype(int).astype(str)
    pd.concat([rennes, vitre]).to_csv(path, index=False)


def _forecast_runs(settings, vintage_id: str, weekly) -> None:
    """Forecast runs of the 115 calls at every level the file reaches, with medians equal to
    the last observed week (small for Bruz and Châteaubourg)."""
    from models.base import QUANTILES
    from models.store import ForecastStore

    store = ForecastStore.from_settings(settings)
    calls = weekly["emergency_housing_calls_115"]
    last = pd.Timestamp(calls["date"].values[-1])
    levels = {"commune": [RENNES, BRUZ, VITRE, CHATEAUBOURG],
              "epci": [RENNES_METROPOLE, VITRE_COMMUNAUTE], "department": ["35"]}
    for level, codes in levels.items():
        rows = []
        for h in (1, 2):
            end = (last + pd.Timedelta(weeks=h)).date().isoformat()
            for code in codes:
                median = float(calls.sel(territory=code).values[-1])
                for q in QUANTILES:
                    rows.append((last.date().isoformat(), f"{h} wk ahead 115", end, code,
                                 "quantile", q, round(median * (0.5 + q), 3)))
        store.save(pd.DataFrame(rows, columns=["forecast_date", "target", "target_end_date",
                                               "location", "type", "quantile", "value"]),
                   {"target": "emergency_housing_calls_115", "frequency": "weekly",
                    "level": level, "model": "ensemble", "model_version": "1.0",
                    "vintage_id": vintage_id, "as_of": last.date().isoformat()})


@pytest.fixture(scope="module")
def home(tmp_path_factory, data_dir):
    from features.cube import build_cube
    from features.settings import Settings
    from features.sources.base import ParseContext
    from features.sources.city_indicators import SOURCE as CITY
    from features.sources.insee_territories import load_territories
    from features.store import CubeStore

    folder = tmp_path_factory.mktemp("scopes")
    territories = load_territories(data_dir)[0]
    two_cities(folder / "cities.csv")
    result = CITY.parse(folder / "cities.csv", ParseContext(territories, dt.date(2022, 1, 1)))
    weekly = build_cube([result], territories)[0]["weekly"]
    settings = Settings.from_env(home=str(folder), data_dir=str(folder),
                                 database_url=f"sqlite:///{folder}/vigie.sqlite")
    vintage = CubeStore(settings).write_vintage({"weekly": weekly}, territories.tables,
                                                {"data_dir": str(folder)})
    _forecast_runs(settings, vintage, weekly)
    return settings


@pytest.fixture(scope="module")
def app(home):
    from service.app import create_app

    return create_app({"TESTING": True, "SETTINGS": home, "RATELIMIT_ENABLED": False})


@pytest.fixture(scope="module")
def headers(home):
    from service.usecases.tokens import create_token

    def bearer(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    return {"public": {},
            "analyst": bearer(create_token(home, "analyste", "analyst")),
            "rennes": bearer(create_token(home, "Rennes", "city",
                                          territories=[RENNES_METROPOLE])),
            "vitre": bearer(create_token(home, "Vitré", "city", territories=[VITRE]))}


# ---------------------------------------------------------------- the requests
def _path_values(client, headers) -> dict[str, list[str]]:
    """Values for each path parameter name: codes, indicator and target names, run ids."""
    auth = headers["analyst"]
    runs = client.get("/api/v1/forecasts/runs?per_page=100", headers=auth).get_json()
    vintages = client.get("/api/v1/vintages", headers=auth).get_json()
    return {"code": CODES, "name": INDICATORS + ["ensemble"],
            "run_id": [r["run_id"] for r in runs["items"]] + ["1"],
            "vintage_id": [v["id"] for v in vintages["items"]], "filename": ["css/vigie.css"]}


def _queries(params: dict[str, list | None]) -> list[str]:
    """Query strings exercising a route's parameters: each territory code (alone and the
    two cities' EPCI with the département), each indicator or target, each format and level."""
    choices: list[list[str]] = []
    if "territory" in params:
        choices.append(["", *[f"territory={c}" for c in CODES],
                        f"territory={RENNES_METROPOLE},{VITRE_COMMUNAUTE},35",
                        f"territory={BRUZ},{CHATEAUBOURG}"])
    for name in ("indicator", "target"):
        if name in params:
            choices.append([f"{name}={i}" for i in INDICATORS])
    if "cible" in params:
        choices.append([f"cible={i}&frequence=weekly" for i in INDICATORS])
    if "format" in params:
        choices.append([f"format={f}" for f in params["format"] or ["json"]])
    queries = ["&".join(q for q in combo if q) for combo in itertools.product(*choices)]
    if "level" in params:  # each level with the first of the other choices
        first = [c[1] if c[0] == "" and len(c) > 1 else c[0] for c in choices]
        queries += ["&".join(q for q in (*first, f"level={v}") if q)
                    for v in params["level"] or []]
    size = "per_page=1000" if "per_page" in params else ""
    return ["&".join(x for x in (q, size) if x) for q in queries] or [size]


def _routes(app, client, headers) -> list[str]:
    """Every GET URL to try: each OpenAPI path and each other GET route of the app, its path
    parameters filled with :func:`_path_values`, its query with :func:`_queries`."""
    spec = client.get("/api/v1/openapi.json").get_json()
    templates: dict[str, dict] = {}
    for path, ops in spec["paths"].items():
        if "get" in ops:
            templates[path] = {p["name"]: p.get("schema", {}).get("enum")
                               for p in ops["get"].get("parameters", []) if p["in"] == "query"}
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.rule.startswith(("/api/v1", "/static", "/docs")):
            # A dashboard route's query: the « Autres prévisions » of a territory.
            query = {"cible": None} if rule.rule.endswith("/prevision") else {}
            templates.setdefault(re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), query)
    values = _path_values(client, headers)
    urls = []
    for path, params in sorted(templates.items()):
        names = re.findall(r"{([^}]+)}", path)
        for filled in itertools.product(*[values.get(n, ["x"]) for n in names]):
            url = path
            for n, v in zip(names, filled, strict=True):
                url = url.replace("{" + n + "}", v)
            urls += [f"{url}?{q}" if q else url for q in _queries(params)]
    return urls


# ---------------------------------------------------------------- comparing answers
def _rows(response) -> list[tuple[str, tuple, str]] | None:
    """(territory, identity, content) of every record of an answer about one territory: JSON
    objects holding a territory key (with their nested values), CSV rows with such a column.
    Identity: the record's text fields (dates, target names…); content: the whole record."""
    body = response.get_data(as_text=True)
    if response.mimetype == "application/json":
        records = []

        def walk(node):
            if isinstance(node, dict):
                if _code_of(node) is not None:
                    records.append(node)
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(json.loads(body))
    elif response.mimetype == "text/csv":
        records = list(csv.DictReader(io.StringIO(body)))
    else:
        return None
    out = []
    for record in records:
        code = _code_of(record) or ""  # "": about no territory
        identity = tuple(sorted((k, v) for k, v in record.items()
                                if isinstance(v, str) and k not in ("value", "median")))
        out.append((code, identity, json.dumps(_without_reasons(record), sort_keys=True)))
    return out


def _without_reasons(node):
    """A record without the French reasons of the parts it cannot show: a scoped token is told
    « hors des territoires de votre jeton » where the public is told it needs a token (both
    refused, same data: none)."""
    if isinstance(node, dict):
        return {k: _without_reasons(v) for k, v in node.items()
                if not (k == "reason" and node.get("available") is False)}
    if isinstance(node, list):
        return [_without_reasons(v) for v in node]
    return node


def _outside(rows, scope: set[str]) -> list[tuple[str, tuple, str]]:
    return sorted(r for r in rows if r[0] not in scope)


def test_every_route_gives_a_scoped_token_the_public_answer_outside_its_scope(
        app, headers):
    client = app.test_client()
    urls = _routes(app, client, headers)
    assert len(urls) > 200 and any(u.startswith("/api/v1/forecasts?") for u in urls)
    checked = revealed = hidden_elsewhere = 0
    for url in urls:
        answers = {who: client.get(url, headers=headers[who])
                   for who in ("analyst", "rennes", "public", "vitre")}
        public = answers["public"]
        public_rows = _rows(public) if public.status_code == 200 else []
        analyst_rows = _rows(answers["analyst"]) if answers["analyst"].status_code == 200 \
            else []
        for who, scope in (("rennes", RENNES_SCOPE), ("vitre", VITRE_SCOPE)):
            answer = answers[who]
            assert answer.status_code < 500 or answer.status_code in (
                public.status_code, answers["analyst"].status_code), \
                (url, who, answer.get_data(as_text=True)[:300])
            if answer.status_code != 200:
                continue
            if answer.status_code == 200 and public.status_code == 200:
                assert "public" not in answer.headers.get("Cache-Control", ""), url
            rows = _rows(answer)
            if rows is None:  # a page or an asset: the same bytes as the public's
                if public.status_code == 200 and answer.mimetype == public.mimetype:
                    continue
                continue
            checked += 1
            # Outside its scope: exactly the public's records (none where the public is
            # refused, e.g. commune-level data).
            assert _outside(rows, scope) == _outside(public_rows or [], scope), (url, who)
            mine = {r for r in rows if r[0] in scope}
            revealed += len(mine - set(public_rows or []))
            if analyst_rows:
                hidden_elsewhere += len(set(_outside(analyst_rows, scope))
                                        - set(_outside(rows, scope)))
    # The test can fail: analysts see cells outside each scope that the public (and so the
    # scoped tokens) do not, and the scoped tokens see their own cells the public does not.
    assert checked > 100 and revealed > 50 and hidden_elsewhere > 50, \
        (checked, revealed, hidden_elsewhere)


def test_a_scoped_token_reads_its_small_counts_and_not_the_other_citys(app, headers):
    client = app.test_client()

    def calls(who, code):
        r = client.get(f"/api/v1/data?indicator=emergency_housing_calls_115&territory={code}"
                       "&per_page=1000", headers=headers[who])
        return r.status_code, r.get_json()

    status, analyst = calls("analyst", BRUZ)
    small = [r for r in analyst["items"] if r["value"] is not None and 0 < r["value"] < 10]
    assert status == 200 and len(small) > 20
    status, mine = calls("rennes", BRUZ)
    assert status == 200 and mine["items"] == analyst["items"]
    assert calls("public", BRUZ)[0] == 403
    # The other city's commune: refused as for the public; its EPCI: the public's answer.
    assert calls("rennes", CHATEAUBOURG)[0] == 403 and calls("vitre", BRUZ)[0] == 403
    assert calls("rennes", VITRE_COMMUNAUTE) == calls("public", VITRE_COMMUNAUTE)
    assert calls("rennes", "35") == calls("public", "35")
    theirs = calls("analyst", CHATEAUBOURG)[1]["items"]
    assert sum(1 for r in theirs if r["value"] is not None and 0 < r["value"] < 10) > 20


def test_the_département_is_never_covered_and_a_leaking_scope_stays_public(home):
    """Vitré's scope is its commune only: showing Vitré's cells must not give back
    Châteaubourg's through Vitré Communauté = Vitré + Châteaubourg (its total is public)."""
    from features import disclosure
    from features.disclosure.scopes import scope_masks
    from features.store import CubeStore
    from service.scopes import covered, epci_members

    store = CubeStore(home)
    vintage = store.current_vintage()["id"]
    public = disclosure.store_masks(store, vintage, home.small_count_threshold)
    weekly = store.open("weekly", vintage_id=vintage)
    members = epci_members(store)
    assert covered([RENNES_METROPOLE], members) >= {RENNES, BRUZ} and \
        "35" not in covered([RENNES_METROPOLE], members)
    name = "emergency_housing_calls_115"
    rows = {c: i for i, c in enumerate(public.codes["weekly"])}
    for scope in ([RENNES_METROPOLE], [VITRE], [RENNES, BRUZ, VITRE, CHATEAUBOURG]):
        masks = scope_masks(public, {"weekly": weekly}, covered(scope, members))
        mine, theirs = masks.hidden["weekly"][name], public.hidden["weekly"][name]
        inside = [rows[c] for c in covered(scope, members) if c in rows]
        outside = [i for c, i in rows.items() if c not in covered(scope, members)]
        assert (mine[outside] == theirs[outside]).all()  # never less hidden outside
        if name in masks.figures["scope"]["shown"]:
            assert not mine[inside].any()
        else:
            assert (mine == theirs).all()
    # Vitré alone: Vitré Communauté's total and Vitré give Châteaubourg back wherever it is
    # hidden for the public with its total shown; so the scope stays public for that count.
    alone = scope_masks(public, {"weekly": weekly}, covered([VITRE], members))
    chateaubourg = public.hidden["weekly"][name][rows[CHATEAUBOURG]]
    total_shown = ~public.hidden["weekly"][name][rows[VITRE_COMMUNAUTE]]
    if (chateaubourg & total_shown).any():
        assert name in alone.figures["scope"]["kept_public"]


def test_scoped_token_cli_list_and_audit(home, app, headers):
    from service.audit import query
    from service.usecases.tokens import list_tokens

    rows = {t["name"]: t for t in list_tokens(home)}
    assert rows["Rennes"]["territories"] == [RENNES_METROPOLE]
    assert rows["analyste"]["territories"] is None
    client = app.test_client()
    assert client.get(f"/api/v1/data?indicator=food_aid_requests&territory={BRUZ}",
                      headers=headers["rennes"]).status_code == 200
    audited, _ = query(app.extensions["vigie"].engine, actor="Rennes")
    assert audited and audited[0]["details"] == {"territories": [RENNES_METROPOLE]}


@pytest.mark.parametrize("args, message", [
    (["--role", "city", "--name", "x"], "needs its territories"),
    (["--role", "analyst", "--name", "x", "--territory", RENNES], "for role 'city' only"),
    (["--role", "city", "--name", "x", "--territory", "35"], "expected a commune INSEE code"),
    (["--role", "city", "--name", "x", "--territory", "35238\x00"],
     "expected a commune INSEE code"),
    (["--role", "city", "--name", "x", "--territory", "999999999"], "unknown territory"),
])
def test_token_create_refuses_bad_scopes(runner, home, args, message):
    env = {"VIGIE_HOME": str(home.home), "VIGIE_DATABASE_URL": home.database_url}
    code, _, err = runner(["token", "create", *args], env)
    assert code == 2 and message in err


def test_token_create_takes_both_grammars(runner, home):
    env = {"VIGIE_HOME": str(home.home), "VIGIE_DATABASE_URL": home.database_url}
    for args in (["--territory", RENNES, "--territory", RENNES_METROPOLE],
                 ["--territory", RENNES, RENNES_METROPOLE]):
        code, out, err = runner(["token", "create", "--role", "city", "--name", "g", *args],
                                env)
        assert code == 0 and out.strip().startswith("vg_"), err
    code, out, _ = runner(["token", "list"], env)
    assert out.count(f"territories={RENNES},{RENNES_METROPOLE}") == 2


def test_commune_forecasts_for_the_scope_only(app, headers):
    client = app.test_client()
    url = "/api/v1/forecasts?target=emergency_housing_calls_115&level=commune&territory="
    mine = client.get(url + BRUZ, headers=headers["rennes"])
    assert mine.status_code == 200, mine.get_json()
    full = client.get(url + BRUZ, headers=headers["analyst"]).get_json()
    assert mine.get_json()["items"] == full["items"] and full["items"]
    for query in (url + CHATEAUBOURG, url + f"{BRUZ},{CHATEAUBOURG}", url.split("&terr")[0]):
        assert client.get(query, headers=headers["rennes"]).status_code == 403
        assert client.get(query, headers=headers["public"]).status_code == 403


def test_outside_its_scope_a_city_token_is_not_asked_for_a_token(app, headers):
    from service.dashboard.messages import reason_fr

    client = app.test_client()
    for url in (f"/api/v1/data?indicator=food_aid_requests&territory={CHATEAUBOURG}",
                "/api/v1/forecasts?target=emergency_housing_calls_115&level=commune"
                f"&territory={CHATEAUBOURG}"):
        theirs = client.get(url, headers=headers["rennes"])
        public = client.get(url, headers=headers["public"])
        assert theirs.status_code == public.status_code == 403, url
        mine, anyone = theirs.get_json(), public.get_json()
        assert mine["code"] == anyone["code"] == "aggregated_only"
        assert mine["details"]["scoped"] is True and "scoped" not in anyone["details"]
        assert "needs a token" not in mine["message"] and "needs a token" in anyone["message"]
        said = reason_fr(403, mine)
        assert "jeton" in said and "demandent un jeton" not in said
        assert "demandent un jeton" in reason_fr(403, anyone)
