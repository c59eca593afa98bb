"""Alert routes: roles, silences' validation (each bad input a clear 4xx), listings."""

from __future__ import annotations

import pytest

from mlwarden.daemon.api.auth import mint_token
from mlwarden.errors import ConfigError

VIEWER, VIEWER_SHA = mint_token()
ADMIN, ADMIN_SHA = mint_token()

TOKENS = f"""
[[auth.tokens]]
name = "grafana"
sha256 = "{VIEWER_SHA}"
role = "viewer"
[[auth.tokens]]
name = "alice"
sha256 = "{ADMIN_SHA}"
role = "admin"
"""

SILENCE = {"matchers": [{"name": "model", "value": "btc"}], "duration_seconds": 60}


@pytest.fixture
async def client(make_warden, make_client):
    warden = await make_warden(TOKENS)
    return await make_client(warden)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_roles_viewer_reads_admin_silences(client):
    for path in ("/api/alerts", "/api/silences", "/api/notifications"):
        resp = await client.get(path, headers=auth(VIEWER))
        assert resp.status == 200, path
        assert (await client.get(path)).status == 401
    resp = await client.post("/api/silences", json=SILENCE, headers=auth(VIEWER))
    assert resp.status == 403
    assert "needs 'admin'" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/silences", json=SILENCE, headers=auth(ADMIN))
    assert resp.status == 201
    silence = await resp.json()
    assert silence["created_by"] == "alice" and silence["comment"] == ""
    assert (
        await client.delete(f"/api/silences/{silence['id']}", headers=auth(VIEWER))
    ).status == 403
    listed = await (await client.get("/api/silences", headers=auth(VIEWER))).json()
    assert [s["id"] for s in listed["silences"]] == [silence["id"]]
    assert listed["silences"][0]["state"] == "active"
    resp = await client.delete(f"/api/silences/{silence['id']}", headers=auth(ADMIN))
    assert resp.status == 200 and (await resp.json())["state"] == "expired"
    resp = await client.delete(f"/api/silences/{silence['id']}", headers=auth(ADMIN))
    assert resp.status == 409
    resp = await client.delete("/api/silences/nope", headers=auth(ADMIN))
    assert resp.status == 404 and "nope" in (await resp.json())["error"]["message"]
    audit = await (await client.get("/api/audit", headers=auth(ADMIN))).json()
    actions = [e["action"] for e in audit["entries"]]
    assert "POST /api/silences" in actions and "DELETE /api/silences/{id}" in actions


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"duration_seconds": 60}, "matchers: required"),
        ({"matchers": [], "duration_seconds": 60}, "'matchers' must be a non-empty array"),
        ({"matchers": ["model=btc"], "duration_seconds": 60}, "matchers[0]: expected object"),
        ({"matchers": [{"value": "btc"}], "duration_seconds": 60}, "matchers[0].name: required"),
        ({"matchers": [{"name": "model", "value": 3}], "duration_seconds": 60}, "value: expected"),
        (
            {"matchers": [{"name": "model", "value": "(", "is_regex": True}], "ends_at": 4e9},
            "not a valid regular expression",
        ),
        (
            {"matchers": [{"name": "model", "value": "x", "is_regex": "yes"}], "ends_at": 4e9},
            "matchers[0].is_regex: expected bool, got str",
        ),
        (
            {"matchers": [{"name": "model", "value": "x", "op": "="}], "ends_at": 4e9},
            "matchers[0]: unknown field 'op'",
        ),
        (
            {"matchers": [{"name": "model", "value": ".*", "is_regex": True}], "ends_at": 4e9},
            "at least one matcher must not match an empty label",
        ),
        ({"matchers": SILENCE["matchers"]}, "exactly one of 'ends_at' and 'duration_seconds'"),
        ({**SILENCE, "ends_at": 4e9}, "exactly one of 'ends_at' and 'duration_seconds'"),
        ({"matchers": SILENCE["matchers"], "duration_seconds": -5}, "must be a positive number"),
        ({"matchers": SILENCE["matchers"], "ends_at": 1000.0}, "'ends_at' must be in the future"),
        ({"matchers": SILENCE["matchers"], "ends_at": "tomorrow"}, "ISO 8601"),
        ({**SILENCE, "comment": 5}, "comment: expected str, got int"),
        ({**SILENCE, "creator": "bob"}, "unknown field 'creator' (expected: matchers,"),
    ],
)
async def test_bad_silences_are_400_naming_the_key_and_leave_nothing(client, body, message):
    resp = await client.post("/api/silences", json=body, headers=auth(ADMIN))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert message in error["message"]
    listed = await (await client.get("/api/silences", headers=auth(ADMIN))).json()
    assert listed["silences"] == []


async def test_silence_accepts_iso_8601_times(client):
    body = {
        "matchers": [
            {"name": "model", "value": "btc"},
            {"name": "severity", "value": "critical", "is_equal": False},
        ],
        "starts_at": "2030-01-01T00:00:00Z",
        "ends_at": "2030-01-01T02:00:00+00:00",
    }
    resp = await client.post("/api/silences", json=body, headers=auth(ADMIN))
    assert resp.status == 201, await resp.text()
    silence = await resp.json()
    assert silence["ends_at"] - silence["starts_at"] == 7200
    assert silence["state"] == "pending"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/alerts?state=open", "'state': expected one of firing, resolved, all, got 'open'"),
        ("/api/alerts?limit=0", "'limit': expected int >= 1"),
        ("/api/alerts?limit=ten", "'limit': expected int, got str"),
        ("/api/notifications?status=failed", "'status': expected one of pending, sent, dropped"),
    ],
)
async def test_bad_queries_are_400(client, path, message):
    resp = await client.get(path, headers=auth(VIEWER))
    assert resp.status == 400
    assert message in (await resp.json())["error"]["message"]


async def test_malformed_json_body_is_400(client):
    resp = await client.post(
        "/api/silences",
        data=b"{not json",
        headers={**auth(ADMIN), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[alerts]\ngroup_wait_seconds = -1\n",
            "key 'alerts.group_wait_seconds': expected a number >= 0",
        ),
        ("[alerts]\ntick_seconds = 0\n", "key 'alerts.tick_seconds': expected a positive number"),
        (
            "[alerts]\nretry_initial_seconds = 10\nretry_max_seconds = 5\n",
            "key 'alerts.retry_max_seconds': expected >= alerts.retry_initial_seconds",
        ),
        ("[alerts]\nrepeat_interval = 5\n", "key 'alerts.repeat_interval': unknown key"),
        ('[[alerts.rules]]\nname = "X"\n', "key 'alerts.rules[0].fire_on': expected at least one"),
        (
            '[[alerts.rules]]\nname = "X"\nfire_on = ["a"]\nseverity = "page"\n',
            "key 'alerts.rules[0].severity': expected one of",
        ),
        (
            '[[alerts.rules]]\nname = "X"\nfire_on = ["a"]\n'
            '[[alerts.rules]]\nname = "X"\nfire_on = ["b"]\n',
            "key 'alerts.rules[1].name': duplicate rule 'X'",
        ),
        ('[[notifiers]]\nname = "n"\nsend_resolved = "yes"\n', "key 'notifiers[0].send_resolved'"),
    ],
)
def test_bad_alerts_config_names_the_key(make_config, toml, message):
    with pytest.raises(ConfigError) as info:
        make_config(toml)
    assert message in str(info.value)
    assert "mlwarden.toml" in str(info.value)
