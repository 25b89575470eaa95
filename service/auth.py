"""API tokens and roles.

Roles are ordered: ``public`` (no token) < ``analyst`` < ``planner`` < ``crisis_cell`` <
``admin``; a route that needs a role accepts every role above it. Tokens are sent as
``Authorization: Bearer <token>``; only their SHA-256 is stored. A token that is sent but
unknown or revoked is refused (401) even on public routes, so that a typo never silently
degrades a crisis cell to public, suppressed data.

Every request with a token reads the token's row (one indexed query, no cache), so a token revoked
by any process (``token revoke``, another server) is refused by every process from the next
request on. Refused tokens count against the client address's failure budget
(``RATELIMIT_AUTH_FAILURES``, see :mod:`service.app`): past it the address gets 429 for any token.
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
_TOUCH_EVERY = 60.0  # seconds between two writes of a token's last_used_at by one process


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
    """Revoke a token; every process refuses it from its next request (nothing is cached)."""
    with engine.begin() as conn:
        done = conn.execute(api_tokens.update().where(
            api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None)
        ).values(revoked_at=utcnow())).rowcount
    return bool(done)


class _Touches:
    """When this process last wrote each token's ``last_used_at`` (one write per minute at most:
    enough to spot unused tokens, and no write on the read path of every request)."""

    def __init__(self) -> None:
        self._at: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def due(self, key: tuple[str, int]) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._at.get(key, -_TOUCH_EVERY) < _TOUCH_EVERY:
                return False
            if len(self._at) > 10_000:
                self._at.clear()
            self._at[key] = now
            return True


_touches = _Touches()
_LOOKUP = sa.select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role,
                    api_tokens.c.revoked_at).where(api_tokens.c.token_hash == sa.bindparam("h"))


def lookup(engine: sa.Engine, token: str) -> Principal | None:
    """The principal of a token, or None when unknown or revoked.

    Asks the database every time (a primary-key-sized read on the unique hash index): a positive
    cache would keep a revoked token alive in every other process for its lifetime.
    """
    with engine.connect() as conn:
        row = conn.execute(_LOOKUP, {"h": hash_token(token)}).first()
    if row is None or row.revoked_at is not None:
        return None
    if _touches.due((str(engine.url), row.id)):
        with engine.begin() as conn:
            conn.execute(api_tokens.update().where(api_tokens.c.id == row.id)
                         .values(last_used_at=utcnow()))
    return Principal(row.name, row.role, row.id)


def token_age_days(created_at) -> float:
    return (utcnow() - as_utc(created_at)).total_seconds() / 86400


def resolve_principal() -> None:
    """``before_request``: put the caller's :class:`Principal` in ``g.principal``.

    A client address past its budget of failed authentications gets 429 before its token is even
    looked up; each refused token (401) spends one unit of that budget.
    """
    g.principal = PUBLIC
    header = request.headers.get("Authorization", "")
    if not header:
        return
    failures = current_app.extensions["vigie"].extra.get("auth_failures")
    if failures is not None:
        failures.check()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        _refuse(failures, "use 'Authorization: Bearer <token>'")
    principal = lookup(current_app.extensions["vigie"].engine, token.strip())
    if principal is None:
        _refuse(failures, "unknown or revoked token")
    g.principal = principal


def _refuse(failures, message: str) -> None:
    if failures is not None:
        failures.hit()
    raise ApiError(401, "invalid_token", message)


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
