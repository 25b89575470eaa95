"""Disclosure control as the caller sees it: the public (no token) gets the answers with the
cells :func:`features.disclosure.public_masks` hides (small counts, complementary cells,
derived values; docs/DISCLOSURE.md); an authenticated caller gets everything."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.api.state import state
from service.auth import current_principal


def is_public() -> bool:
    return not current_principal().authenticated


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


def hidden_cells(frequency: str, name: str, codes: Sequence[str], dates: Any,
                 vintage_id: str | None = None) -> np.ndarray | None:
    """For a public caller, the (codes × dates) mask of ``name`` hidden by disclosure
    control; None for an authenticated caller or an indicator never hidden."""
    if not is_public():
        return None
    return public_masks(vintage_id or None).select(frequency, name, codes, dates)
