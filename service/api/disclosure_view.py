"""Disclosure control as the caller sees it (docs/DISCLOSURE.md).

* the public (no token) gets the answers with the cells :func:`features.disclosure.public_masks`
  hides (small counts, complementary cells, derived values);
* a scoped token (role ``city``, :mod:`service.scopes`) gets its territories unsuppressed and
  the public answers elsewhere: the public masks with its covered rows shown wherever that
  gives back no cell hidden outside them (:func:`features.disclosure.scopes.scope_masks`);
* every other token gets everything.

:func:`audience` names which of the three (and which scope) an answer was made for: the
response cache keys on it, so an answer made for one scope is never served to another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.api.state import state
from service.auth import current_principal

PUBLIC_AUDIENCE = ("public",)
FULL_AUDIENCE = ("full",)


def audience() -> tuple:
    """``("public",)``, ``("full",)`` or ``("scope", code, …)`` (the token's codes, sorted)."""
    principal = current_principal()
    if not principal.authenticated:
        return PUBLIC_AUDIENCE
    if principal.territories is None:
        return FULL_AUDIENCE
    return ("scope", *sorted(principal.territories))


def is_public() -> bool:
    """Whether disclosure control applies to the caller at all (the public, a scoped token)."""
    principal = current_principal()
    return not principal.authenticated or principal.territories is not None


def is_scoped() -> bool:
    """Whether the caller holds a token scoped to territories."""
    principal = current_principal()
    return principal.authenticated and principal.territories is not None


def covered_codes() -> frozenset[str] | None:
    """The codes the caller reads unsuppressed: None for every code (an unscoped token), an
    empty set for the public, else the scope's codes and its EPCI's member communes in the
    served vintage."""
    principal = current_principal()
    if not principal.authenticated:
        return frozenset()
    if principal.territories is None:
        return None
    from service.scopes import covered, epci_members

    st = state()
    vintage_id = st.freshness()[0]
    members = memo(("epci_members", vintage_id), lambda: epci_members(st.store))
    return memo(("scope_covered", vintage_id, principal.territories),
                lambda: covered(principal.territories, members))


def memo(key: tuple, build):
    """``build()`` once per ``key`` for the app (keys name immutable things: a vintage and a
    scope); at most 64 kept (cleared when full)."""
    table = state().extra.setdefault("scope_memo", {})
    if key not in table:
        if len(table) >= 64:
            table.clear()
        table[key] = build()
    return table[key]


def reads_unsuppressed(code: str) -> bool:
    """Whether the caller reads territory ``code`` without disclosure control."""
    codes = covered_codes()
    return codes is None or code in codes


def public_masks(vintage_id: str | None = None):
    """The cells of a vintage (default: the served one) hidden from the public:
    :func:`features.disclosure.public_masks` (small counts, complementary cells, derived
    values; docs/DISCLOSURE.md), computed once per vintage and threshold for the process
    (vintages are immutable; the first public request of a vintage pays a few seconds)."""
    from features import disclosure

    st = state()
    vintage_id = vintage_id or st.freshness()[0]  # the served vintage, read at most once a second
    if not vintage_id:
        raise LookupError("no vintage yet")
    # Protected against the vintages served before it too (their records, docs/DISCLOSURE.md).
    return disclosure.store_masks(st.store, vintage_id, st.settings.small_count_threshold)


def caller_masks(vintage_id: str | None = None):
    """The masks of the caller: :func:`public_masks`, or for a scoped token its scope's
    (:func:`features.disclosure.scopes.scope_masks`, computed once per vintage and scope)."""
    principal = current_principal()
    if principal.territories is None:
        return public_masks(vintage_id)
    from features.disclosure.scopes import scope_masks

    st = state()
    vintage_id = vintage_id or st.freshness()[0]
    masks = public_masks(vintage_id)
    codes = covered_codes() or frozenset()

    def build():
        datasets = {f: st.store.open(f, vintage_id=vintage_id) for f in masks.codes}
        return scope_masks(masks, datasets, codes)

    return memo(("scope_masks", vintage_id, masks.threshold, codes), build)


def hidden_cells(frequency: str, name: str, codes: Sequence[str], dates: Any,
                 vintage_id: str | None = None) -> np.ndarray | None:
    """The (codes × dates) mask of ``name`` hidden from the caller by disclosure control
    (the public's, or a scoped token's); None for an unscoped token or an indicator never
    hidden."""
    if not is_public():
        return None
    return caller_masks(vintage_id or None).select(frequency, name, codes, dates)
