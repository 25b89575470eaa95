"""What the read use cases share (:mod:`~service.usecases.data_reads`,
:mod:`~service.usecases.forecast_reads`, :mod:`~service.usecases.risk_reads`,
:mod:`~service.usecases.alerts`): the context they read through, the territory codes a request
names, and the dates of a requested window.

A read use case answers one caller: it reads the served cube vintage and the stores, hides from
the public what disclosure control hides (docs/DISCLOSURE.md), and says where its answer came
from (vintage, run, model version; the time its data last changed). It does all that through a
:class:`ReadContext` its caller gives it, so that it imports no web code: the API gives
:class:`service.api.context.RequestContext` (the app's stores and per-vintage memo, the
request's caller, the audit trail and the response's headers).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from service.errors import ApiError, bad_request

#: Levels the public may read data for: aggregates only (no commune-level counts). EPCI are
#: groupings of communes (the 22 métropoles: 200,000 to 2 million inhabitants).
PUBLIC_LEVELS = ("department", "region", "country", "collectivity", "epci")


class ReadContext(Protocol):
    """Where a read use case reads from, for whom, and where it says what it read."""

    settings: Any
    engine: Any

    def forecast_store(self) -> Any:
        """The forecast store (:class:`models.store.ForecastStore`)."""

    def memo(self, key: tuple, build: Callable[[], Any]) -> Any:
        """``build()``, computed once per ``key`` (keys name immutable things: a vintage, a
        run)."""

    def territory_table(self) -> dict[str, dict]:
        """Code → territory row of the served vintage."""

    def groupements(self) -> dict[str, dict]:
        """EPCI code → its row and member communes, every EPCI of the served vintage's
        registry (:func:`features.territories.groupement_entries`)."""

    def find_indicator(self, name: str, frequency: str | None = None) -> dict | None:
        """An indicator's entry in the served vintage (default: its finest frequency)."""

    def indicator_catalog(self) -> dict[str, dict]:
        """Indicator name → its entry at the finest frequency."""

    def open_dataset(self, frequency: str, as_of: Any = None) -> Any:
        """A dataset of the served vintage, or of the vintage known on ``as_of``."""

    def is_public(self) -> bool:
        """Whether disclosure control applies to the caller: the public (no token), or a
        token scoped to territories (role ``city``) outside them."""

    def reads_unsuppressed(self, code: str) -> bool:
        """Whether the caller reads territory ``code`` without disclosure control (an
        unscoped token: every code; a scoped one: its territories; the public: none)."""

    def is_scoped(self) -> bool:
        """Whether the caller holds a token scoped to territories (it reads like the public
        outside them, but it has a token: refusals must not ask it for one)."""

    def hidden_cells(self, frequency: str, name: str, codes: Sequence[str], dates: Any,
                     vintage_id: str | None = None) -> Any:
        """The (codes × dates) mask of ``name`` hidden from this caller, or None."""

    def note(self, *, pin: bool = False, **provenance: Any) -> None:
        """Record where the answer came from (``pin``: the answer's own, e.g. a forecast's
        vintage, not replaced by later lookups in the current cube)."""

    def set_last_modified(self, value: Any) -> None:
        """The time the answer's data last changed."""


def window_positions(dates: Any, start: dt.date | None, end: dt.date | None) -> np.ndarray:
    """Positions of the ``dates`` (datetime64 values) from ``start`` to ``end``, both inclusive
    (no bound where None)."""
    dates = pd.DatetimeIndex(dates)
    keep = np.ones(len(dates), dtype=bool)
    if start:
        keep &= dates >= pd.Timestamp(start)
    if end:
        keep &= dates <= pd.Timestamp(end)
    return np.flatnonzero(keep)


def parse_codes(text: str | None) -> list[str] | None:
    """The codes of a ``territory`` argument (comma-separated, duplicates dropped)."""
    if not text:
        return None
    codes = [c.strip() for c in text.split(",") if c.strip()]
    if not codes:
        raise bad_request("territory: give one or more codes separated by commas")
    return list(dict.fromkeys(codes))


def aggregated_only(ctx: ReadContext, what: str, details: dict) -> ApiError:
    """403 ``aggregated_only``: ``what`` (data, forecasts) of a territory below the public
    levels, for a caller under disclosure control. A scoped token is told that the territory
    is outside its scope (``details["scoped"]``), not that it needs a token."""
    if ctx.is_scoped():
        return ApiError(403, "aggregated_only", f"outside this token's territories, {what} of "
                        "aggregated territories only", {**details, "scoped": True})
    return ApiError(403, "aggregated_only", f"the public reads {what} of aggregated "
                    "territories only; commune-level data needs a token", details)


def check_readable(ctx: ReadContext, codes: list[str], table: dict) -> None:
    """Refuse codes the registry does not know (400) and, for the public, territories that are
    not aggregates (403: commune-level data needs a token; a scoped token reads the communes
    of its scope, not others)."""
    unknown = [c for c in codes if c not in table]
    if unknown:
        raise bad_request("unknown territory code(s)", unknown=unknown)
    hidden = [c for c in codes if table[c]["level"] not in PUBLIC_LEVELS
              and not ctx.reads_unsuppressed(c)]
    if hidden and ctx.is_public():
        raise aggregated_only(ctx, "data", {"territories": hidden})
