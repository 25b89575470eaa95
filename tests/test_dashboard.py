"""The dashboard's server side: pages, page data, roles, the tile grid, the track record.

Browser behaviour (charts drawn, no console error, scenario runs) is in
``test_dashboard_browser.py``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.settings import Settings
from service.dashboard import grid

PAGES = ["/", "/territoire/69", "/territoire/FR", "/territoire/R84", "/scenarios", "/precision",
         "/methodes"]


def _departements(settings: Settings) -> set[str]:
    from features.store import CubeStore

    ds = CubeStore(settings).open("yearly")
    return {str(c) for c, lvl in zip(ds["territory"].values, ds["territory_level"].values,
                                     strict=True) if lvl == "department"}


def test_grid_holds_each_departement_once(api_settings: Settings) -> None:
    tiles = grid.tiles()
    codes = [t["code"] for t in tiles]
    assert len(codes) == len(set(codes)) == 101
    assert set(codes) == _departements(api_settings)
    cells = {(t["col"], t["row"]) for t in tiles}
    assert len(cells) == 101  # no two tiles on one cell


def test_grid_is_the_documented_assignment() -> None:
    recomputed = {t["code"]: (t["col"], t["row"]) for t in grid.parse_grid(grid.assign())}
    frozen = {t["code"]: (t["col"], t["row"]) for t in grid.tiles()}
    assert recomputed == frozen


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_in_french(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.data[:300]
    html = response.get_data(as_text=True)
    assert '<html lang="fr">' in html
    assert "cdn" not in html.lower()  # everything is served locally


def test_unknown_territory_is_a_french_404(client) -> None:
    response = client.get("/territoire/20")
    assert response.status_code == 404
    assert "Territoire inconnu" in response.get_data(as_text=True)


def test_map_page_draws_every_tile(client) -> None:
    html = client.get("/").get_data(as_text=True)
    assert html.count('class="tile"') == 101
    assert 'href="/territoire/2A"' in html and 'href="/territoire/976"' in html


def test_plotly_served_from_the_package_gzipped_and_cached(client) -> None:
    plain = client.get("/tableau/vendor/plotly.min.js")
    assert plain.status_code == 200 and plain.data.startswith(b"/**")
    zipped = client.get("/tableau/vendor/plotly.min.js", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == plain.data
    assert len(zipped.data) < len(plain.data) / 2
    again = client.get("/tableau/vendor/plotly.min.js",
                       headers={"If-None-Match": plain.headers["ETag"].strip('"')})
    assert again.status_code == 304


@pytest.mark.parametrize("role", ["public", "analyst", "planner", "admin"])
def test_whoami(client, auth, role: str) -> None:
    body = client.get("/tableau/moi", headers=auth[role]).get_json()
    assert body["role"] == role
    assert body["authenticated"] is (role != "public")


def test_bad_token_is_refused(client) -> None:
    assert client.get("/tableau/moi", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_territory_data_has_four_panels_with_forecast_and_capacity(client) -> None:
    body = client.get("/tableau/donnees/territoire/75").get_json()
    panels = {p["key"]: p for p in body["panels"]}
    assert list(panels) == ["admissions", "beds", "icu", "er"]
    icu = panels["icu"]
    assert icu["observed"]["available"] and icu["observed"]["vintage_id"]
    # The synthetic ICU forecast of the API fixtures: 7 and 14 days ahead, median 800.
    assert icu["forecast"]["available"] and icu["forecast"]["horizons"] == [7, 14]
    assert icu["forecast"]["q50"] == [800.0, 800.0]
    assert icu["forecast"]["q05"][0] < icu["forecast"]["q25"][0] < 800.0
    assert icu["capacity"]["value"] > 0
    # SurSaUD is regional: Paris's panel shows Île-de-France.
    assert panels["er"]["territory"] == "R11"
    # No forecast of hospital beds in the fixtures: said so, in a 200.
    assert panels["beds"]["forecast"]["available"] is False


def test_small_counts_stay_suppressed_for_the_public(client, auth) -> None:
    public = client.get("/tableau/donnees/territoire/48").get_json()
    analyst = client.get("/tableau/donnees/territoire/48", headers=auth["analyst"]).get_json()
    pub_icu = next(p for p in public["panels"] if p["key"] == "icu")["observed"]
    ana_icu = next(p for p in analyst["panels"] if p["key"] == "icu")["observed"]
    assert pub_icu["suppressed"] > 0 and pub_icu["threshold"] == 10
    assert ana_icu["suppressed"] == 0
    shown = [v for v in pub_icu["values"] if v is not None]
    assert all(v == 0 or v >= 10 for v in shown)


def test_overview_data(client) -> None:
    body = client.get("/tableau/donnees/ensemble").get_json()
    alerts = body["alerts"]
    assert alerts["available"]
    assert set(alerts["items"]) == {t["code"] for t in grid.tiles()}
    assert alerts["items"]["75"]["level"] in ("red", "orange", "yellow", "green")
    assert body["observed"]["available"] and body["forecast"]["available"]


def test_scenario_definition_for_the_editor(client) -> None:
    body = client.get("/tableau/donnees/scenario/lockdown_2020_11").get_json()
    assert body["name"] == "lockdown_2020_11" and body["interventions"]
    assert not any(k.startswith("_") for k in body)  # no server paths
    assert client.get("/tableau/donnees/scenario/nope").status_code == 404


def test_methods_page_lists_sources_licences_and_models(client) -> None:
    html = client.get("/methodes").get_data(as_text=True)
    assert "Licence Ouverte 2.0" in html and "CC BY 4.0" in html
    assert "ensemble" in html and "baseline" in html
    assert "strictement compris entre 0 et 10" in html


def test_every_registered_model_is_described_in_french() -> None:
    """The methods page explains each model a forecast may come from; a new one needs words."""
    from models.registry import get_registry
    from service.dashboard import MODEL_FR

    missing = sorted(set(get_registry().names()) - set(MODEL_FR))
    assert not missing, f"no French description in MODEL_FR for {missing}"
    js = (Path(__file__).parents[1] / "service/static/js/precision.js").read_text()
    short = js[js.index("var MODEL_FR"):js.index("};", js.index("var MODEL_FR"))]
    assert all(f"{name}:" in short for name in get_registry().names())


def test_track_record_scores_published_forecasts(real_cube: Settings, tmp_path) -> None:
    """A perfect forecast scores WIS 0, i.e. 0 relative to the baseline; the baseline 1."""
    from features.store import CubeStore
    from models.base import QUANTILES
    from models.store import ForecastStore
    from service.dashboard.accuracy import score_runs

    ds = CubeStore(real_cube).open("weekly")
    fr = ds["inc_hosp"].sel(territory="FR").to_series().dropna()
    store = ForecastStore(tmp_path / "forecasts")
    for day in (pd.Timestamp("2021-03-01"), pd.Timestamp("2021-03-15")):
        ends = [day + pd.Timedelta(days=5 + 7 * (h - 1)) for h in (1, 2)]
        for model in ("baseline", "perfect"):
            rows = []
            for h, end in zip((1, 2), ends, strict=True):
                truth = float(fr.loc[end])
                for q in QUANTILES:
                    value = truth if model == "perfect" else truth * (0.5 + q)
                    rows.append((str(day.date()), f"{h} wk ahead inc hosp", str(end.date()), "FR",
                                 "quantile", q, value))
            frame = pd.DataFrame(rows, columns=["forecast_date", "target", "target_end_date",
                                                "location", "type", "quantile", "value"])
            store.save(frame, {"target": "inc_hosp", "frequency": "weekly", "level": "national",
                               "model": model, "model_version": "1", "vintage_id": "x",
                               "as_of": str(day.date())})
    groups = score_runs(store.list_runs(), CubeStore(real_cube))
    assert len(groups) == 1
    group = groups[0]
    assert group["forecast_dates"] == ["2021-03-01", "2021-03-15"]
    summary = {(s["model"], s["horizon"]): s for s in group["summary"]}
    assert summary[("perfect", 1)]["rel_wis"] == 0.0 and summary[("perfect", 1)]["wis"] == 0.0
    assert summary[("baseline", 2)]["rel_wis"] == 1.0
    assert summary[("perfect", 1)]["cov50"] == 1.0
    assert np.isclose(summary[("baseline", 1)]["cov90"], 1.0)  # 0.55×…1.45× truth: covers it
    assert len(group["by_date"]) == 2 * 2 * 2  # models × dates × horizons
