"""The read use cases' context in a request (:class:`service.usecases.reads.ReadContext`):
the app's stores and per-vintage memo (:mod:`service.api.state`, :mod:`service.api.lookups`),
the caller's audience (:mod:`service.api.disclosure_view`), the audit trail's provenance
(:func:`service.audit.note`) and the answer's Last-Modified (:mod:`service.api.cache`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from service import audit
from service.api import cache, disclosure_view, lookups
from service.api.state import state


class RequestContext:
    """What a read use case reads through while it answers the current request."""

    @property
    def settings(self):
        return state().settings

    @property
    def engine(self):
        return state().engine

    def forecast_store(self):
        from models.store import ForecastStore

        return ForecastStore.from_settings(state().settings)

    def memo(self, key: tuple, build: Callable[[], Any]) -> Any:
        return lookups.memo(key, build)

    def territory_table(self) -> dict[str, dict]:
        return lookups.territory_table()

    def groupements(self) -> dict[str, dict]:
        return lookups.groupements()

    def find_indicator(self, name: str, frequency: str | None = None) -> dict | None:
        return lookups.find_indicator(name, frequency)

    def indicator_catalog(self) -> dict[str, dict]:
        return lookups.indicator_catalog()

    def open_dataset(self, frequency: str, as_of: Any = None):
        return lookups.open_dataset(frequency, as_of)

    def is_public(self) -> bool:
        return disclosure_view.is_public()

    def reads_unsuppressed(self, code: str) -> bool:
        return disclosure_view.reads_unsuppressed(code)

    def is_scoped(self) -> bool:
        return disclosure_view.is_scoped()

    def hidden_cells(self, frequency: str, name: str, codes: Sequence[str], dates: Any,
                     vintage_id: str | None = None):
        return disclosure_view.hidden_cells(frequency, name, codes, dates, vintage_id)

    def note(self, *, pin: bool = False, **provenance: Any) -> None:
        audit.note(pin=pin, **provenance)

    def set_last_modified(self, value: Any) -> None:
        cache.set_last_modified(value)


def context() -> RequestContext:
    """The read context of the current request."""
    return RequestContext()
