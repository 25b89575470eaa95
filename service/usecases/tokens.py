"""API tokens: create one (its secret shown once; only its hash is stored), list them, revoke
one (every server refuses it from its next request). ``python -m service token …``."""

from __future__ import annotations

from typing import Any


def _engine(settings: Any) -> Any:
    from features.catalog import get_engine

    return get_engine(settings.database_url)


def create_token(settings: Any, name: str, role: str, *, actor: str = "cli") -> str:
    """A new token's secret (audited: ``token_created`` with its name and role, never the
    secret).

    Raises
    ------
    ValueError
        An unknown role (or ``public``, which needs no token), or an empty name.
    """
    from service.audit import record
    from service.auth import create_token as create

    engine = _engine(settings)
    secret = create(engine, name, role)
    record(engine, event="token_created", actor=actor, role="admin",
           details={"name": name, "token_role": role})
    return secret


def list_tokens(settings: Any) -> list[dict]:
    """Every token (id, name, role, prefix, creation, last use, revocation), never a secret."""
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
