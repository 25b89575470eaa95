"""API tokens: create one (its secret shown once; only its hash is stored), list them, revoke
one (every server refuses it from its next request). ``python -m service token …``."""

from __future__ import annotations

from typing import Any


def _engine(settings: Any) -> Any:
    from features.catalog import get_engine

    return get_engine(settings.database_url)


def create_token(settings: Any, name: str, role: str, *, territories: list[str] | None = None,
                 actor: str = "cli") -> str:
    """A new token's secret (audited: ``token_created`` with its name, role and territories,
    never the secret). A ``city`` token needs ``territories`` (commune or EPCI codes): each
    must be a commune or an EPCI of the served vintage when there is one
    (:func:`unknown_territories`).

    Raises
    ------
    ValueError
        An unknown role (or ``public``, which needs no token), an empty name, a missing,
        malformed or unknown territory, or territories for a role other than ``city``.
    """
    from service.audit import record
    from service.auth import check_scope
    from service.auth import create_token as create

    scope = check_scope(role, territories)
    if scope:
        unknown = unknown_territories(settings, scope)
        if unknown:
            raise ValueError(f"unknown territory code(s) {', '.join(unknown)}: a scope names "
                             "communes or EPCI of the served cube (GET /api/v1/territories)")
    engine = _engine(settings)
    secret = create(engine, name, role, scope)
    details: dict[str, Any] = {"name": name, "token_role": role}
    if scope:
        details["territories"] = scope
    record(engine, event="token_created", actor=actor, role="admin", details=details)
    return secret


def unknown_territories(settings: Any, codes: list[str]) -> list[str]:
    """The codes that are neither a commune nor an EPCI of the served vintage (its EPCI
    membership table and its territories); none when there is no vintage yet (the codes'
    form is checked by :func:`service.auth.check_scope` all the same)."""
    from features.store import CubeStore
    from service.scopes import epci_members

    store = CubeStore(settings)
    if not store.list_vintages():
        return []
    members = epci_members(store)
    known = set(members).union(*members.values()) if members else set()
    missing = [c for c in codes if c not in known]
    if missing:
        known |= _communes_and_epci(store)
    return [c for c in missing if c not in known]


def _communes_and_epci(store: Any) -> set[str]:
    """The codes of the served vintage's communes and EPCI (any frequency)."""
    out: set[str] = set()
    for frequency in ("daily", "weekly", "quarterly", "yearly"):
        try:
            ds = store.open(frequency)
        except (KeyError, LookupError, FileNotFoundError):
            continue
        levels = ds["territory_level"].values
        codes = ds["territory"].values
        out.update(str(c) for c, lv in zip(codes, levels, strict=True)
                   if str(lv) in ("commune", "epci"))
    return out


def list_tokens(settings: Any) -> list[dict]:
    """Every token (id, name, role, territories, prefix, creation, last use, revocation), never
    a secret."""
    from service.auth import list_tokens as listing

    return listing(_engine(settings))


def revoke_token(settings: Any, token_id: int, *, actor: str = "cli") -> bool:
    """Revoke an active token; False when there is none with that id (audited:
    ``token_revoked`` with the id and whether one was revoked)."""
    from service.audit import record
    from service.auth import revoke_token as revoke

    engine = _engine(settings)
    revoked = revoke(engine, token_id)
    record(engine, event="token_revoked", actor=actor, role="admin",
           details={"token_id": int(token_id), "revoked": bool(revoked)})
    return revoked
