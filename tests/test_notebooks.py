"""The analyst notebooks run top to bottom on the real data, and are committed without outputs.

Each notebook is executed with nbclient in a home of its own session (``notebook_home``): the
catalog of the session's ``real_cube`` (no second full ingest of the shared data) plus a second
vintage that adds the Rennes city-indicator fixture, so that notebook 1 has two vintages to
compare. Parameters are overridden papermill-style, with a cell inserted after the cell tagged
``parameters``, to keep the runs short (one région, two forecast dates, few scenario samples).

Notebook 2 registers a model; the test then checks, through the service's Flask test client,
that ``/api/v1/models`` lists it and that a forecast job run with it is served by
``/api/v1/forecasts``.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from features.settings import PROJECT_ROOT, Settings
from tests.api_fixtures import home_sharing

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TIMEOUT_PER_CELL = 600

#: Parameters that keep each notebook's run short in the test suite.
FAST = {
    "01_explorer_les_donnees": {},
    "02_reentrainer_et_evaluer": {
        "TERRITOIRES": ["R84"], "DEBUT": "2020-11-02", "FIN": "2020-11-16", "TOUS_LES": 14,
        "WARMUP": 0, "CALIBRER_PREVISION": False,
    },
    "03_scenarios": {"N_ECHANTILLONS": 100, "BIBLIOTHEQUE": ["status_quo", "curfew_18h"]},
    "04_nouvelle_source": {"MODELES": ["baseline", "ets"]},
}


def _parameters_cell(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    return tagged[0]


def _defined_names(source: str) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def execute(path: Path, overrides: dict) -> nbformat.NotebookNode:
    """Run a notebook (cwd = notebooks/) with parameter overrides; the executed copy. How long
    it takes is measured by ``bench/notebooks.py``, not asserted here."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    if overrides:
        cell = nbformat.v4.new_code_cell(
            "# parameters injected by tests/test_notebooks.py\n"
            + "\n".join(f"{name} = {value!r}" for name, value in overrides.items()))
        nb.cells.insert(_parameters_cell(nb) + 1, cell)
    NotebookClient(nb, timeout=TIMEOUT_PER_CELL, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    return nb


def ingest_with_city_fixture(settings: Settings, folder: Path):
    """Ingest ``settings.data_dir`` plus the Rennes city-indicator fixture (both linked into
    the new ``folder``) as a new vintage of ``settings``' home; the ingest report."""
    from features.ingest import run_ingest

    folder.mkdir()
    for source in sorted(settings.data_dir.iterdir()):
        if source.is_file():
            os.symlink(source, folder / source.name)
    os.symlink(FIXTURES / "city_indicators_rennes.csv", folder / "city_indicators_rennes.csv")
    return run_ingest(settings, data_dir=folder)


def text_outputs(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


# -- the committed notebooks ------------------------------------------------------------------
def test_notebooks_present():
    assert [p.stem for p in NOTEBOOKS] == sorted(FAST), "every notebook needs FAST parameters"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_stripped(path: Path):
    from notebooks.strip_outputs import problems

    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    found = problems(nb)
    assert not found, (f"{path.name} is committed with outputs: run "
                       f"'python notebooks/strip_outputs.py' ({'; '.join(found[:5])})")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_fast_parameters_exist(path: Path):
    """An override must replace a real parameter (a renamed one would be silently ignored)."""
    nb = nbformat.read(path, as_version=4)
    defined = _defined_names(nb.cells[_parameters_cell(nb)].source)
    assert set(FAST[path.stem]) <= defined, set(FAST[path.stem]) - defined


def test_strip_removes_outputs_and_counts():
    from notebooks.strip_outputs import problems, strip

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nb.cells[0].execution_count = 3
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"},
                                                  execution_count=3)]
    nb.metadata["widgets"] = {}
    assert len(problems(nb)) == 3
    assert problems(strip(nb)) == []
    assert nb.cells[0].source == "1 + 1"


