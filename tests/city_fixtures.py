"""A home for the city page's tests (``test_dashboard_city``, ``test_dashboard_city_browser``):
the real data plus the SYNTHETIC city file ``tests/fixtures/city_indicators_synthetic_epci.csv``
(weekly food-aid requests and 115 calls of Rennes and Bruz, two of the 43 communes of Rennes
Métropole) ingested as a new vintage, and baseline forecasts (the fast model, uncalibrated) of
what the page draws: the city indicators at the EPCI level, the département's beds, ICU beds
(the alert) and unemployment."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from features.settings import Settings
from tests.conftest import FIXTURES

CITY_FILE = FIXTURES / "city_indicators_synthetic_epci.csv"
RENNES_METROPOLE, RENNES, BRUZ = "243500139", "35238", "35047"
CITY_INDICATORS = ("emergency_housing_calls_115", "food_aid_requests")


def city_home(real_cube: Settings, folder: Path) -> Settings:
    """A home serving the real cube's vintages and, newest, one ingested from the real data and
    the synthetic city file (linked into ``folder / 'data'``)."""
    from features.ingest import run_ingest
    from tests.api_fixtures import home_sharing

    settings = home_sharing(real_cube, folder / "home")
    data = folder / "data"
    data.mkdir()
    for source in sorted(Path(real_cube.data_dir).iterdir()):
        if source.is_file():
            os.symlink(source, data / source.name)
    os.symlink(CITY_FILE, data / CITY_FILE.name)
    report = run_ingest(settings, data_dir=data)
    assert report.outcome == "ok", report.to_dict()
    return settings


def city_forecasts(settings: Settings) -> None:
    """Baseline forecasts from the day after each series' last observation: the two city
    indicators for Rennes Métropole, food-aid requests summed into Ille-et-Vilaine (drawn in
    its Territoire page's « Autres prévisions »), beds and ICU beds for every département,
    unemployment for Ille-et-Vilaine."""
    from models.forecasting import forecast
    from models.preparation import default_opener, prepare
    from models.registry import get_registry
    from models.store import ForecastStore
    from models.targets import resolve_target, to_hub

    opener, registry = default_opener(settings), get_registry(settings)
    store = ForecastStore.from_settings(settings)
    spec = registry.get("baseline")
    for name, frequency, level, territories in (
            *((n, "weekly", "epci", [RENNES_METROPOLE]) for n in CITY_INDICATORS),
            ("food_aid_requests", "weekly", "department", ["35"]),
            ("icu", "daily", "department", None), ("hosp", "daily", "department", None),
            ("unemployment", "quarterly", "department", ["35"])):
        target = resolve_target(name, frequency, opener)
        y, _ = prepare(opener(target.frequency, None), target, level, territories)
        day = pd.Timestamp(y["date"].values[-1]) + pd.Timedelta(days=1)
        if target.unit == "wk":
            day += pd.Timedelta(days=(0 - day.weekday()) % 7)
        fc, meta = forecast(target, level, day, "baseline", opener, registry=registry,
                            calibrate=False, territories=territories)
        meta.update(target=name, frequency=frequency, level=level, model=spec.name,
                    model_version=spec.version)
        store.save(to_hub(fc, target, day), meta)
