"""Encryption at rest: envelopes, key sources, and a daemon whose disk holds no plaintext."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from mlwarden.daemon.core.encryption import (
    Presealed,
    SealedBytes,
    Sealer,
    current_sealer,
    is_sealed,
    key_id_of,
    set_current_sealer,
)
from mlwarden.daemon.core.keys import (
    format_keyring,
    load_keyring,
    new_key,
    parse_keyring,
    write_key_file,
)
from mlwarden.daemon.warden import Warden
from mlwarden.errors import ConfigError, DecryptionFailed
from mlwarden.types import Event, Severity
from tests.daemon.rollouts.helpers import MODEL_CONFIG, register_models, send_traffic
from tests.helpers import store_sql

REPO = Path(__file__).resolve().parents[3]

# -- the envelope ---------------------------------------------------------------------


def _ring(*ids: str):
    return parse_keyring(format_keyring({i: new_key() for i in ids}), "test")


def test_sealed_bytes_round_trip_and_hide_the_plaintext():
    sealer = Sealer(_ring("k1"))
    sealed = sealer.seal(b"customer-4711 bought BTC", "outbox")
    assert b"customer-4711" not in sealed
    assert key_id_of(sealed) == "k1"
    assert sealer.open(sealed, "outbox", "row 1") == b"customer-4711 bought BTC"
    # Two seals of the same plaintext differ (a fresh data key and nonce each).
    assert sealer.seal(b"x", "outbox") != sealer.seal(b"x", "outbox")


def test_a_flipped_byte_a_wrong_key_and_a_missing_key_are_refused_by_name():
    failures: list[tuple[str, str]] = []
    sealer = Sealer(_ring("k1"), on_failure=lambda w, r: failures.append((w, r)))
    sealed = bytearray(sealer.seal(b"secret row", "ingest_journal"))
    sealed[-5] ^= 0x01
    with pytest.raises(DecryptionFailed, match=r"ingest_journal row 7.*tag does not match"):
        sealer.open(bytes(sealed), "ingest_journal", "ingest_journal row 7")
    good = Sealer(_ring("k1")).seal(b"secret row", "x")
    with pytest.raises(DecryptionFailed, match=r"key 'k1' of the key ring .* does not unwrap"):
        sealer.open(good, "x", "row 8")  # same id, other key material
    with pytest.raises(DecryptionFailed, match="key 'k1' is not in the key ring"):
        Sealer(_ring("k2")).open(good, "x", "row 9")
    with pytest.raises(DecryptionFailed, match="encryption is not enabled"):
        Sealer(None).open(good, "x", "row 10")
    # A row sealed for one purpose cannot be passed off as another kind.
    ring = _ring("k1")
    with pytest.raises(DecryptionFailed, match="tag does not match"):
        Sealer(ring).open(Sealer(ring).seal(b"a", "outbox"), "profile_buckets", "row 11")
    assert [w for w, _ in failures] == ["ingest_journal row 7", "row 8"]


def test_rewrap_changes_the_key_id_and_keeps_the_body():
    ring = _ring("k1")
    sealer = Sealer(ring)
    sealed = sealer.seal(b"payload", "p")
    sealer.replace_keyring(parse_keyring(format_keyring({**ring.keys, "k2": new_key()}), "t"))
    rewrapped = sealer.rewrap(sealed, "obj")
    assert rewrapped is not None and key_id_of(rewrapped) == "k2"
    assert rewrapped.endswith(sealed[-35:])  # the ciphertext was not touched
    assert sealer.rewrap(rewrapped, "obj") is None
    only_new = {"k2": sealer.keyring.keys["k2"]}  # type: ignore[union-attr]
    assert Sealer(parse_keyring(format_keyring(only_new), "t")).open(rewrapped, "p", "o") == (
        b"payload"
    )


def test_a_value_sealed_ahead_is_stored_once_sealed_and_only_for_its_column():
    """SealedBytes.seal_ahead (a writer seals outside its transaction): bound as it is,
    never sealed twice, and bound to its column's purpose like a value sealed at bind."""
    meta = sa.MetaData()
    batches = sa.Table("batches", meta, sa.Column("data", SealedBytes("prediction_batches")))
    journal = sa.Table("journal", meta, sa.Column("data", SealedBytes("ingest_journal")))
    raw = sa.type_coerce(batches.c.data, sa.LargeBinary())
    engine = sa.create_engine("sqlite://")
    meta.create_all(engine)
    previous = current_sealer()
    try:
        set_current_sealer(None)  # encryption off: the value itself, unmarked
        assert type(batches.c.data.type.seal_ahead(b"plain")) is bytes
        sealer = Sealer(_ring("k1"))
        set_current_sealer(sealer)
        ahead = batches.c.data.type.seal_ahead(b"customer-4711 predictions")
        assert isinstance(ahead, Presealed) and is_sealed(ahead)
        with engine.begin() as conn:
            conn.execute(batches.insert(), [{"data": ahead}, {"data": b"sealed at bind"}])
            conn.execute(journal.insert().values(data=ahead))  # another column's purpose
            stored = [bytes(r[0]) for r in conn.execute(sa.select(raw))]
            assert stored[0] == ahead  # as sealed ahead, not sealed again
            assert all(b"customer-4711" not in v and is_sealed(v) for v in stored)
            assert sealer.open(stored[0], "prediction_batches", "row 1") == (
                b"customer-4711 predictions"
            )
            read = [r[0] for r in conn.execute(sa.select(batches.c.data))]
            assert read == [b"customer-4711 predictions", b"sealed at bind"]
            with pytest.raises(DecryptionFailed, match="tag does not match"):
                conn.execute(sa.select(journal.c.data)).all()
    finally:
        set_current_sealer(previous)
        engine.dispose()


