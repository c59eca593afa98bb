"""The audit log: every mutation recorded with who/route/target/outcome; tampering detected."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import event

from mlwarden.daemon.api.auth import mint_token
from mlwarden.daemon.core.audit import GENESIS, entry_hash
from mlwarden.daemon.core.audit_seal import load_key
from tests.fake_plugins import fake_routes
from tests.helpers import store_sql

TOKENS = {role: mint_token() for role in ("viewer", "operator", "admin")}
TOKENS_TOML = "".join(
    f'[[auth.tokens]]\nname = "{role}-token"\nsha256 = "{digest}"\nrole = "{role}"\n'
    for role, (_, digest) in TOKENS.items()
)


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role][0]}"}


@pytest.fixture
async def audited(make_warden):
    return await make_warden(TOKENS_TOML)


@pytest.fixture
async def client(audited, make_client):
    return await make_client(audited, extra_routes=fake_routes.routes())


@pytest.fixture
def sql(audited):
    """Edit the store behind the daemon's back, as a forger with database access would."""
    return functools.partial(store_sql, audited.config.database_url)


@pytest.fixture
def verify_log(audited, base_path):
    """``mlwarden audit verify`` on the test's store, on either backend."""
    url = audited.config.database_url
    store = {} if url.startswith("sqlite") else {"MLWARDEN_STORE_URL": url}
    return lambda **env: verify(base_path, **store, **env)


async def audit_entries(client) -> list[dict]:
    resp = await client.get("/api/audit", headers=auth("admin"))
    assert resp.status == 200
    return (await resp.json())["entries"]


