"""One audit chain written by several daemons at once on one PostgreSQL store."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import sqlalchemy as sa

from mlwarden.daemon.core.audit import AUDIT_SCHEMA, AuditLog, audit_table
from mlwarden.daemon.core.audit_seal import CheckpointWriter, load_key
from mlwarden.daemon.core.config_loader import load_config
from mlwarden.daemon.core.store import Store
from mlwarden.daemon.warden import Warden
from tests.daemon.core.test_audit import verify

KEY = "k" * 48


def verify_cli(base_path, store_url: str, checkpoints) -> subprocess.CompletedProcess[str]:
    return verify(
        base_path,
        MLWARDEN_STORE_URL=store_url,
        MLWARDEN_AUDIT_KEY=KEY,
        MLWARDEN_AUDIT_CHECKPOINT_DIR=str(checkpoints),
    )


async def test_three_writers_keep_one_chain_and_a_tampered_row_is_named(postgres_url, tmp_path):
    key = load_key(tmp_path, {"MLWARDEN_AUDIT_KEY": KEY})
    assert key is not None
    checkpoints = tmp_path / "checkpoints"
    stores = [Store(postgres_url) for _ in range(3)]
    await asyncio.gather(*(s.open([AUDIT_SCHEMA]) for s in stores))
    logs = []
    for n, store in enumerate(stores):
        log = AuditLog(store)
        log.seal(key, CheckpointWriter(checkpoints, key, writer=f"daemon-{n}"))
        logs.append(log)
    try:
        ids = await asyncio.gather(
            *(
                logs[i % 3].record(actor=f"daemon-{i % 3}", action="append", target=str(i))
                for i in range(90)
            )
        )
        assert sorted(ids) == list(range(1, 91))
        for log in logs:
            result = await log.verify()
            assert result.ok, result.reason
            assert result.rows == 90 and result.checkpoints >= 3
        ok = verify_cli(tmp_path, postgres_url, checkpoints)
        assert ok.returncode == 0, ok.stderr
        assert "audit log OK: 90 entries" in ok.stdout

        async with stores[0].begin() as conn:
            await conn.execute(
                audit_table.update().where(audit_table.c.id == 42).values(outcome="forged")
            )
        bad = verify_cli(tmp_path, postgres_url, checkpoints)
        assert bad.returncode == 1
        assert "audit log TAMPERED at row 42: content does not match its hash" in bad.stderr
    finally:
        for log in logs:
            log.close()
        await asyncio.gather(*(s.close() for s in stores))


async def test_three_wardens_start_together_and_append_to_one_chain(
    postgres_url, tmp_path, mlflow_template, monkeypatch
):
    monkeypatch.setenv("MLWARDEN_AUDIT_KEY", KEY)
    monkeypatch.setenv("MLWARDEN_AUDIT_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    wardens = []
    for n in range(3):
        base = tmp_path / f"host-{n}"
        base.mkdir()
        shutil.copy(mlflow_template, base / "mlflow.db")
        config = load_config(
            env={},
            overrides={
                "daemon.base_path": str(base),
                "store.url": postgres_url,
                "cluster.instance": f"host-{n}",
            },
        )
        wardens.append(Warden(config))
    await asyncio.gather(*(w.start() for w in wardens))  # one fresh database, three migrators
    try:
        versions = [await w.store.schema_versions() for w in wardens]
        assert versions[0] == versions[1] == versions[2] and "ingest" in versions[0]
        await asyncio.gather(
            *(
                w.audit.record(actor=f"host-{n}", action="append", target=str(i))
                for i in range(20)
                for n, w in enumerate(wardens)
            )
        )
        result = await wardens[1].audit.verify()
        assert result.ok, result.reason
        assert result.rows == 60
        async with wardens[0].store.connect() as conn:
            actors = (
                await conn.execute(
                    sa.select(audit_table.c.actor, sa.func.count()).group_by(audit_table.c.actor)
                )
            ).all()
        assert dict(actors) == {"host-0": 20, "host-1": 20, "host-2": 20}
    finally:
        await asyncio.gather(*(w.stop() for w in wardens))
