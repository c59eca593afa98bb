"""Bearer-token authentication and role checks, from one route -> role table.

Tokens are configured as SHA-256 hashes; a presented token is hashed and compared with
every configured hash in constant time. Roles are ordered viewer < operator < admin.
With no tokens configured (loopback only, enforced at start) every caller is an
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
    "ROLE_RANK",
    "Identity",
    "actor",
    "auth_middleware",
    "authenticate",
    "identity",
    "mint_token",
    "route_method",
]

ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}


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
    if ROLE_RANK[who.role] < ROLE_RANK[route.role]:
        raise Forbidden(
            f"token {who.name!r} has role {who.role!r}; "
            f"{request.method} {resource.canonical} needs {route.role!r}"
        )
    return await handler(request)
