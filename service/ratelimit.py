"""Rate limits of the API, and who the client is.

Three budgets, each in a fixed window:

- ``RATELIMIT_PUBLIC`` (default 300 per minute) per client address for requests without a token,
- ``RATELIMIT_TOKEN`` (3000 per minute) per token,
- ``RATELIMIT_AUTH_FAILURES`` (20 per minute) per client address for refused tokens (401); past it
  the address gets 429 for any token, before the token is even looked up.

The first two are one bucket for the whole API (not one per route). Their counters live in Redis
when ``VIGIE_REDIS_URL`` is set, so that every ``serve`` process of a deployment shares them, under
the key prefix ``RATELIMIT_KEY_PREFIX`` (default: ``vigie:`` and a digest of the database URL, the
same for every process of one deployment, different between deployments sharing one Redis). If
Redis stops answering, each process falls back to counting in its own memory (logged) rather than
refusing service. Without ``VIGIE_REDIS_URL`` the counters are per process.

The client address is the TCP peer's, unless ``VIGIE_TRUSTED_PROXIES`` names the reverse proxies
in front: then it is read from ``X-Forwarded-For``, trusting only what those proxies appended
(:class:`ClientAddress`), so that a client cannot pick its own bucket by sending the header.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable

from flask import Flask, g, request

from service.errors import ApiError

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: WSGI environ key of requests the server makes to itself (warm-up): not rate-limited.
INTERNAL_REQUEST = "vigie.internal_request"


# ---------------------------------------------------------------------------- client address
def parse_trusted_proxies(value: str | int | None) -> int | tuple[IPNetwork, ...]:
    """``VIGIE_TRUSTED_PROXIES``: a number of hops, or addresses and networks (comma-separated).

    Raises
    ------
    ValueError
        On anything that is neither a non-negative number nor a list of addresses/networks.
    """
    text = str(value if value is not None else "").strip()
    if not text:
        return 0
    if text.isdigit():
        return int(text)
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False)
                     for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"VIGIE_TRUSTED_PROXIES: {exc} (expected a number of hops or a "
                         "comma-separated list of addresses or networks)") from None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: str, trusted: int | tuple[IPNetwork, ...]) -> str:
    """The client's address from the TCP peer and ``X-Forwarded-For``.

    ``trusted`` a number of hops *n*: the *n*-th address from the right of the header (each of
    the *n* proxies appended the address it saw); fewer entries than that: the peer.
    ``trusted`` networks: the peer must be one of them, then the header is read from the right,
    skipping trusted proxies; the first other address is the client. Entries to its left were
    written by the client itself and are never read. No trust: the peer, header ignored.
    """
    if not trusted or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    if isinstance(trusted, int):
        if len(hops) < trusted:
            return peer
        return hops[-trusted] if _ip(hops[-trusted]) else peer
    current = peer
    for hop in [*reversed(hops), None]:
        address = _ip(current)
        if address is None or not any(address in net for net in trusted):
            return current
        if hop is None or _ip(hop) is None:
            return current  # every hop is a trusted proxy, or the next one is garbage
        current = hop
    return current  # pragma: no cover - the loop always returns


class ClientAddress:
    """WSGI middleware: ``REMOTE_ADDR`` becomes the client's address (see :func:`client_address`),
    so that rate limits and the audit trail see the client, not the proxy. The peer's address is
    kept in ``environ["vigie.peer_addr"]``."""

    def __init__(self, wsgi_app: Callable, trusted: int | tuple[IPNetwork, ...]) -> None:
        self.wsgi_app = wsgi_app
        self.trusted = trusted

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR", "")
        environ["vigie.peer_addr"] = peer
        if self.trusted:
            environ["REMOTE_ADDR"] = client_address(
                peer, environ.get("HTTP_X_FORWARDED_FOR", ""), self.trusted)
        return self.wsgi_app(environ, start_response)


# ---------------------------------------------------------------------------- limits
def deployment_prefix(database_url: str) -> str:
    """The default key prefix: one per deployment (processes sharing a database share it)."""
    return "vigie:" + hashlib.sha256(database_url.encode()).hexdigest()[:12]


class AuthFailures:
    """The failed-authentication budget of each client address, in the limiter's storage."""

    def __init__(self, limiter, limit: str, prefix: str) -> None:
        from limits import parse

        self.limiter = limiter
        self.limit = parse(limit)
        self.prefix = prefix

    def _keys(self) -> tuple[str, ...]:
        return (self.prefix, "auth_failures", request.remote_addr or "unknown")

    def _strategy(self):
        return self.limiter.limiter  # Flask-Limiter's, or its in-memory fallback if storage died

    def check(self) -> None:
        """429 when this address has spent its budget (nothing is counted)."""
        try:
            if self._strategy().test(self.limit, *self._keys()):
                return
            reset = self._strategy().get_window_stats(self.limit, *self._keys()).reset_time
        except Exception:  # storage down: let the lookup decide; never a 500 for this
            log.warning("rate-limit storage unreachable: failed-authentication budget not "
                        "checked", exc_info=True)
            return
        retry = max(1, math.ceil(reset - time.time()))
        raise ApiError(429, "rate_limited",
                       f"too many refused tokens from this address: retry in {retry} s",
                       {"limit": str(self.limit)}, headers={"Retry-After": str(retry)})

    def hit(self) -> None:
        try:
            self._strategy().hit(self.limit, *self._keys())
        except Exception:
            log.warning("rate-limit storage unreachable: refused token not counted",
                        exc_info=True)


def init_limiter(app: Flask, settings) -> None:
    """Install the client-address middleware, the limiter and the failed-authentication budget."""
    from flask_limiter import Limiter

    app.wsgi_app = ClientAddress(app.wsgi_app, parse_trusted_proxies(settings.trusted_proxies))

    def key() -> str:
        principal = getattr(g, "principal", None)
        if principal is not None and principal.authenticated:
            return f"token:{principal.token_id}"
        return f"addr:{request.remote_addr}"

    def limit() -> str:
        principal = getattr(g, "principal", None)
        if principal is not None and principal.authenticated:
            return app.config["RATELIMIT_TOKEN"]
        return app.config["RATELIMIT_PUBLIC"]

    storage = app.config.get("RATELIMIT_STORAGE_URI") or settings.redis_url or "memory://"
    if storage.startswith("memory://"):  # the same, without a thread per burst of requests
        import service.ratelimit_memory  # noqa: F401  (registers vigie-memory://)

        storage = "vigie-" + storage
    prefix = app.config.get("RATELIMIT_KEY_PREFIX") or deployment_prefix(settings.database_url)
    limiter = Limiter(key_func=key, app=app, application_limits=[limit], storage_uri=storage,
                      key_prefix=prefix, enabled=app.config["RATELIMIT_ENABLED"],
                      in_memory_fallback_enabled=not storage.startswith("vigie-memory://"))
    # The server's own warm-up requests (service.cli.serve) spend no client's budget; a client
    # cannot set this WSGI environ key (headers arrive as HTTP_*).
    limiter.request_filter(lambda: bool(request.environ.get(INTERNAL_REQUEST)))
    state = app.extensions["vigie"]
    state.extra["limiter"] = limiter
    if app.config["RATELIMIT_ENABLED"]:
        state.extra["auth_failures"] = AuthFailures(
            limiter, app.config["RATELIMIT_AUTH_FAILURES"], prefix)
    log.info("rate limits: storage %s, key prefix %s", storage.split("@")[-1], prefix)