# -- key sources ----------------------------------------------------------------------


def test_a_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "keys"
    write_key_file(path, {"k1": new_key()})
    assert (path.stat().st_mode & 0o777) == 0o600
    assert load_keyring(str(path)).active == "k1"
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="mode 0640; expected 0600"):
        load_keyring(str(path))


def test_keys_come_from_the_environment_and_systemd_credentials(tmp_path):
    line = f"{format_keyring({'envkey': new_key()}).splitlines()[1]}"
    ring = load_keyring(environ={"MLWARDEN_ENCRYPTION_KEYS": line})
    assert ring.active == "envkey" and ring.source == "env:MLWARDEN_ENCRYPTION_KEYS"
    creds = tmp_path / "creds"
    creds.mkdir()
    write_key_file(creds / "mlwarden-keys", {"credkey": new_key()})
    ring = load_keyring(environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert ring.active == "credkey" and ring.source == "credential:mlwarden-keys"
    with pytest.raises(ConfigError, match="no key was found"):
        load_keyring(environ={})
    with pytest.raises(ConfigError, match="expected 32 bytes"):
        parse_keyring("k1:AAAA", "t")


# -- the daemon -----------------------------------------------------------------------

SUMMARY = "ZEBRA-SUMMARY-73519"
WEBHOOK = "json://127.0.0.1:9/hook-SECRET-webhook-token-5519"


def _config(key_file: Path, enabled: bool = True) -> str:
    return (
        MODEL_CONFIG.replace('features = ["x1", "x2", "x3"]\n', 'reference = "REFERENCE"\n')
        + f"""
[encryption]
enabled = {"true" if enabled else "false"}
key_file = "{key_file}"
[alerts]
group_wait_seconds = 0
tick_seconds = 0.1
retry_initial_seconds = 3600
retry_max_seconds = 3600
[[alerts.rules]]
name = "Zebra"
fire_on = ["zebra"]
severity = "critical"
summary = "{SUMMARY}"
[[notifiers]]
name = "hook"
plugin = "apprise"
urls = ["{WEBHOOK}"]
"""
    )


#: A reference value whose float64 bytes are searched for on disk.
MARKER = 1234.56789012345


def _reference(tmp_path: Path) -> Path:
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["x1", "x2", "x3"])
    frame.loc[5, "x1"] = MARKER
    path = tmp_path / "reference.csv"
    frame.to_csv(path, index=False)
    return path


def _disk_bytes(root: Path, skip: Path) -> dict[Path, bytes]:
    return {
        p: p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p != skip and "mlflow.db" not in p.name
    }


