"""Model registry: name → forecaster class, default settings and version.

Built-in models are registered in code. Variants (same class, other settings, new version) can
be registered at run time, e.g. from an analyst's notebook, and are persisted as JSON under
``Settings.models_dir`` so that the service picks them up:

>>> from models.registry import get_registry                             # doctest: +SKIP
>>> get_registry().register("ets", kind="ets", params={"window": 26}, version="1.1-w26")

Only built-in classes (``kind``) can be referenced: a registry file never imports code. With
``VIGIE_STORE_URL`` set, the file is the object ``models/registry.json`` of that store (one
``PUT`` per save: a reader sees the previous file or the new one).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from features.storage.atomic import atomic_write_json
from models.base import Forecaster, UnknownParameterError
from models.baseline import Baseline
from models.ensemble import Ensemble
from models.growth import DampedGrowth
from models.learning import GlobalGBM
from models.prophet_model import ProphetForecaster
from models.stats import ETS, SARIMAX

#: Classes a registry entry may use, by kind.
KINDS: dict[str, type[Forecaster]] = {
    "baseline": Baseline,
    "ets": ETS,
    "sarimax": SARIMAX,
    "prophet": ProphetForecaster,
    "gbm": GlobalGBM,
    "ensemble": Ensemble,
    "growth": DampedGrowth,
}


@dataclass(frozen=True)
class ModelSpec:
    """One registered model version."""

    name: str
    kind: str
    version: str
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    created_at: str = ""

    def create(self, registry: Registry | None = None) -> Forecaster:
        """An unfitted forecaster with these settings; a model combining others (an
        ensemble) resolves their names in ``registry``."""
        cls = KINDS[self.kind]
        resolver = {"registry": registry} if cls.resolves_members else {}
        return cls(**self.params, **resolver)

    def check(self) -> None:
        """Refuse an unknown kind, or a setting the kind does not have (listing the valid
        ones).

        Raises
        ------
        ValueError
            :class:`models.base.UnknownParameterError` (also a ``TypeError``) for a setting.
        """
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; known: {sorted(KINDS)}")
        cls = KINDS[self.kind]
        try:
            cls.check_params(self.params, exclude=("registry",) if cls.resolves_members else ())
        except UnknownParameterError as exc:
            raise UnknownParameterError(
                f"model {self.name!r} version {self.version!r}: {exc}") from None


def _builtin_specs() -> list[ModelSpec]:
    return [
        ModelSpec("baseline", "baseline", "1.0", {}, "Hub baseline: last value, symmetric changes"),
        ModelSpec("ets", "ets", "1.0", {}, "ETS(A,Ad,N) on log1p, last 52 periods"),
        ModelSpec("sarimax", "sarimax", "1.0", {}, "ARIMA(1,1,1) on log1p (weekday SARIMA daily)"),
        ModelSpec("prophet", "prophet", "1.0", {}, "Prophet on log1p, last 30 periods, holidays"),
        # 1.0 versions stay resolvable: stored forecasts name the version that made them.
        ModelSpec("gbm", "gbm", "1.0", {"exog": ()}, "Global HistGradientBoosting of log growth"),
        ModelSpec("gbm", "gbm", "1.1", {}, "Global HistGradientBoosting of log growth; "
                  "own and parent growth, SOS Médecins and emergency-visit trends"),
        # An ensemble version pins its members' versions: a new gbm does not silently change
        # what ensemble 1.1 means.
        ModelSpec("ensemble", "ensemble", "1.0",
                  {"level_members": {}, "member_versions": {"gbm": "1.0"}},
                  "Median of ets, sarimax, gbm, baseline"),
        ModelSpec("ensemble", "ensemble", "1.1", {"member_versions": {"gbm": "1.1"}},
                  "Median of ets, sarimax, gbm, baseline; "
                  "régions and départements: gbm and baseline"),
        # 1.2 reads the leading signals (case and positivity growth) beside SurSaUD, every one
        # checked at each fit (not started, stopped, scheme changed: dropped and logged).
        ModelSpec("gbm", "gbm", "1.2", GBM_1_2, "Global HistGradientBoosting of log growth; "
                  "own and parent growth, SurSaUD, growth of case incidence and of test "
                  "positivity, each signal checked at the origin (dropped when stale)"),
        ModelSpec("ensemble", "ensemble", "1.2", {"member_versions": {"gbm": "1.2"}},
                  "As 1.1 with gbm 1.2 (leading signals)"),
        ModelSpec("growth", "growth", "1.0", GROWTH_1_0, "Damped growth of log admissions "
                  "led by case growth (own cases, région's for a département; admissions' "
                  "own growth when cases stop), spread from its own past errors"),
        # 1.3 adds the mechanistic growth member at every level: France median of five,
        # régions and départements median of three (gbm, baseline, growth).
        ModelSpec("ensemble", "ensemble", "1.3", ENSEMBLE_1_3,
                  "As 1.2 plus the damped-growth member at every level"),
        # gbm 1.3: 1.2's features with smaller, fewer trees (a third of the fitting time).
        ModelSpec("gbm", "gbm", "1.3", GBM_1_3, "As 1.2 with 40 trees of 7 leaves "
                  "(learning rate 0.16): about a third of 1.2's fitting time"),
        ModelSpec("ensemble", "ensemble", "1.4", ENSEMBLE_1_4,
                  "As 1.3 with gbm 1.3 (smaller, fewer trees)"),
        # gbm 1.4: 1.2's trees and features, one fit for all the steps (the step a feature).
        ModelSpec("gbm", "gbm", "1.4", GBM_1_4, "As 1.2 with one centre and one spread "
                  "model for all the horizons, the horizon a feature"),
        ModelSpec("ensemble", "ensemble", "1.5", ENSEMBLE_1_5,
                  "As 1.3 with gbm 1.4 (horizons pooled in one fit)"),
    ]


#: gbm 1.2: 1.1's SurSaUD indicators (level and changes, as before) and the SI-DEP case
#: incidence and test positivity as 1- and 2-week changes only, all checked signals. Levels
#: of incidence helped at 4 weeks in development but are the first thing to break when the
#: case-to-admission ratio moves (vaccination, Omicron's off-scale incidence, testing policy):
#: growth rates stay comparable (docs/MODELS.md).
GBM_1_2: dict[str, Any] = {
    "exog": (),
    "signals": ("sos_medecins_covid_rate", "er_visits_covid_rate", "incidence_rate_7d",
                "positivity_rate_7d"),
    "signal_levels": ("sos_medecins_covid_rate", "er_visits_covid_rate"),
}
#: growth 1.0: damping and case weight chosen on the development period (forecast dates
#: before 2021-03-01) from phi in {0.35, 0.5, 0.65, 0.8} x case weight in {0.5, 0.8, 1.0}:
#: lower damping factors and heavier case weights were better, flat for phi <= 0.5 and
#: weight >= 0.8 (docs/MODELS.md).
GROWTH_1_0: dict[str, Any] = {"phi": 0.5, "case_weight": 0.8}
#: ensemble 1.3: 1.2's members plus growth 1.0 at every level (a median of 3 below France
#: beat gbm + growth and gbm + baseline in development).
ENSEMBLE_1_3: dict[str, Any] = {
    "members": ("ets", "sarimax", "gbm", "baseline", "growth"),
    "level_members": {"region": ("gbm", "baseline", "growth"),
                      "department": ("gbm", "baseline", "growth")},
    "member_versions": {"gbm": "1.2", "growth": "1.0"},
    # Hospital admissions only (weekly; daily at 7/14 days too, same variable): the target it
    # was built and chosen on. In development it made emergency visits worse (régions), ICU
    # admissions by département slightly worse at 1 and 4 weeks, and daily beds' 90 %
    # intervals narrower; those targets keep 1.2's members (docs/MODELS.md).
    "member_targets": {"growth": ("inc_hosp",)},
}
#: gbm 1.3: 1.2's features and signals; 40 trees of at most 7 leaves at learning rate 0.16
#: (1.2: 80 trees of 15 leaves at 0.08, the same total shrinkage). The fits are most of the
#: retrospective track record's and of the refresh's time; chosen on the development period
#: among these and 40 trees of 15 leaves (docs/MODELS.md).
GBM_1_3: dict[str, Any] = {**GBM_1_2, "max_iter": 40, "learning_rate": 0.16,
                           "max_leaf_nodes": 7}
#: ensemble 1.4: 1.3 with gbm 1.3.
ENSEMBLE_1_4: dict[str, Any] = {
    **ENSEMBLE_1_3, "member_versions": {**ENSEMBLE_1_3["member_versions"], "gbm": "1.3"}}
#: gbm 1.4: 1.2 with the horizons pooled (:class:`models.learning.GlobalGBM`
#: ``pool_horizons``): 2 fits per forecast date instead of 8 for the weekly horizons.
GBM_1_4: dict[str, Any] = {**GBM_1_2, "pool_horizons": True}
#: ensemble 1.5: 1.3 with gbm 1.4.
ENSEMBLE_1_5: dict[str, Any] = {
    **ENSEMBLE_1_3, "member_versions": {**ENSEMBLE_1_3["member_versions"], "gbm": "1.4"}}
#: The built-in version each name resolves to by default (otherwise its last built-in).
#: gbm 1.2 and ensemble 1.3 won on the development period and the held-out dates did not
#: contradict them (docs/MODELS.md); ``ensemble@1.2`` / ``ensemble@1.1`` stay one version
#: switch away.
DEFAULT_VERSIONS: dict[str, str] = {"gbm": "1.2", "ensemble": "1.3", "growth": "1.0"}


class Registry:
    """Versions of named models; the latest registered version of a name is its default.

    Parameters
    ----------
    path:
        JSON file holding user-registered versions (None: in memory only); with ``store``,
        the key of that file in the store.
    store:
        A store of :mod:`features.storage.objects` holding the file (None: ``path`` is a local
        file).
    """

    def __init__(self, path: Path | str | None = None, *, store: Any = None) -> None:
        self.path = path
        self.store = store
        self._specs: dict[str, dict[str, ModelSpec]] = {}
        self._current: dict[str, str] = {}
        for spec in _builtin_specs():
            self._add(spec)
        self._current.update(DEFAULT_VERSIONS)
        text = self._read()
        if text is not None:
            for entry in json.loads(text)["models"]:
                self._add(ModelSpec(**entry))

    def _read(self) -> str | bytes | None:
        """The persisted file's content, None when there is none."""
        if self.path is None:
            return None
        if self.store is not None:
            try:
                return self.store.read_bytes(str(self.path))
            except FileNotFoundError:
                return None
        path = Path(self.path)
        return path.read_text() if path.exists() else None

    def __repr__(self) -> str:
        where = f", store={self.store!r}" if self.store is not None else ""
        return f"Registry({self.path!r}{where})"

    def _add(self, spec: ModelSpec) -> None:
        spec.check()
        self._specs.setdefault(spec.name, {})[spec.version] = spec
        self._current[spec.name] = spec.version

    def names(self) -> list[str]:
        return list(self._specs)

    def versions(self, name: str) -> list[str]:
        return list(self._specs[self._check(name)])

    def _check(self, name: str) -> str:
        if name not in self._specs:
            raise KeyError(f"unknown model {name!r}; registered: {', '.join(self._specs)}")
        return name

    def get(self, name: str, version: str | None = None) -> ModelSpec:
        """A version of a model (default: its current one); ``name@version`` also works."""
        if version is None and "@" in name:
            name, version = name.split("@", 1)
        versions = self._specs[self._check(name)]
        version = version or self._current[name]
        if version not in versions:
            raise KeyError(f"model {name!r} has no version {version!r}; has {list(versions)}")
        return versions[version]

    def create(self, name: str, version: str | None = None) -> Forecaster:
        """An unfitted forecaster of that name and version (default: current version)."""
        return self.get(name, version).create(self)

    def register(
        self,
        name: str,
        *,
        kind: str,
        params: dict[str, Any] | None = None,
        version: str,
        description: str = "",
        persist: bool = True,
    ) -> ModelSpec:
        """Add a version (it becomes the name's current version) and persist it.

        Raises
        ------
        ValueError
            If that name already has that version (versions are immutable), the kind is
            unknown or a setting is not one of the kind's (the message lists the valid ones).
        """
        if version in self._specs.get(name, {}):
            raise ValueError(f"model {name!r} version {version!r} already exists")
        spec = ModelSpec(
            name, kind, version, dict(params or {}), description,
            datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._add(spec)
        if persist and self.path is not None:
            self._save()
        return spec

    def _save(self) -> None:
        builtin = {(s.name, s.version) for s in _builtin_specs()}
        entries = [
            asdict(s)
            for versions in self._specs.values()
            for s in versions.values()
            if (s.name, s.version) not in builtin
        ]
        if self.store is not None:  # one PUT: a reader never sees half an object
            data = json.dumps({"models": entries}, indent=2, default=list).encode()
            self.store.write_bytes(str(self.path), data)
            return
        # Write then rename: a reader never sees half a file.
        atomic_write_json(self.path, {"models": entries}, indent=2, default=list)


def get_registry(settings: Any = None) -> Registry:
    """The registry with built-in models and those persisted in ``settings.registry_file``."""
    if settings is None:
        from features.settings import Settings

        settings = Settings.from_env()
    if getattr(settings, "store_url", ""):
        from features.storage.objects import for_settings

        return Registry("models/registry.json", store=for_settings(settings))
    return Registry(Path(settings.registry_file))
