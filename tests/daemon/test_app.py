"""The daemon's lifecycle against a real ``mlwarden run`` process and a real notify socket."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from mlwarden.daemon.api.auth import mint_token
from mlwarden.daemon.app import check_listen_address
from mlwarden.daemon.core.config_loader import load_config
from mlwarden.daemon.core.systemd import SystemdNotifier
from mlwarden.errors import ConfigError

from ..helpers import free_port

SHUTDOWN_TIMEOUT = 3.0


class NotifySocket:
    """A bound AF_UNIX datagram socket collecting sd_notify messages, as systemd does."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"mlwarden-test-{uuid.uuid4().hex}"
            self.sock.bind(b"\0" + name.encode())
            self.env_value = "@" + name
        else:
            # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
            self._dir = tempfile.mkdtemp(prefix="mlw-", dir="/tmp")
            path = os.path.join(self._dir, "notify.sock")
            self.sock.bind(path)
            self.env_value = path
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 60, after: int = 0) -> int:
        """Index of the first message from ``after`` on holding ``line``; fails on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.messages)):
                if line in self.messages[i].splitlines():
                    return i
            if time.monotonic() > deadline:
                raise AssertionError(f"no {line!r} within {timeout}s; got {self.messages}")
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.sock.recv(4096).decode())

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.sock.recv(4096).decode())

    def close(self) -> None:
        self.sock.close()
        if not self.env_value.startswith("@"):
            os.unlink(self.env_value)
            os.rmdir(self._dir)


@pytest.fixture
def notify_socket():
    made: list[NotifySocket] = []

    def make(abstract: bool = False) -> NotifySocket:
        made.append(NotifySocket(abstract))
        return made[-1]

    yield make
    for sock in made:
        sock.close()


def wait_for_log(daemon, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = daemon.log()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the log within {timeout}s:\n{daemon.log()}")


def test_ready_watchdog_reload_and_stopping_on_a_path_socket(daemon_factory, notify_socket):
    sock = notify_socket()
    daemon = daemon_factory(env={"NOTIFY_SOCKET": sock.env_value, "WATCHDOG_USEC": "400000"}).start(
        wait=False
    )
    ready = sock.wait_for("READY=1")
    # READY=1 only once the API listens.
    assert daemon.call("GET", "/healthz")[0] == 200
    assert any(
        line.startswith("STATUS=serving on 127.0.0.1:")
        for line in sock.messages[ready].splitlines()
    )
    # WATCHDOG_USEC=400ms -> a ping every 200ms while the loop is healthy.
    sock.drain(1.5)
    pings = sum("WATCHDOG=1" in m.splitlines() for m in sock.messages[ready:])
    assert 4 <= pings <= 12, sock.messages

    mark = len(sock.messages)
    daemon.signal(signal.SIGHUP)
    reloading = sock.wait_for("RELOADING=1", after=mark)
    assert any(line.startswith("MONOTONIC_USEC=") for line in sock.messages[reloading].splitlines())
    sock.wait_for("READY=1", after=reloading + 1)

    mark = len(sock.messages)
    daemon.signal(signal.SIGTERM)
    sock.wait_for("STOPPING=1", after=mark)
    assert daemon.wait(30) == 0


def test_abstract_socket_reload_changes_tokens_and_bad_reload_keeps_running(
    daemon_factory, notify_socket
):
    sock = notify_socket(abstract=True)
    old_token, old_hash = mint_token()
    new_token, new_hash = mint_token()
    base = '[[auth.tokens]]\nname = "{name}"\nsha256 = "{digest}"\nrole = "viewer"\n'
    daemon = daemon_factory(
        base.format(name="old", digest=old_hash), env={"NOTIFY_SOCKET": sock.env_value}
    ).start(wait=False)
    sock.wait_for("READY=1")
    assert daemon.call("GET", "/api/system/health", token=old_token)[0] == 200
    assert daemon.call("GET", "/api/system/health", token=new_token)[0] == 401

    # A valid edit: the new token replaces the old one.
    daemon.write_config(base.format(name="new", digest=new_hash))
    mark = len(sock.messages)
    daemon.signal(signal.SIGHUP)
    reloading = sock.wait_for("RELOADING=1", after=mark)
    sock.wait_for("READY=1", after=reloading + 1)
    assert daemon.call("GET", "/api/system/health", token=new_token)[0] == 200
    assert daemon.call("GET", "/api/system/health", token=old_token)[0] == 401

    # A broken edit: refused, the log names file and key, the running config stays.
    daemon.write_config(
        base.format(name="new", digest=new_hash) + '[monitoring]\ndrift_threshold = "high"\n'
    )
    mark = len(sock.messages)
    daemon.signal(signal.SIGHUP)
    reloading = sock.wait_for("RELOADING=1", after=mark)
    ready = sock.wait_for("READY=1", after=reloading + 1)
    assert "STATUS=reload refused; running the previous configuration" in sock.messages[ready]
    log = wait_for_log(daemon, "key 'monitoring.drift_threshold'")
    assert f"reload refused, keeping the running configuration: {daemon.config_path}: " in log
    assert daemon.proc.poll() is None
    assert daemon.call("GET", "/healthz")[0] == 200
    assert daemon.call("GET", "/api/system/health", token=new_token)[0] == 200

    mark = len(sock.messages)
    daemon.signal(signal.SIGTERM)
    sock.wait_for("STOPPING=1", after=mark)
    assert daemon.wait(30) == 0


def _start_request(port: int, token: str, body: bytes, sent: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST /api/models/m/labels HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    conn.sendall(head + body[:sent])
    return conn


def test_sigterm_drains_in_flight_requests_and_exits_0_within_the_bound(
    daemon_factory, notify_socket
):
    sock = notify_socket()
    token, digest = mint_token()
    daemon = daemon_factory(
        f"[daemon]\nshutdown_timeout_seconds = {SHUTDOWN_TIMEOUT}\n"
        f'[[auth.tokens]]\nname = "op"\nsha256 = "{digest}"\nrole = "operator"\n'
        '[[models]]\nname = "m"\n',
        env={"NOTIFY_SOCKET": sock.env_value},
    ).start(wait=False)
    sock.wait_for("READY=1")
    body = b'{"labels": [{"id": "' + b"x" * 150 + b'", "label": 1.0}]}'
    trickling = _start_request(daemon.port, token, body, 10)
    stalled = _start_request(daemon.port, token, body, 10)
    time.sleep(0.5)  # both handlers are now waiting for their bodies

    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    sock.wait_for("STOPPING=1")
    # New connections are refused while the in-flight requests drain.
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", daemon.port), timeout=1).close()
        except (ConnectionRefusedError, ConnectionResetError):
            # Refused, or reset by a listening socket closing under the attempt.
            break
        time.sleep(0.05)
    else:
        pytest.fail("daemon still accepts connections after SIGTERM")
    for i in range(10, len(body), 40):
        trickling.sendall(body[i : i + 40])
        time.sleep(0.1)
    response = trickling.recv(65536).decode()
    assert response.startswith("HTTP/1.1 201"), response
    assert '"unmatched": 1' in response

    # The stalled request is cut off after the graceful timeout; the exit is clean.
    code = daemon.wait(SHUTDOWN_TIMEOUT + 15)
    elapsed = time.monotonic() - started
    assert code == 0, daemon.log()
    assert elapsed < SHUTDOWN_TIMEOUT + 10, elapsed
    stalled.settimeout(5)
    assert stalled.recv(65536) == b""  # cut off: closed without an answer
    trickling.close()
    stalled.close()
    assert "stopped" in daemon.log()


def test_second_sigterm_cuts_the_drain_short(daemon_factory, notify_socket):
    sock = notify_socket()
    token, digest = mint_token()
    daemon = daemon_factory(
        "[daemon]\nshutdown_timeout_seconds = 60\n"
        f'[[auth.tokens]]\nname = "op"\nsha256 = "{digest}"\nrole = "operator"\n'
        '[[models]]\nname = "m"\n',
        env={"NOTIFY_SOCKET": sock.env_value},
    ).start(wait=False)
    sock.wait_for("READY=1")
    stalled = _start_request(daemon.port, token, b'{"labels": [{"id": "never"}]}', 5)
    time.sleep(0.5)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    sock.wait_for("STOPPING=1")
    wait_for_log(daemon, "waiting up to 60.0s for 1 in-flight requests")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    assert time.monotonic() - started < 30  # not the 60 s drain
    assert "not waiting for in-flight requests" in daemon.log()
    stalled.close()


def test_refuses_non_loopback_listen_without_tokens(tmp_path):
    config = tmp_path / "open.toml"
    config.write_text(f'[daemon]\nbase_path = "{tmp_path / "state"}"\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlwarden",
            "run",
            "--config",
            str(config),
            "--listen",
            f"0.0.0.0:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLWARDEN_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert result.returncode == 2
    assert "key 'daemon.listen': '0.0.0.0:" in result.stderr
    assert "no [[auth.tokens]] are configured" in result.stderr
    assert not (tmp_path / "state").exists()


def test_listen_check_allows_loopback_or_tokens(tmp_path):
    check_listen_address(load_config(env={}, overrides={"daemon.listen": "[::1]:9741"}))
    check_listen_address(load_config(env={}, overrides={"daemon.listen": "localhost:9741"}))
    with pytest.raises(ConfigError, match=r"daemon\.listen"):
        check_listen_address(load_config(env={}, overrides={"daemon.listen": "10.0.0.5:9741"}))
    _, digest = mint_token()
    path = tmp_path / "tokens.toml"
    path.write_text(
        f'[daemon]\nlisten = "0.0.0.0:9741"\nallow_plaintext = true\n'
        f'[[auth.tokens]]\nname = "a"\nsha256 = "{digest}"\n'
    )
    check_listen_address(load_config(path, env={}))  # tokens, and TLS by a proxy in front


def test_notifier_without_socket_is_a_no_op_and_parses_watchdog():
    assert SystemdNotifier({}).ready() is False
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000"})
    assert notifier.address == b"\0x"
    assert notifier.watchdog_interval == 1.5
    other_pid = SystemdNotifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_interval is None
