"""Quantile-median ensemble, the Forecast Hubs' most robust combination (Vigie's default)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import xarray as xr

from models.base import Forecaster, quantile_array

#: Members by default. Prophet is registered but left out: its trend is not anchored on the
#: last value and its 1-week WIS was ~3x the baseline's in the 2020-09..2021-11 backtest. The
#: Hub baseline is a member: a flat forecast in the median damps the trend followers at
#: turning points (median of 4 = mean of the middle two).
MEMBERS: tuple[str, ...] = ("ets", "sarimax", "gbm", "baseline")
#: Per-series ETS/SARIMAX on the smaller, noisier counts of régions (overseas ones
#: especially) and départements extrapolate noise (their log-scale trends explode at 3–4
#: weeks); there the pooled gbm, damped by the flat baseline, is the robust pair. Chosen on
#: the development period (forecast dates 2020-09-07..2021-02-22) and confirmed on
#: 2021-03..11 (docs/MODELS.md).
LEVEL_MEMBERS: dict[str, tuple[str, ...]] = {"region": ("gbm", "baseline"),
                                             "department": ("gbm", "baseline")}


class MemberResolver(Protocol):
    """What an ensemble resolves member names with (a :class:`models.registry.Registry`)."""

    def get(self, name: str, version: str | None = None) -> Any: ...

    def create(self, name: str, version: str | None = None) -> Forecaster: ...


def quantile_median(stack: np.ndarray, weights: list[float] | None = None) -> np.ndarray:
    """Quantile-wise (weighted) median over the first axis (members), sorted along the last.

    Parameters
    ----------
    stack:
        (member, ..., quantile) member forecasts.
    weights:
        Non-negative weight per member (e.g. inverse past WIS); None = plain median.
    """
    if weights is None:
        values = np.median(stack, axis=0)
    else:
        w = np.asarray(weights, dtype=float)
        order = np.argsort(stack, axis=0)
        sorted_vals = np.take_along_axis(stack, order, axis=0)
        cum = np.cumsum(w[order], axis=0) / w.sum()
        pick = np.argmax(cum >= 0.5, axis=0)[None]
        values = np.take_along_axis(sorted_vals, pick, axis=0)[0]
    return np.sort(values, axis=-1)


class Ensemble(Forecaster):
    """Median of the members' quantiles (``ensemble``).

    Parameters
    ----------
    members:
        Registry names of the member models (each at its current version).
    level_members:
        Members for territories of a given ``territory_level`` (e.g. ``department``), in place
        of ``members``; levels not listed use ``members``.
    weights:
        Optional member → weight mapping; members absent from it weigh 1.
    member_versions:
        Member → registry version, so that an ensemble version always combines the same
        member versions; members absent from it resolve at their current version.
    member_targets:
        Member → target variables it is combined for (members absent: every target).
    registry:
        Where member names and versions are resolved (a :class:`models.registry.Registry`;
        the registry creating an ensemble passes itself). Not a setting of a registry entry:
        the ensemble never reads a registry file or the environment itself, and
        :meth:`member_keys`, :meth:`member_models` and :meth:`fit` need one.
    """

    alias: ClassVar[str] = "ensemble"
    is_global: ClassVar[bool] = True
    resolves_members: ClassVar[bool] = True

    def __init__(
        self,
        *,
        members: tuple[str, ...] = MEMBERS,
        level_members: Mapping[str, tuple[str, ...]] | None = LEVEL_MEMBERS,
        weights: Mapping[str, float] | None = None,
        member_versions: Mapping[str, str] | None = None,
        member_targets: Mapping[str, tuple[str, ...]] | None = None,
        registry: MemberResolver | None = None,
    ) -> None:
        self.members = members
        self.level_members = level_members
        self.weights = weights
        self.member_versions = member_versions
        self.member_targets = member_targets
        self.registry = registry

    def _resolver(self, registry: MemberResolver | None) -> MemberResolver:
        resolver = registry if registry is not None else self.registry
        if resolver is None:
            raise ValueError("this ensemble has no registry to resolve its members: create it "
                             "with Registry.create, or pass registry=")
        return resolver

    def all_members(self) -> list[str]:
        """Every member name used at some level, in a stable order."""
        names = list(self.members)
        for level_names in (self.level_members or {}).values():
            names += list(level_names)
        return list(dict.fromkeys(names))

    def members_for(self, territory_level: str, variable: str | None = None) -> tuple[str, ...]:
        """Members combined for territories of that level (unlisted or "": ``members``) and,
        when ``variable`` is given, for that target (see ``member_targets``)."""
        by_level = self.level_members or {}
        names = tuple(by_level.get(territory_level, self.members))
        only = self.member_targets or {}
        if variable is None or not only:
            return names
        kept = tuple(n for n in names if n not in only or variable in only[n])
        return kept or names

    def member_version(self, name: str) -> str | None:
        """Registry version of a member (None: its current version)."""
        return (self.member_versions or {}).get(name)

    def members_used(self, territory_levels: Iterable[str] | None = None) -> list[str]:
        """Members combined for territories of these levels (None: every member), in
        :meth:`all_members` order: a département forecast need not fit the per-series
        members it would discard."""
        if territory_levels is None:
            return self.all_members()
        used = {m for level in territory_levels for m in self.members_for(level)}
        return [m for m in self.all_members() if m in used]

    def member_keys(
        self, registry: MemberResolver | None = None,
        territory_levels: Iterable[str] | None = None,
    ) -> dict[str, str]:
        """Member name → key of its forecast: the name itself, or ``name@version`` when this
        ensemble pins a version other than the registry's current one (so that two ensemble
        versions backtested together fit and combine their own member versions).
        ``registry``: default, the ensemble's own."""
        registry = self._resolver(registry)
        keys = {}
        for name in self.members_used(territory_levels):
            version = self.member_version(name)
            current = version is None or version == registry.get(name).version
            keys[name] = name if current else f"{name}@{version}"
        return keys

    def member_models(
        self, registry: MemberResolver | None = None,
        territory_levels: Iterable[str] | None = None,
    ) -> dict[str, Forecaster]:
        """Unfitted member forecasters by key (see :meth:`member_keys`; those used at
        ``territory_levels``), resolved through the registry (default: the ensemble's)."""
        registry = self._resolver(registry)
        return {key: registry.create(name, self.member_version(name))
                for name, key in self.member_keys(registry, territory_levels).items()}

    def fit(self, y: xr.DataArray, X: xr.Dataset | None = None) -> Self:
        levels = y.coords.get("territory_level")
        self.levels_ = None if levels is None else [str(v) for v in levels.values]
        self.variable_ = None if y.name is None else str(y.name)
        registry = self._resolver(None)
        self.keys_ = self.member_keys(registry, self.levels_)
        models = self.member_models(registry, self.levels_)
        self.members_ = {key: m.fit(y, X) for key, m in models.items()}
        return self

    def predict(self, horizon: int, X_future: xr.Dataset | None = None) -> xr.DataArray:
        forecasts = {k: m.predict(horizon, X_future) for k, m in self.members_.items()}
        return self.combine(forecasts, self.levels_, self.keys_, self.variable_)

    def member_weights(self, names: tuple[str, ...]) -> list[float] | None:
        weights = self.weights
        if not weights:
            return None
        return [float(weights.get(n, 1.0)) for n in names]

    def combine(
        self,
        forecasts: dict[str, xr.DataArray] | list[xr.DataArray],
        levels: list[str] | np.ndarray | None = None,
        keys: dict[str, str] | None = None,
        variable: str | None = None,
    ) -> xr.DataArray:
        """Combine member forecasts (also used when members were fitted in parallel).

        Parameters
        ----------
        forecasts:
            Member name → (territory, horizon, quantile) forecast, all on the same territories
            and horizons (a list is taken in :meth:`all_members` order).
        levels:
            ``territory_level`` of each territory (None: ``members`` everywhere).
        keys:
            Member name → key of its forecast in ``forecasts`` (default: the name).
        variable:
            Target variable forecast (None: every member, whatever ``member_targets``).
        """
        if not isinstance(forecasts, dict):
            forecasts = dict(zip(self.all_members(), forecasts, strict=True))
        keys = keys or {}
        forecasts = {n: forecasts[keys.get(n, n)] for n in self.all_members()
                     if keys.get(n, n) in forecasts}
        first = next(iter(forecasts.values()))
        if levels is None:
            levels = [""] * first.sizes["territory"]
        levels = np.asarray([str(v) for v in levels], dtype=object)
        values = np.empty(first.shape)
        for level in dict.fromkeys(levels):
            rows = np.flatnonzero(levels == level)
            names = self.members_for(level, variable)
            missing = [n for n in names if n not in forecasts]
            if missing:
                raise KeyError(f"ensemble members without a forecast: {missing}")
            stack = np.stack([forecasts[n].values[rows] for n in names])
            values[rows] = quantile_median(stack, self.member_weights(names))
        combined = quantile_array(
            values, first["territory"].values, first["target_date"].to_index(), model="ensemble"
        )
        return combined.assign_coords(horizon=first["horizon"].values)