async def _postgres_rows(url: str) -> bytes:
    """Every value of every table of a PostgreSQL store, as the server keeps it on its
    disk; nothing for SQLite, whose file under the base path is among the disk bytes."""
    if not url.startswith("postgresql"):
        return b""
    tables = await store_sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    values = []
    for table in tables:
        for row in await store_sql(url, f'SELECT * FROM "{table["tablename"]}"'):
            values += [v if isinstance(v, bytes) else str(v).encode() for v in row.values()]
    return b"".join(values)


async def _run_daemon(make_config, make_client, tmp_path, enabled: bool):
    key_file = tmp_path / "keys"
    if not key_file.exists():
        write_key_file(key_file, {"k1": new_key()})
    reference = _reference(tmp_path)
    config = make_config(_config(key_file, enabled).replace("REFERENCE", str(reference)))
    warden = Warden(config)
    await warden.start()
    versions = await register_models(warden)
    client = await make_client(warden)
    served = await send_traffic(client, 50, "cust", seed=3)
    await warden.emit(Event(kind="zebra", model="price", severity=Severity.CRITICAL))
    for _ in range(100):
        counts = await warden.alerts.outbox.counts()
        if counts.get("pending"):
            break
        await asyncio.sleep(0.05)
    return warden, client, versions, served


@pytest.mark.parametrize("enabled", [True, False], ids=["encrypted", "clear-control"])
async def test_no_plaintext_on_disk_while_predictions_are_served(
    make_config, make_client, tmp_path, base_path, enabled
):
    warden, _client, _versions, served = await _run_daemon(
        make_config, make_client, tmp_path, enabled
    )
    try:
        assert len(served) == 50 and all(isinstance(p["prediction"], float) for p in served)
        outbox = await warden.alerts.outbox.entries()
        assert outbox and SUMMARY in str(outbox[0]["notification"])
        assert "SECRET" not in str(outbox[0])  # the URL's secret is in no error either
        assert await warden.alerts.outbox.counts() == {"pending": 1}
    finally:
        await warden.stop()
    rows = await store_sql(warden.config.database_url, "SELECT * FROM notification_outbox")
    outbox_rows = b"".join(str(row).encode() for row in rows)
    files = _disk_bytes(base_path, skip=tmp_path / "reference.csv")
    everything = b"".join(files.values()) + await _postgres_rows(warden.config.database_url)
    artifacts = b"".join(v for p, v in files.items() if "mlartifacts" in p.parts)
    assert artifacts  # the models are on disk
    markers = {
        "artifact content": (b"python_function", artifacts),
        "pickled model": (b"sklearn.linear_model", artifacts),
        "reference sample": (struct.pack("<d", MARKER), everything),
        "outbox summary": (SUMMARY.encode(), outbox_rows),
        # Served and labelled over the API: digested at rest (test_encrypted_ids.py).
        "prediction and label ids": (b"cust-17", everything),
    }
    found = {name: needle in hay for name, (needle, hay) in markers.items()}
    if enabled:
        assert not any(found.values()), found
    else:  # the control: the same search finds each one when encryption is off
        assert all(found.values()), found


