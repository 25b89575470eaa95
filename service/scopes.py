"""Territorial scopes: which territories a principal reads unsuppressed and may write.

A ``city`` token's scope is the commune (INSEE) and EPCI (SIREN) codes it was created with
(:mod:`service.auth`). It *covers* those codes and every member commune of each EPCI among them.
A département, région or France aggregate is never covered, even when every one of its
communes is: it also sums communes no token of that city sends (and, through the hospital and
screening sources, persons the city has no right to see below the public threshold). An
unscoped principal (every role above ``city``) covers everything; the public nothing.

Pure functions (no Flask): the API (:mod:`service.api.disclosure_view`) and the use cases
(uploads) call them with the principal and the served vintage's EPCI membership.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: EPCI code → the codes of its member communes.
Members = Mapping[str, frozenset[str]]


def epci_members(store: Any, as_of: Any = None) -> dict[str, frozenset[str]]:
    """EPCI code → member commune codes, from the vintage table ``epci_communes`` of a
    :class:`features.store.CubeStore` (the served vintage, or the one known on ``as_of``);
    empty when there is no vintage or it has no such table."""
    try:
        table = store.open_table("epci_communes", as_of)
    except (KeyError, LookupError, FileNotFoundError):
        return {}
    out: dict[str, set[str]] = {}
    for epci, commune in zip(table["epci_code"].astype(str), table["commune_code"].astype(str),
                             strict=True):
        out.setdefault(epci, set()).add(commune)
    return {k: frozenset(v) for k, v in out.items()}


def covered(territories: Iterable[str], members: Members) -> frozenset[str]:
    """The codes a scope covers: its own codes and the member communes of its EPCI."""
    out: set[str] = set()
    for code in territories:
        out.add(code)
        out.update(members.get(code, ()))
    return frozenset(out)


def may_read_unsuppressed(principal: Any, code: str, members: Members) -> bool:
    """Whether ``principal`` reads ``code``'s cells without disclosure control."""
    if not principal.authenticated:
        return False
    if principal.territories is None:
        return True
    return code in covered(principal.territories, members)


def may_write(principal: Any, code: str, members: Members) -> bool:
    """Whether ``principal`` may send data for territory ``code``: the public never, an
    unscoped token (``city`` role or above) everywhere, a scoped one its covered codes."""
    if not principal.authenticated or not principal.has("city"):
        return False
    if principal.territories is None:
        return True
    return code in covered(principal.territories, members)


def refused_writes(principal: Any, codes: Iterable[str], members: Members) -> list[str]:
    """The codes among ``codes`` that ``principal`` may not write (order kept, once each);
    empty when it may write them all."""
    codes = list(dict.fromkeys(str(c) for c in codes))
    if not principal.authenticated or not principal.has("city"):
        return codes
    if principal.territories is None:
        return []
    mine = covered(principal.territories, members)
    return [c for c in codes if c not in mine]
