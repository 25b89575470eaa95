"""API tokens, roles and territorial scopes.

Roles are ordered: ``public`` (no token) < ``city`` < ``analyst`` < ``planner`` <
``crisis_cell`` < ``admin``; a route that needs a role accepts every role above it. Tokens are
sent as ``Authorization: Bearer <token>``; only their SHA-256 is stored. A token that is sent but
unknown or revoked is refused (401) even on public routes, so that a typo never silently
degrades a crisis cell to public, suppressed data.

A ``city`` token always has a *scope*: the commune (INSEE) and EPCI (SIREN) codes it was created
with (``token create --role city --territory 35238 243500139``). It reads unsuppressed data for
its territories (an EPCI covers its member communes; a département, région or France aggregate
is never covered: it mixes other cities' communes) and what the public reads elsewhere; it may
write only its territories (:mod:`service.scopes`). Every other role is unscoped.

Verified tokens are kept in memory (:class:`_Verified`), so a request does not read the
database. A revocation reaches every process through ``api_token_generation``: a database
trigger adds one to its ``generation`` whenever a token's ``revoked_at`` changes or a token row
is deleted (``token revoke``, another server, or plain SQL), and each process reads that
generation at most once every ``TOKEN_CACHE_SECONDS`` (1 s by default; 0: every request reads
the token's row, as before) and forgets every token it verified when it changed. A revoked
token is thus refused by every process at most ``TOKEN_CACHE_SECONDS`` after the revocation
commits. Unknown tokens are never cached. Refused tokens count against the client address's
failure budget (``RATELIMIT_AUTH_FAILURES``, see :mod:`service.app`): past it the address gets
429 for any token.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, g, request

from features.catalog import as_utc, utcnow
from service.db import api_token_generation, api_tokens
from service.errors import ApiError

ROLES: tuple[str, ...] = ("public", "city", "analyst", "planner", "crisis_cell", "admin")
#: The role whose tokens are scoped to territories (and the only one).
SCOPED_ROLE = "city"
TOKEN_PREFIX = "vg_"
_TOUCH_EVERY = 60.0  # seconds between two writes of a token's last_used_at by one process
#: A scope's codes: communes (INSEE, 5 characters, Corsica 2A/2B) and EPCI (SIREN, 9 digits).
SCOPE_CODE = re.compile(r"(?:\d{5}|2[AB]\d{3}|\d{9})", re.ASCII)  # not "３５２３８"
MAX_SCOPE = 200  # territories per token


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token's name, role and scope, or the anonymous public.

    ``territories``: the commune and EPCI codes a ``city`` token was created with; None for an
    unscoped principal (the public, every other role)."""

    name: str
    role: str
    token_id: int | None = None
    territories: frozenset[str] | None = None

    @property
    def authenticated(self) -> bool:
        return self.token_id is not None

    @property
    def scoped(self) -> bool:
        return self.territories is not None

    def has(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


PUBLIC = Principal("public", "public")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_scope(role: str, territories: Iterable[str] | None) -> list[str] | None:
    """The scope a token of ``role`` is created with: the codes, stripped, duplicates dropped,
    in the order given (None for an unscoped role).

    Raises
    ------
    ValueError
        A ``city`` token without territories, territories for another role, more than
        :data:`MAX_SCOPE` codes, or a code that is neither a commune (5 characters: digits,
        or 2A/2B and 3 digits) nor an EPCI (9 digits).
    """
    codes = list(dict.fromkeys(str(c).strip() for c in territories or ()))
    if role != SCOPED_ROLE:
        if codes:
            raise ValueError(f"--territory is for role '{SCOPED_ROLE}' only (role {role!r} "
                             "reads and writes every territory)")
        return None
    if not codes:
        raise ValueError(f"a '{SCOPED_ROLE}' token needs its territories (--territory CODE …: "
                         "commune INSEE codes or EPCI SIREN codes)")
    if len(codes) > MAX_SCOPE:
        raise ValueError(f"at most {MAX_SCOPE} territories per token; got {len(codes)}")
    for code in codes:
        if not SCOPE_CODE.fullmatch(code):
            raise ValueError(f"territory {code!r}: expected a commune INSEE code (5 "
                             "characters, e.g. 35238 or 2A004) or an EPCI SIREN code (9 "
                             "digits, e.g. 243500139)")
    return codes


def create_token(engine: sa.Engine, name: str, role: str,
                 territories: Iterable[str] | None = None) -> str:
    """Create a token and return its secret (shown once; only its hash is stored).

    Raises
    ------
    ValueError
        If ``role`` is not one of :data:`ROLES` (``public`` needs no token), the name is empty
        or the scope is invalid (:func:`check_scope`).
    """
    if role not in ROLES or role == "public":
        raise ValueError(f"role must be one of {', '.join(ROLES[1:])}; got {role!r}")
    if not name.strip():
        raise ValueError("a token needs a name (who or what uses it)")
    bad = next((c for c in name if not c.isprintable()), None)
    if bad is not None or len(name.strip()) > 100:  # shown in token lists, logs, audit rows
        found = f"the character U+{ord(bad):04X}" if bad is not None else \
            f"{len(name.strip())} characters"
        raise ValueError(f"token name: expected at most 100 printable characters; found {found}")
    scope = check_scope(role, territories)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(api_tokens.insert().values(
            name=name.strip(), role=role, token_hash=hash_token(token), prefix=token[:8],
            created_at=utcnow(), territories=scope))
    return token


def list_tokens(engine: sa.Engine) -> list[dict]:
    """Every token (id, name, role, scope, prefix, creation, last use, revocation)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(
            api_tokens.c.id, api_tokens.c.name, api_tokens.c.role, api_tokens.c.territories,
            api_tokens.c.prefix, api_tokens.c.created_at, api_tokens.c.last_used_at,
            api_tokens.c.revoked_at,
        ).order_by(api_tokens.c.id))
        return [dict(r._mapping) for r in rows]


def revoke_token(engine: sa.Engine, token_id: int) -> bool:
    """Revoke a token; every process refuses it within ``TOKEN_CACHE_SECONDS`` (the database
    trigger moves the revocation generation in the same transaction)."""
    with engine.begin() as conn:
        done = conn.execute(api_tokens.update().where(
            api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None)
        ).values(revoked_at=utcnow())).rowcount
    return bool(done)


class _Touches:
    """When this process last wrote each token's ``last_used_at`` (one write per minute at most:
    enough to spot unused tokens, and no write on the read path of every request)."""

    def __init__(self) -> None:
        self._at: dict[tuple[sa.Engine, int], float] = {}
        self._lock = threading.Lock()

    def due(self, key: tuple[sa.Engine, int]) -> bool:
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
                    api_tokens.c.territories, api_tokens.c.revoked_at
                    ).where(api_tokens.c.token_hash == sa.bindparam("h"))
_GENERATION = sa.select(api_token_generation.c.generation).where(api_token_generation.c.id == 1)


class _Verified:
    """The tokens this process verified, per engine: hash → (principal, the revocation
    generation read before its row was). An entry is used only while the engine's generation,
    read at most once every ``max_age`` seconds, is still the one it was verified under: a
    revocation committed after its row was read moves the generation, and the next check (at
    most ``max_age`` later) makes every entry of that engine stale."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: dict[tuple[sa.Engine, str], tuple[Principal, int]] = {}
        self._generation: dict[sa.Engine, tuple[int, float]] = {}

    def generation(self, engine: sa.Engine, max_age: float) -> int:
        """The engine's revocation generation, read from the database when the last read is
        older than ``max_age`` seconds."""
        now = time.monotonic()
        seen = self._generation.get(engine)
        if seen is not None and now - seen[1] < max_age:
            return seen[0]
        with engine.connect() as conn:
            value = conn.execute(_GENERATION).scalar()
        value = int(value or 0)
        with self._lock:
            if seen is not None and seen[0] != value:
                self._items = {k: v for k, v in self._items.items() if k[0] is not engine}
            self._generation[engine] = (value, now)
        return value

    def get(self, engine: sa.Engine, digest: str, generation: int) -> Principal | None:
        entry = self._items.get((engine, digest))
        if entry is None or entry[1] != generation:
            return None
        return entry[0]

    def put(self, engine: sa.Engine, digest: str, principal: Principal, generation: int
            ) -> None:
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[(engine, digest)] = (principal, generation)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._generation.clear()