# -- execution on the real data ---------------------------------------------------------------
@pytest.fixture(scope="session")
def notebook_home(real_cube: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home sharing the real cube's vintage, plus a newer vintage with the Rennes fixture."""
    settings = home_sharing(real_cube, tmp_path_factory.mktemp("notebook_home"))
    report = ingest_with_city_fixture(settings, settings.home / "data_with_city")
    assert report.outcome == "ok", report.to_dict()
    return settings


@pytest.fixture
def in_notebook_home(notebook_home: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The kernel inherits this process's environment: point it at ``notebook_home``."""
    monkeypatch.setenv("VIGIE_HOME", str(notebook_home.home))
    monkeypatch.setenv("VIGIE_DATA_DIR", str(notebook_home.data_dir))
    monkeypatch.setenv("VIGIE_DATABASE_URL", notebook_home.database_url)
    monkeypatch.delenv("VIGIE_DASK_ADDRESS", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return notebook_home


@pytest.mark.slow
def test_01_explorer_les_donnees(in_notebook_home: Settings):
    nb = execute(NOTEBOOK_DIR / "01_explorer_les_donnees.ipynb", FAST["01_explorer_les_donnees"])
    text = text_outputs(nb)
    assert "Un seul vintage" not in text
    # The newer vintage adds the fixture's city indicators: the comparison must show them.
    assert "food_aid_requests" in text and "ajoutée" in text


@pytest.mark.slow
def test_02_registered_model_is_served_and_forecasts(in_notebook_home: Settings):
    from features.catalog import get_engine
    from models.registry import get_registry
    from service.app import create_app
    from service.auth import create_token
    from service.jobs import get_run, run_pending

    settings = in_notebook_home
    nb = execute(NOTEBOOK_DIR / "02_reentrainer_et_evaluer.ipynb",
                 FAST["02_reentrainer_et_evaluer"])
    params = _defined_names(nb.cells[_parameters_cell(nb)].source)
    assert {"NOM_MODELE", "VERSION"} <= params
    name, version = "sarimax_urgences", "1.0"
    spec = get_registry(settings).get(name)
    assert (spec.version, spec.kind) == (version, "sarimax")
    assert spec.params["exog"] == ["er_visits_covid_rate", "sos_medecins_covid_rate"]

    client = create_app({"TESTING": True, "SETTINGS": settings,
                         "RATELIMIT_ENABLED": False}).test_client()
    listed = client.get("/api/v1/models", query_string={"per_page": 100})
    assert listed.status_code == 200
    served = {m["name"]: m for m in listed.get_json()["items"]}
    assert served[name]["current_version"] == version
    assert served[name]["versions"][0]["params"]["exog_lag"] == 1

    # Chosen for a forecast: the service's forecast job, triggered through the API.
    engine = get_engine(settings.database_url)
    token = create_token(engine, "test-notebooks", "admin")
    queued = client.post("/api/v1/jobs/forecast/run",
                         headers={"Authorization": f"Bearer {token}"},
                         json={"params": {"model": name, "runs": [["inc_hosp", "weekly"]],
                                          "levels": ["national"], "calibrate": False}})
    assert queued.status_code == 202, queued.get_json()
    run_id = queued.get_json()["id"]
    run_pending(engine, settings, worker="test-notebooks")
    job = get_run(engine, run_id)
    assert job["status"] == "ok", job["error"]
    [stored] = job["result"]["runs"]

    answer = client.get("/api/v1/forecasts", query_string={
        "target": "inc_hosp", "level": "national", "model": name})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["run"]["run_id"] == stored
    assert (body["run"]["model"], body["run"]["model_version"]) == (name, version)
    assert sorted(i["horizon"] for i in body["items"]) == [1, 2, 3, 4]


@pytest.mark.slow
def test_03_scenarios(in_notebook_home: Settings):
    nb = execute(NOTEBOOK_DIR / "03_scenarios.ipynb", FAST["03_scenarios"])
    text = text_outputs(nb)
    for scenario in ("status_quo", "curfew_18h", "confinement_local_4s",
                     "masques_et_teletravail"):
        assert scenario in text
    assert "is less than the minimum of 16" in text   # the invalid definition's errors


@pytest.mark.slow
def test_04_nouvelle_source(in_notebook_home: Settings):
    from features.store import CubeStore

    before = {v["id"] for v in CubeStore(in_notebook_home).list_vintages()}
    nb = execute(NOTEBOOK_DIR / "04_nouvelle_source.ipynb", FAST["04_nouvelle_source"])
    text = text_outputs(nb)
    assert "expected a Saturday" in text and "expected a count >= 0" in text
    # Rennes summed into Rennes Métropole and Ille-et-Vilaine: partial sums, their coverage.
    assert "population_share" in text and "243500139" in text
    store = CubeStore(in_notebook_home)
    new = [v for v in store.list_vintages() if v["id"] not in before]
    assert len(new) == 1
    weekly = store.open("weekly", vintage_id=new[0]["id"])
    series = weekly["food_aid_requests"].sel(territory="35238")
    assert int(series.notnull().sum()) > 80
