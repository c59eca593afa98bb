"""`mlwarden demo` against an HTTPS daemon: a CA bundle by flag or MLWARDEN_CA_BUNDLE."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlwarden.cli import build_parser
from mlwarden.demo.run import run_demo
from mlwarden.errors import ConfigError
from tests.daemon.test_tls import CertAuthority
from tests.helpers import free_port


def _demo(base, cert, key, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    port = free_port()
    command = [
        sys.executable, "-m", "mlwarden", "demo", "--listen", f"127.0.0.1:{port}",
        "--base-path", str(base), "--duration", "15", "--shift-after", "600",
        "--tls-cert", str(cert), "--tls-key", str(key), *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_the_demo_drives_an_https_daemon_with_the_ca_bundle(tmp_path):
    ca = CertAuthority(tmp_path)
    cert, key, _ = ca.issue("server")
    env = {k: v for k, v in os.environ.items() if k != "MLWARDEN_CA_BUNDLE"}
    # The bundle from the environment, as mlwarden.client takes it.
    done = _demo(tmp_path / "a", cert, key, env={**env, "MLWARDEN_CA_BUNDLE": str(ca.path)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "https://127.0.0.1" in done.stdout, done.stdout
    assert "in production, serving through the gateway" in done.stdout, done.stdout + done.stderr
    assert "certificate verify failed" not in done.stderr
    # Without it the driver refuses the daemon's certificate and says so.
    refused = _demo(tmp_path / "b", cert, key, env=env)
    assert "certificate verify failed" in refused.stderr.lower(), refused.stderr[-3000:]
    assert "in production" not in refused.stdout


def test_the_demo_takes_the_ca_bundle_by_flag_or_environment(monkeypatch):
    monkeypatch.delenv("MLWARDEN_CA_BUNDLE", raising=False)
    args = build_parser().parse_args(
        ["demo", "--cacert", "ca.pem", "--tls-cert", "c", "--tls-key", "k"]
    )
    assert (args.cacert, args.tls_cert, args.tls_key) == ("ca.pem", "c", "k")
    monkeypatch.setenv("MLWARDEN_CA_BUNDLE", "/etc/ca.pem")
    assert build_parser().parse_args(["demo"]).cacert == "/etc/ca.pem"


def test_a_certificate_without_its_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="both --tls-cert and --tls-key"):
        run_demo(str(tmp_path), "127.0.0.1:0", tls_cert="server.crt")
