"""Bearer-token authentication and role checks, from one route -> role table.

Tokens are configured as SHA-256 hashes; a presented token is hashed and compared with
every configured hash in constant time. Each role holds a set of route roles
(``ROLE_GRANTS``): viewer < operator < admin, and ``auditor``, which reads what a viewer
reads plus the audit log, the compliance report and the audit export, and changes
nothing. With no tokens configured (loopback only, enforced at start) every caller is an
anonymous admin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from ...errors import Forbidden, Unauthorized
from .http import ROUTES, WARDEN, Handler

if TYPE_CHECKING:
    from ..core.config import AuthConfig

__all__ = [
    "IDENTITY",
    "ROLE_GRANTS",
    "Identity",
    "actor",
    "allows",
    "auth_middleware",
    "authenticate",
    "identity",
    "mint_token",
    "route_method",
]

#: The route roles each caller role may call. ``auditor`` routes are reads that only an
#: auditor or an admin may make; an auditor holds no operator or admin route.
ROLE_GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "auditor": frozenset({"viewer", "auditor"}),
    "operator": frozenset({"viewer", "operator"}),
    "admin": frozenset({"viewer", "auditor", "operator", "admin"}),
}


def allows(role: str, route_role: str) -> bool:
    """Whether a caller holding ``role`` may call a route declared with ``route_role``."""
    return route_role == "open" or route_role in ROLE_GRANTS.get(role, frozenset())


@dataclass(frozen=True)
class Identity:
    """Who made a request: the token's name and role."""

    name: str
    role: str


IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)


def route_method(request: web.Request) -> str:
    """The method a request is declared under: HEAD is answered (and authorised) as GET."""
    return "GET" if request.method == "HEAD" else request.method


def identity(request: web.Request) -> Identity:
    """The authenticated caller of ``request`` (set by the auth middleware)."""
    return request[IDENTITY]


def actor(request: web.Request) -> str:
    """The caller's name as the audit log and the registry record it."""
    who = request.get(IDENTITY)
    return who.name if who else "anonymous"


def mint_token() -> tuple[str, str]:
    """A new random bearer token and the SHA-256 hex digest to put in the config."""
    token = "mlw_" + secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def authenticate(auth: AuthConfig, header: str | None) -> Identity | None:
    """The identity for an ``Authorization`` header, or None when it matches no token."""
    if not auth.tokens:
        return Identity("anonymous", "admin")
    scheme, _, credentials = (header or "").strip().partition(" ")
    credentials = credentials.strip()
    # The auth scheme is case-insensitive (RFC 9110 section 11.1).
    if scheme.lower() != "bearer" or not credentials:
        return None
    digest = hashlib.sha256(credentials.encode()).hexdigest().encode()
    found = None
    for token in auth.tokens:
        # Compare against every token so the time taken does not say which one matched.
        if hmac.compare_digest(digest, token.sha256.encode()):
            found = Identity(token.name, token.role)
    return found


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a route to a caller without a valid token (401) or the role it needs (403)."""
    resource = request.match_info.route.resource
    if resource is None:  # no such route: let the router answer 404/405
        return await handler(request)
    route = request.app[ROUTES].get((route_method(request), resource.canonical))
    if route is None or route.role == "open":
        return await handler(request)
    who = authenticate(request.app[WARDEN].config.auth, request.headers.get("Authorization"))
    if who is None:
        raise Unauthorized("missing or invalid bearer token (Authorization: Bearer <token>)")
    request[IDENTITY] = who
    if not allows(who.role, route.role):
        raise Forbidden(
            f"token {who.name!r} has role {who.role!r}; "
            f"{request.method} {resource.canonical} needs {route.role!r}"
        )
    return await handler(request)
