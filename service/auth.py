"""API tokens and roles.

Roles are ordered: ``public`` (no token) < ``analyst`` < ``planner`` < ``crisis_cell`` <
``admin``; a route that needs a role accepts every role above it. Tokens are sent as
``Authorization: Bearer <token>``; only their SHA-256 is stored. A token that is sent but
unknown or revoked is refused (401) even on public routes, so that a typo never silently
degrades a crisis cell to public, suppressed data.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, g, request

from features.catalog import as_utc, utcnow
from service.db import api_tokens
from service.errors import ApiError

ROLES: tuple[str, ...] = ("public", "analyst", "planner", "crisis_cell", "admin")
TOKEN_PREFIX = "vg_"
_LOOKUP_TTL = 30.0  # seconds a resolved token is trusted without asking the database again


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token's name and role, or the anonymous public."""

    name: str
    role: str
    token_id: int | None = None

    @property
    def authenticated(self) -> bool:
        return self.token_id is not None

    def has(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


PUBLIC = Principal("public", "public")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: sa.Engine, name: str, role: str) -> str:
    """Create a token and return its secret (shown once; only its hash is stored).

    Raises
    ------
    ValueError
        If ``role`` is not one of :data:`ROLES` (``public`` needs no token).
    """
    if role not in ROLES or role == "public":
        raise ValueError(f"role must be one of {', '.join(ROLES[1:])}; got {role!r}")
    if not name.strip():
        raise ValueError("a token needs a name (who or what uses it)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(api_tokens.insert().values(
            name=name.strip(), role=role, token_hash=hash_token(token), prefix=token[:8],
            created_at=utcnow()))
    return token


def list_tokens(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(
            api_tokens.c.id, api_tokens.c.name, api_tokens.c.role, api_tokens.c.prefix,
            api_tokens.c.created_at, api_tokens.c.last_used_at, api_tokens.c.revoked_at,
        ).order_by(api_tokens.c.id))
        return [dict(r._mapping) for r in rows]


def revoke_token(engine: sa.Engine, token_id: int) -> bool:
    with engine.begin() as conn:
        done = conn.execute(api_tokens.update().where(
            api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None)
        ).values(revoked_at=utcnow())).rowcount
    _cache.clear()
    return bool(done)


class _TokenCache:
    """Resolved tokens for a few seconds: one database query per token per TTL, not per call."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple[bool, Principal | None]:
        with self._lock:
            hit = self._items.get(key)
        if hit and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def put(self, key: tuple[str, str], value: Principal | None) -> None:
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[key] = (time.monotonic() + _LOOKUP_TTL, value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _TokenCache()


def lookup(engine: sa.Engine, token: str) -> Principal | None:
    """The principal of a token, or None when unknown or revoked."""
    digest = hash_token(token)
    key = (str(engine.url), digest)
    found, principal = _cache.get(key)
    if found:
        return principal
    with engine.begin() as conn:
        row = conn.execute(sa.select(api_tokens).where(api_tokens.c.token_hash == digest)).first()
        if row is not None and row.revoked_at is None:
            # last_used_at at TTL granularity: enough to spot unused tokens, cheap to keep.
            conn.execute(api_tokens.update().where(api_tokens.c.id == row.id)
                         .values(last_used_at=utcnow()))
    principal = None
    if row is not None and row.revoked_at is None:
        principal = Principal(row.name, row.role, row.id)
    _cache.put(key, principal)
    return principal


def token_age_days(created_at) -> float:
    return (utcnow() - as_utc(created_at)).total_seconds() / 86400


def resolve_principal() -> None:
    """``before_request``: put the caller's :class:`Principal` in ``g.principal``."""
    g.principal = PUBLIC
    header = request.headers.get("Authorization", "")
    if not header:
        return
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "invalid_token", "use 'Authorization: Bearer <token>'")
    principal = lookup(current_app.extensions["vigie"].engine, token.strip())
    if principal is None:
        raise ApiError(401, "invalid_token", "unknown or revoked token")
    g.principal = principal


def current_principal() -> Principal:
    return getattr(g, "principal", PUBLIC)


def requires(role: str) -> Callable:
    """Route decorator: the caller needs ``role`` or above (401 without a token, else 403)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            check_role(role)
            return view(*args, **kwargs)

        wrapper._vigie_role = role  # read by the OpenAPI processor to document the role
        return wrapper

    return decorator


def check_role(role: str) -> None:
    principal = current_principal()
    if principal.has(role):
        return
    if not principal.authenticated:
        raise ApiError(401, "authentication_required",
                       f"this needs a token with role '{role}' or above",
                       {"required_role": role})
    raise ApiError(403, "forbidden", f"role '{principal.role}' may not do this; "
                   f"it needs '{role}' or above", {"required_role": role,
                                                   "your_role": principal.role})
