"""The auth matrix: no token, wrong token, each role x each class of route."""

from __future__ import annotations

import pytest

from mlwarden.daemon.api import build_app
from mlwarden.daemon.api.auth import ROLE_GRANTS, allows, authenticate, mint_token
from mlwarden.daemon.api.http import ROUTES
from mlwarden.daemon.core.config import AuthConfig, TokenConfig
from tests.fake_plugins import fake_routes

TOKENS = {role: mint_token() for role in ("viewer", "auditor", "operator", "admin")}
WRONG = mint_token()[0]

# One route per class: (method, path, body, status when allowed).
ROUTE_CLASSES = {
    "open": ("GET", "/healthz", None, 200),
    "viewer": ("GET", "/api/fake/items", None, 200),
    "auditor": ("GET", "/api/audit", None, 200),
    "operator": ("POST", "/api/fake/items/{n}", {"x": 1}, 201),
    "admin": ("DELETE", "/api/fake/items/{n}", None, 200),
}
CALLERS = ["none", "wrong", "viewer", "auditor", "operator", "admin"]


def expected_status(route_role: str, caller: str, allowed: int) -> int:
    if route_role == "open":
        return allowed
    if caller in ("none", "wrong"):
        return 401
    return allowed if allows(caller, route_role) else 403


def tokens_toml() -> str:
    return "".join(
        f'[[auth.tokens]]\nname = "{role}-token"\nsha256 = "{digest}"\nrole = "{role}"\n'
        for role, (_, digest) in TOKENS.items()
    )


@pytest.fixture
async def secured_client(make_warden, make_client):
    warden = await make_warden(tokens_toml())
    return await make_client(warden, extra_routes=fake_routes.routes())


def headers_for(caller: str) -> dict[str, str]:
    if caller == "none":
        return {}
    token = WRONG if caller == "wrong" else TOKENS[caller][0]
    return {"Authorization": f"Bearer {token}"}


async def test_auth_matrix(secured_client):
    seen = []
    for n, (route_role, (method, path, body, allowed)) in enumerate(ROUTE_CLASSES.items()):
        for caller in CALLERS:
            url = path.format(n=f"item-{n}-{caller}")
            resp = await secured_client.request(method, url, json=body, headers=headers_for(caller))
            want = expected_status(route_role, caller, allowed)
            payload = await resp.json()
            seen.append((route_role, caller, resp.status))
            assert resp.status == want, (route_role, caller, payload)
            if want == 401:
                assert payload["error"]["code"] == "unauthorized"
                assert resp.headers["WWW-Authenticate"] == 'Bearer realm="mlwarden"'
                assert "bearer token" in payload["error"]["message"]
            if want == 403:
                assert payload["error"]["code"] == "forbidden"
                message = payload["error"]["message"]
                assert f"'{caller}-token' has role '{caller}'" in message
                assert f"needs '{route_role}'" in message
    assert len(seen) == len(ROUTE_CLASSES) * len(CALLERS)


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Basic dXNlcjpwYXNz", "Bearer ", "Token {token}", "Bearer {token}x"],
)
async def test_malformed_authorization_is_401(secured_client, header):
    header = header.format(token=TOKENS["admin"][0])
    resp = await secured_client.get("/api/system/health", headers={"Authorization": header})
    assert resp.status == 401


async def test_scheme_is_case_insensitive(secured_client):
    token = TOKENS["viewer"][0]
    resp = await secured_client.get(
        "/api/system/health", headers={"Authorization": f"bearer {token}"}
    )
    assert resp.status == 200


async def test_open_routes_need_no_token(secured_client):
    for path in ("/healthz", "/readyz", "/metrics"):
        resp = await secured_client.get(path)
        assert resp.status == 200, path


async def test_no_tokens_means_anonymous_admin_on_loopback(make_warden, make_client):
    warden = await make_warden()
    client = await make_client(warden, extra_routes=fake_routes.routes())
    assert (await client.delete("/api/fake/items/x")).status == 200
    assert (await client.get("/api/audit")).status == 200
    entries = (await (await client.get("/api/audit")).json())["entries"]
    assert entries[0]["actor"] == "anonymous"


def test_authenticate_hashes_and_compares():
    token, digest = mint_token()
    auth = AuthConfig(tokens=(TokenConfig("a", "0" * 64, "admin"), TokenConfig("b", digest)))
    assert authenticate(auth, f"Bearer {token}").name == "b"
    assert authenticate(auth, f"Bearer {token}").role == "viewer"
    assert authenticate(auth, f"Bearer {digest}") is None  # the hash itself is no token
    assert authenticate(auth, None) is None


async def test_every_route_in_the_built_app_has_a_role(warden):
    app = build_app(warden, extra_routes=fake_routes.routes())
    table = app[ROUTES]
    served = set()
    for route in app.router.routes():
        if route.method == "HEAD":  # served with GET's handler and role
            assert ("GET", route.resource.canonical) in table
            continue
        key = (route.method, route.resource.canonical)
        served.add(key)
        assert key in table, f"{key} is served but has no entry in the route table"
        assert table[key].role == "open" or table[key].role in ROLE_GRANTS
    assert served == set(table)
    opened = {path for (_, path), r in table.items() if r.role == "open"}
    assert opened == {"/healthz", "/readyz", "/metrics"}


async def test_auditor_reads_and_is_refused_every_mutating_route(secured_client):
    """The auditor may call every read of viewer or auditor role and no route that changes
    state: each mutating route of the real table answers 403 before its handler runs."""
    table = secured_client.app[ROUTES]
    headers = headers_for("auditor")
    mutating = [r for r in table.values() if r.method != "GET" and r.role != "open"]
    assert len(mutating) > 20
    for route in mutating:
        path = route.path.replace("{", "x-").replace("}", "")
        resp = await secured_client.request(route.method, path, json={}, headers=headers)
        assert resp.status == 403, (route.method, route.path, resp.status)
    reads = [r for r in table.values() if r.method == "GET" and r.role != "open"]
    assert {r.role for r in reads} == {"viewer", "auditor", "admin"}
    # The one admin-only read: which encryption keys wrap how many objects.
    assert {r.path for r in reads if r.role == "admin"} == {"/api/system/keys"}
    resp = await secured_client.get("/api/system/keys", headers=headers)
    assert resp.status == 403
    for path in ("/api/audit", "/api/compliance/report?format=json", "/api/exports/audit"):
        resp = await secured_client.get(path, headers=headers)
        assert resp.status == 200, (path, await resp.text())
    viewer = headers_for("viewer")
    for path in ("/api/audit", "/api/compliance/report", "/api/exports/audit"):
        assert (await secured_client.get(path, headers=viewer)).status == 403, path
