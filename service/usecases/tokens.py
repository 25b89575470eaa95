"""API tokens: create one (its secret shown once; only its hash is stored), list them, revoke
one (every server refuses it from its next request). ``python -m service token …``."""

from __future__ import annotations

from typing import Any


def _engine(settings: Any) -> Any:
    from features.catalog import get_engine

    return get_engine(settings.database_url)


def create_token(settings: Any, name: str, role: str) -> str:
    """A new token's secret.

    Raises
    ------
    ValueError
        An unknown role (or ``public``, which needs no token), or an empty name.
    """
    from service.auth import create_token as create

    return create(_engine(settings), name, role)


def list_tokens(settings: Any) -> list[dict]:
    """Every token (id, name, role, prefix, creation, last use, revocation), never a secret."""
    from service.auth import list_tokens as listing

    return listing(_engine(settings))


def revoke_token(settings: Any, token_id: int) -> bool:
    """Revoke an active token; False when there is none with that id."""
    from service.auth import revoke_token as revoke

    return revoke(_engine(settings), token_id)
