"""HTTPS for the API: a test CA, mutual TLS, SIGHUP certificate reload, the listen check."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import signal
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mlwarden.daemon.app import Daemon, check_listen_address
from mlwarden.errors import ConfigError
from tests.helpers import free_port


class CertAuthority:
    """A certificate authority made with ``cryptography``, issuing leaf certificates."""

    def __init__(self, directory: Path, name: str = "mlwarden test CA") -> None:
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / f"{name.replace(' ', '-')}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, server: bool = True) -> tuple[Path, Path, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path = self.dir / f"{name}.crt"
        key_path = self.dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path, cert


def _client_ctx(ca: Path | None, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


async def _get(url: str, ctx: ssl.SSLContext) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ctx) as resp:
        return resp.status, await resp.json()


async def _peer_serial(port: int, ctx: ssl.SSLContext) -> int:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


def _tls_config(cert: Path, key: Path, client_ca: Path | None = None) -> str:
    text = f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    if client_ca:
        text += f'client_ca_file = "{client_ca}"\n'
    return text


async def test_https_with_a_test_ca_and_sighup_reload(make_config, tmp_path):
    ca = CertAuthority(tmp_path)
    cert, key, first = ca.issue("server")
    port = free_port()
    config_path = tmp_path / "mlwarden.toml"
    config = make_config(_tls_config(cert, key), **{"daemon.listen": f"127.0.0.1:{port}"})
    config_path.write_text(_tls_config(cert, key))
    overrides = {"daemon.listen": f"127.0.0.1:{port}", "daemon.base_path": config.daemon.base_path}
    daemon = Daemon(config, config_path=str(config_path), overrides=overrides)
    serving = asyncio.create_task(daemon.serve())
    try:
        for _ in range(200):
            if daemon.runner is not None and daemon.runner.addresses:
                break
            await asyncio.sleep(0.05)
        url = f"https://127.0.0.1:{port}/healthz"
        assert await _get(url, _client_ctx(ca.path)) == (200, {"status": "ok"})
        # A client without the CA refuses the daemon's certificate.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _get(url, _client_ctx(None))
        # TLS 1.1 is refused by the server.
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(str(ca.path))
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
            await _get(url, old)
        # A renewed certificate in place, SIGHUP: new connections get it, no restart.
        assert await _peer_serial(port, _client_ctx(ca.path)) == first.serial_number
        _, _, renewed = ca.issue("server")
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            if await _peer_serial(port, _client_ctx(ca.path)) == renewed.serial_number:
                break
            await asyncio.sleep(0.05)
        assert await _peer_serial(port, _client_ctx(ca.path)) == renewed.serial_number
        assert not serving.done()
        assert await _get(url, _client_ctx(ca.path)) == (200, {"status": "ok"})
    finally:
        daemon.should_exit.set()
        await asyncio.wait_for(serving, 60)


async def test_mutual_tls_refuses_a_client_without_a_certificate(make_config, tmp_path):
    ca = CertAuthority(tmp_path)
    clients = CertAuthority(tmp_path, "client CA")
    cert, key, _ = ca.issue("server")
    good = clients.issue("grafana", server=False)[:2]
    stranger = CertAuthority(tmp_path, "other CA").issue("mallory", server=False)[:2]
    port = free_port()
    config = make_config(
        _tls_config(cert, key, clients.path), **{"daemon.listen": f"127.0.0.1:{port}"}
    )
    daemon = Daemon(config)
    await daemon.startup()
    try:
        url = f"https://127.0.0.1:{port}/healthz"
        assert (await _get(url, _client_ctx(ca.path, good)))[0] == 200
        for cert_pair in (None, stranger):
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
                await _get(url, _client_ctx(ca.path, cert_pair))
    finally:
        await daemon.shutdown()


def test_a_public_address_needs_tls_unless_plaintext_is_allowed(make_config, tmp_path):
    tokens = '[[auth.tokens]]\nname = "a"\nsha256 = "' + "0" * 64 + '"\n'
    with pytest.raises(ConfigError, match=r"\[tls\] is not configured"):
        check_listen_address(make_config(tokens, **{"daemon.listen": "0.0.0.0:9741"}))
    check_listen_address(
        make_config(tokens, **{"daemon.listen": "0.0.0.0:9741", "daemon.allow_plaintext": True})
    )
    cert, key, _ = CertAuthority(tmp_path).issue("server")
    check_listen_address(
        make_config(tokens + _tls_config(cert, key), **{"daemon.listen": "0.0.0.0:9741"})
    )


async def test_a_bad_certificate_pair_is_refused_naming_the_files(make_config, tmp_path):
    ca = CertAuthority(tmp_path)
    cert, _key, _ = ca.issue("server")
    _, other_key, _ = ca.issue("other")
    daemon = Daemon(make_config(_tls_config(cert, other_key)))
    with pytest.raises(ConfigError, match=rf"cannot load {cert} with {other_key}"):
        await daemon.startup()


async def test_the_client_library_verifies_the_daemon_and_presents_its_certificate(
    make_config, tmp_path, monkeypatch
):
    from mlwarden.client import Client

    from .ingest.test_ingest import config as ingest_config
    from .ingest.test_ingest import ready, write_reference

    ca = CertAuthority(tmp_path)
    clients = CertAuthority(tmp_path, "client CA")
    cert, key, _ = ca.issue("server")
    sender_cert, sender_key, _ = clients.issue("serving", server=False)
    port = free_port()
    text = ingest_config(write_reference(tmp_path)) + _tls_config(cert, key, clients.path)
    daemon = Daemon(make_config(text, **{"daemon.listen": f"127.0.0.1:{port}"}))
    await daemon.startup()
    url = f"https://127.0.0.1:{port}"
    row = {"x": 0.5, "y": 0.25, "kind": "a"}
    try:
        await ready(daemon.warden)
        good = Client(url, cafile=str(ca.path), certfile=str(sender_cert), keyfile=str(sender_key))
        assert good.log_predictions(
            "m", [row] * 5, ids=[f"t{i}" for i in range(5)], predictions=[0.1] * 5
        )
        assert await asyncio.to_thread(good.flush, 30)
        assert good.stats()["sent_rows"] == 5, (good.stats(), good.last_error)
        await asyncio.to_thread(good.close)
        # The CA bundle from the environment, as the CLI takes it.
        monkeypatch.setenv("MLWARDEN_CA_BUNDLE", str(ca.path))
        env = Client(url, certfile=str(sender_cert), keyfile=str(sender_key))
        assert env.log_predictions("m", [row], ids=["e1"], predictions=[0.1])
        assert await asyncio.to_thread(env.flush, 30)
        await asyncio.to_thread(env.close)
        assert await daemon.warden.ingest.count_predictions("m") == 6
        # Without the CA the daemon's certificate is refused, and without a client
        # certificate the daemon refuses the sender: nothing arrives, the error says why.
        monkeypatch.delenv("MLWARDEN_CA_BUNDLE")
        for bad, why in (
            (Client(url, certfile=str(sender_cert), keyfile=str(sender_key)), "CERTIFICATE_VERIFY"),
            (Client(url, cafile=str(ca.path)), "connection:"),
        ):
            bad.log_predictions("m", [row], ids=["never"], predictions=[0.1])
            assert not await asyncio.to_thread(bad.flush, 1.5)
            assert why in bad.last_error, bad.last_error
            await asyncio.to_thread(bad.close, 0.1)
        assert await daemon.warden.ingest.count_predictions("m") == 6
    finally:
        await daemon.shutdown()
    with pytest.raises(FileNotFoundError):
        Client(url, cafile=str(tmp_path / "missing.pem"))