def verify(base_path, **env: str) -> subprocess.CompletedProcess[str]:
    """``mlwarden audit verify`` on ``base_path``, with more environment variables."""
    return subprocess.run(
        [sys.executable, "-m", "mlwarden", "audit", "verify"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLOPS_BASE_PATH": str(base_path), **env},
    )


async def make_history(client) -> None:
    """Five mutations: created, conflict, forbidden, unauthenticated, deleted."""
    calls = [
        ("POST", "/api/fake/items/a", {"v": 1}, "operator", 201),
        ("POST", "/api/fake/items/a", {"v": 2}, "operator", 409),
        ("DELETE", "/api/fake/items/a", None, "viewer", 403),
        ("POST", "/api/fake/items/b", {}, None, 401),
        ("DELETE", "/api/fake/items/a", None, "admin", 200),
    ]
    for method, path, body, role, status in calls:
        headers = auth(role) if role else {}
        resp = await client.request(method, path, json=body, headers=headers)
        assert resp.status == status, (method, path, role, await resp.text())


@pytest.mark.both_backends
async def test_mutations_are_audited_with_who_route_target_outcome(client, base_path):
    await client.get("/api/fake/items", headers=auth("viewer"))  # reads are not audited
    await make_history(client)
    entries = await audit_entries(client)
    assert [e["id"] for e in entries] == [5, 4, 3, 2, 1]  # newest first
    got = [(e["actor"], e["action"], e["target"], e["outcome"]) for e in reversed(entries)]
    assert got == [
        ("operator-token", "POST /api/fake/items/{name}", "name=a", "201"),
        ("operator-token", "POST /api/fake/items/{name}", "name=a", "409"),
        ("viewer-token", "DELETE /api/fake/items/{name}", "name=a", "403"),
        ("anonymous", "POST /api/fake/items/{name}", "name=b", "401"),
        ("admin-token", "DELETE /api/fake/items/{name}", "name=a", "200"),
    ]
    for entry in entries:
        assert entry["ts"] > 0
        assert entry["detail"]["remote"] == "127.0.0.1"
    # Each row is chained to the previous one, by HMAC under the key outside the database.
    key = load_key(base_path)
    prev = GENESIS
    for entry in reversed(entries):
        row = {**entry, "detail": _detail_text(entry["detail"])}
        assert entry["prev_hash"] == prev and entry["scheme"] == "hmac-sha256"
        assert entry["hash"] == entry_hash(prev, row, key)
        assert entry["hash"] != entry_hash(prev, row)
        prev = entry["hash"]


def _detail_text(detail: dict) -> str:
    import json

    return json.dumps(detail, sort_keys=True, default=str)


@pytest.mark.both_backends
async def test_audit_route_is_admin_only_and_pages(client):
    await make_history(client)
    assert (await client.get("/api/audit")).status == 401
    assert (await client.get("/api/audit", headers=auth("viewer"))).status == 403
    assert (await client.get("/api/audit", headers=auth("operator"))).status == 403
    page = await client.get("/api/audit?limit=2&before_id=4", headers=auth("admin"))
    assert [e["id"] for e in (await page.json())["entries"]] == [3, 2]
    for bad in ("limit=0", "limit=1001", "limit=x", "before_id=y"):
        resp = await client.get(f"/api/audit?{bad}", headers=auth("admin"))
        assert resp.status == 400, bad
        assert (await resp.json())["error"]["code"] == "invalid_input"


@pytest.mark.both_backends
async def test_internal_state_changes_can_be_recorded(warden):
    row = await warden.audit.record(
        actor="mlwarden", action="rollback", target="model=m", detail={"to": "1.0.0"}
    )
    entries = await warden.audit.entries()
    assert entries[0]["id"] == row
    assert entries[0]["detail"] == {"to": "1.0.0"}
    assert (await warden.audit.verify()).ok


async def test_verify_names_an_edited_row(client, sql, verify_log):
    await make_history(client)
    ok = verify_log()
    assert ok.returncode == 0, ok.stderr
    assert "audit log OK: 5 entries" in ok.stdout

    await sql("UPDATE audit_log SET outcome = '200' WHERE id = 3")
    bad = verify_log()
    assert bad.returncode == 1
    assert "audit log TAMPERED at row 3: content does not match its hash" in bad.stderr


async def test_verify_names_the_row_after_a_rehashed_edit_or_a_deletion(client, sql, verify_log):
    await make_history(client)
    [row] = await sql("SELECT * FROM audit_log WHERE id = 2")
    row["outcome"] = "201"
    # A forger who recomputes the edited row's hash still breaks the next link.
    await sql(
        "UPDATE audit_log SET outcome = :outcome, hash = :hash WHERE id = 2",
        {"outcome": row["outcome"], "hash": entry_hash(row["prev_hash"], row)},
    )
    result = verify_log()
    assert result.returncode == 1
    assert "TAMPERED at row 2: content does not match its hash" in result.stderr

    await sql("DELETE FROM audit_log WHERE id >= 2")
    await sql("DELETE FROM audit_log WHERE id = 1")
    result = verify_log()  # emptied: the checkpoints remember the rows
    assert result.returncode == 1
    assert "TAMPERED at row 1: truncated: checkpoint" in result.stderr
    assert "names row 5, but the log ends at row 0" in result.stderr


async def test_verify_names_a_deleted_row(client, sql, verify_log):
    await make_history(client)
    await sql("DELETE FROM audit_log WHERE id = 4")
    result = verify_log()
    assert result.returncode == 1
    assert "TAMPERED at row 5: expected row 4 (a row is missing)" in result.stderr


@pytest.mark.both_backends
async def test_concurrent_entries_share_commits_and_keep_the_chain(warden):
    commits = []
    event.listen(warden.store.engine.sync_engine, "commit", lambda conn: commits.append(1))
    before = len(await warden.audit.entries(limit=1000))
    ids = await asyncio.gather(
        *(warden.audit.record("sender", "POST /api/models/{name}/predictions", f"n={i}")
          for i in range(40))
    )  # fmt: skip
    assert sorted(ids) == list(range(before + 1, before + 41))
    assert len(commits) < 40  # group-committed, not one transaction per entry
    entries = await warden.audit.entries(limit=1000)
    by_id = {e["id"]: e["target"] for e in entries}
    assert [by_id[i] for i in ids] == [f"n={i}" for i in range(40)]  # each got its own id
    assert (await warden.audit.verify()).ok


async def rehash_all(sql, scheme: str | None = None) -> None:
    """What a forger without the key can do: recompute every hash with plain SHA-256."""
    prev = GENESIS
    for row in await sql("SELECT * FROM audit_log ORDER BY id"):
        new = entry_hash(prev, row)
        await sql(
            "UPDATE audit_log SET prev_hash = :prev, hash = :new, scheme = :scheme WHERE id = :id",
            {"prev": prev, "new": new, "scheme": scheme or row["scheme"], "id": row["id"]},
        )
        prev = new


async def test_an_edit_with_every_later_hash_recomputed_is_detected(client, sql, verify_log):
    # The attack of issue 23: edit a row, recompute every later hash (SHA-256, no key).
    await make_history(client)
    await sql("UPDATE audit_log SET outcome = '201' WHERE id = 2")
    await rehash_all(sql)
    result = verify_log()
    assert result.returncode == 1
    assert "TAMPERED at row 1: content does not match its hash" in result.stderr
    # Relabelled as legacy rows, the chain is consistent, but the checkpoints say
    # there were none, and that row 5's hash was another.
    await rehash_all(sql, scheme="sha256")
    result = verify_log()
    assert result.returncode == 1
    assert "TAMPERED at row 1: an unkeyed row past the last legacy row 0" in result.stderr


async def test_deleting_the_newest_rows_is_detected(client, sql, verify_log):
    await make_history(client)
    await sql("DELETE FROM audit_log WHERE id >= 4")
    result = verify_log()
    assert result.returncode == 1
    assert "TAMPERED at row 4: truncated: checkpoint" in result.stderr
    assert "names row 5, but the log ends at row 3" in result.stderr


async def test_a_forged_or_missing_checkpoint_is_detected(client, base_path, verify_log):
    await make_history(client)
    [path] = (base_path / "audit").glob("audit-checkpoints.*.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == 5  # one per commit
    path.write_text("\n".join([*lines[:-1], lines[-1].replace('"id": 5', '"id": 4')]) + "\n")
    result = verify_log()
    assert result.returncode == 1
    assert f"checkpoint {path}:5 does not carry the key's seal" in result.stderr
    path.unlink()
    result = verify_log()
    assert result.returncode == 1
    assert "keyed rows but no checkpoint" in result.stderr


async def test_the_key_file_is_created_0600_and_verify_needs_it(client, base_path, verify_log):
    await make_history(client)
    key_file = base_path / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    moved = base_path.parent / "elsewhere.key"
    key_file.rename(moved)
    result = verify_log()
    assert result.returncode == 1
    assert "TAMPERED at row 1: the row is keyed (HMAC) and no audit key was found" in (
        result.stderr
    )
    env_key = verify_log(MLWARDEN_AUDIT_KEY=moved.read_text().strip())
    assert env_key.returncode == 0, env_key.stderr
    assert "audit log OK: 5 entries, hash chain intact, 5 checkpoints" in env_key.stdout
    short = subprocess.run(
        [sys.executable, "-m", "mlwarden", "audit", "verify"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLOPS_BASE_PATH": str(base_path), "MLWARDEN_AUDIT_KEY": "x" * 8},
    )
    assert short.returncode == 2
    assert "audit key from $MLWARDEN_AUDIT_KEY is 8 characters; at least 32" in short.stderr


@pytest.mark.parametrize(
    "backend", ["sqlite"], indirect=True
)  # stores from before the audit key (schema version 1) predate PostgreSQL support
async def test_rows_from_before_the_key_verify_as_legacy(make_config, base_path):
    # A store written by a release without the key: schema version 1, plain SHA-256.
    from mlwarden.daemon.warden import Warden

    db = sqlite3.connect(base_path / "mlwarden.db")
    db.execute(
        "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, ts FLOAT NOT NULL, "
        "actor VARCHAR(128) NOT NULL, action VARCHAR(256) NOT NULL, "
        "target VARCHAR(512) NOT NULL, outcome VARCHAR(64) NOT NULL, detail TEXT NOT NULL, "
        "prev_hash VARCHAR(64) NOT NULL, hash VARCHAR(64) NOT NULL)"
    )
    db.execute(
        "CREATE TABLE schema_version (component VARCHAR(64) PRIMARY KEY, "
        "version INTEGER NOT NULL, applied_at FLOAT NOT NULL)"
    )
    db.execute("INSERT INTO schema_version VALUES ('audit', 1, 0)")
    prev = GENESIS
    for i in (1, 2, 3):
        row = {
            "id": i,
            "ts": 1.0 * i,
            "actor": "old",
            "action": "POST /x",
            "target": "",
            "outcome": "200",
            "detail": "{}",
        }
        row["hash"] = entry_hash(prev, row)
        db.execute(
            "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*(row[k] for k in ("id", "ts", "actor", "action", "target", "outcome")), "{}",
             prev, row["hash"]),
        )  # fmt: skip
        prev = row["hash"]
    db.commit()
    db.close()
    async with Warden(make_config()) as warden:
        await warden.audit.record("new", "POST /y")
        await warden.audit.record("new", "POST /z")
        result = await warden.audit.verify()
        assert (result.ok, result.rows, result.legacy) == (True, 5, 3)
    ok = verify(base_path)
    assert ok.returncode == 0, ok.stderr
    assert "audit log OK: 5 entries, 3 legacy unkeyed, hash chain intact" in ok.stdout
    assert "rows 1-3 predate the audit key" in ok.stdout
    # A legacy row edited without rehashing is still caught; one put after the keyed
    # rows is a downgrade.
    with sqlite3.connect(base_path / "mlwarden.db") as db:
        db.execute("UPDATE audit_log SET scheme = 'sha256' WHERE id = 5")
    bad = verify(base_path)
    assert "TAMPERED at row 5: an unkeyed row after keyed rows (from row 4)" in bad.stderr