async def test_mlflow_own_client_loads_the_encrypted_model(make_config, make_client, tmp_path):
    warden, _client, versions, _ = await _run_daemon(make_config, make_client, tmp_path, True)
    try:
        record = await warden.registry.get("price", versions[0])
        uri = record["artifact_uri"] or record["source"]
        assert uri.startswith("mlwarden-encrypted:"), uri
    finally:
        await warden.stop()
    # A fresh process: MLflow finds the plugin through the entry point of an installed
    # distribution (a dist-info on the path, as `pip install mlwarden` writes it).
    site = tmp_path / "site"
    dist = site / "mlwarden_ep-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mlwarden-ep\nVersion: 0.0.0\n")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["mlflow.artifact_repository"]["mlwarden-encrypted"]
    (dist / "entry_points.txt").write_text(
        f"[mlflow.artifact_repository]\nmlwarden-encrypted = {target}\n"
    )
    script = (
        "import sys, mlflow.pyfunc, pandas as pd\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "print(m.predict(pd.DataFrame({'x1': [1.0], 'x2': [0.0], 'x3': [0.0]}))[0])\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{site}{os.pathsep}{REPO / 'src'}",
        "MLWARDEN_KEY_FILE": str(tmp_path / "keys"),
    }
    env.pop("MLWARDEN_ENCRYPTION_KEYS", None)
    result = subprocess.run(
        [sys.executable, "-c", script, uri], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert abs(float(result.stdout.strip()) - 1.0) < 0.2  # y = x1 - 2 x2 + 0.5 x3
    assert "Failure attempting to register" not in result.stderr, result.stderr[-3000:]
    # Without the key ring MLflow's client cannot read it, and says which file.
    env["MLWARDEN_KEY_FILE"] = ""
    result = subprocess.run(
        [sys.executable, "-c", script, uri], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode != 0 and "no key was found" in result.stderr


async def test_wrong_and_missing_key_stop_the_start_naming_the_object(
    make_config, make_client, tmp_path
):
    warden, *_ = await _run_daemon(make_config, make_client, tmp_path, True)
    await warden.stop()
    key_file = tmp_path / "keys"
    original = key_file.read_text()
    reference = str(tmp_path / "reference.csv")
    write_key_file(key_file, {"k1": new_key()})  # same id, wrong material
    with pytest.raises(DecryptionFailed, match=r"cannot decrypt .*does not unwrap.*more stored"):
        await Warden(make_config(_config(key_file).replace("REFERENCE", reference))).start()
    write_key_file(key_file, {"k2": new_key()})  # k1 missing
    with pytest.raises(DecryptionFailed, match=r"key 'k1' is not in the key ring"):
        await Warden(make_config(_config(key_file).replace("REFERENCE", reference))).start()
    key_file.write_text(original)
    key_file.chmod(0o600)
    w = Warden(make_config(_config(key_file).replace("REFERENCE", reference)))
    await w.start()  # the right key again: starts, nothing was changed by the refusals
    await w.stop()


async def test_a_flipped_byte_in_a_row_and_an_artifact_is_refused_and_audited(
    make_config, make_client, tmp_path, base_path
):
    warden, client, _versions, _ = await _run_daemon(make_config, make_client, tmp_path, True)
    try:
        from mlwarden.daemon.alerts.outbox_records import outbox_table

        raw = sa.type_coerce(outbox_table.c.notification, sa.Text())
        async with warden.store.begin() as conn:
            row = (await conn.execute(sa.select(outbox_table.c.id, raw))).one()
            text = row[1]
            flipped = text[:-6] + ("A" if text[-6] != "A" else "B") + text[-5:]
            await conn.execute(
                outbox_table.update()
                .where(outbox_table.c.id == row[0])
                .values(notification=sa.literal(flipped, sa.Text()))
            )
        resp = await client.get("/api/notifications")
        body = await resp.json()
        assert resp.status == 500 and body["error"]["code"] == "decryption_failed", body
        assert f"outbox row {row[0]}" in body["error"]["message"]
        # The delivery pass drops that row (named, counted), the others go on.
        warden.alerts.outbox.backoff.clear()  # the failed send's backoff is over
        await warden.alerts.outbox.deliver()
        assert await warden.alerts.outbox.counts() == {"dropped": 1}
        # A flipped byte in an artifact: the model does not load, nothing half-decrypted.
        model_files = [p for p in (base_path / "mlartifacts").rglob("MLmodel")]
        target = model_files[0]
        data = bytearray(target.read_bytes())
        data[-3] ^= 0x10
        target.write_bytes(bytes(data))
        from mlwarden.daemon.core.artifacts import check_file

        with pytest.raises(DecryptionFailed, match=f"artifact {target}"):
            check_file(warden.sealer, target)
        await asyncio.sleep(0.2)
        entries = await warden.audit.entries(limit=20)
        refused = [e for e in entries if e["action"] == "decryption_failed"]
        assert any(str(target) in e["target"] for e in refused), refused
        assert any(f"outbox row {row[0]}" in e["target"] for e in refused), refused
    finally:
        await warden.stop()


def test_the_entry_point_survives_mlwarden_importing_mlflow_first():
    # The daemon imports MLflow from inside core.artifacts; MLflow loads its artifact
    # repository entry points during that import, so the entry point must not need
    # core.artifacts to be complete (it used to: a warning, and no scheme).
    script = (
        "import mlwarden.daemon.core.artifacts\n"
        "from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository\n"
        "print(type(get_artifact_repository('mlwarden-encrypted:///tmp/x')).__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "EncryptedArtifactRepository"
    assert "Failure attempting to register" not in result.stderr, result.stderr[-3000:]