_verified = _Verified()


def lookup(engine: sa.Engine, token: str, max_age: float = 0.0) -> Principal | None:
    """The principal of a token, or None when unknown or revoked.

    ``max_age`` > 0: a token verified by this process is answered from memory while the
    revocation generation (read at most once every ``max_age`` seconds) has not moved; so a
    revocation reaches this process within ``max_age`` seconds. 0: the database every time.
    """
    digest = hash_token(token)
    generation = None
    if max_age > 0:
        generation = _verified.generation(engine, max_age)
        principal = _verified.get(engine, digest, generation)
        if principal is not None:
            _touch(engine, principal.token_id)
            return principal
    with engine.connect() as conn:
        row = conn.execute(_LOOKUP, {"h": digest}).first()
    if row is None or row.revoked_at is not None:
        return None
    principal = Principal(row.name, row.role, row.id,
                          frozenset(row.territories) if row.territories is not None else None)
    if generation is not None:
        _verified.put(engine, digest, principal, generation)
    _touch(engine, row.id)
    return principal


def _touch(engine: sa.Engine, token_id: int | None) -> None:
    if token_id is not None and _touches.due((engine, token_id)):
        with engine.begin() as conn:
            conn.execute(api_tokens.update().where(api_tokens.c.id == token_id)
                         .values(last_used_at=utcnow()))


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
    principal = lookup(current_app.extensions["vigie"].engine, token.strip(),
                       float(current_app.config.get("TOKEN_CACHE_SECONDS", 1.0) or 0.0))
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
