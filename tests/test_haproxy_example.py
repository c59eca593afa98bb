"""examples/haproxy.cfg is valid, and in front of two real daemons it spreads requests
and keeps answering when one of them is killed (docs/operations.md, "Several daemons")."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .helpers import free_port, http, require_binary, wait_until

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "haproxy.cfg"


def test_the_example_is_valid():
    haproxy = require_binary("haproxy")
    done = subprocess.run(
        [haproxy, "-c", "-f", str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def pointed_at(ports: list[int], listen: int) -> str:
    """The example with its servers on loopback ports and fast health checks."""
    text = EXAMPLE.read_text()
    text = text.replace("bind 127.0.0.1:9740", f"bind 127.0.0.1:{listen}")
    text = re.sub(r"inter 2s", "inter 200ms", text)
    text = re.sub(r"^\s*server .*\n", "", text, flags=re.M)
    servers = "".join(f"    server d{i} 127.0.0.1:{p} check\n" for i, p in enumerate(ports))
    return text.rstrip("\n") + "\n" + servers


def up(url: str) -> bool:
    try:
        return http("GET", url + "/readyz")[0] == 200
    except OSError:
        return False


def answering(url: str) -> str:
    status, body = http("GET", url + "/api/system/cluster")
    assert status == 200, body
    return body["instance"]


def test_two_daemons_behind_it_share_requests_and_survive_a_kill(daemon_factory, tmp_path):
    haproxy = require_binary("haproxy")
    daemons = [daemon_factory(name=f"d{i}").start() for i in range(2)]
    listen = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(pointed_at([d.port for d in daemons], listen))
    proxy = subprocess.Popen(
        [haproxy, "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{listen}"
    try:
        wait_until(lambda: up(url), 30, "haproxy listening")
        # Round robin: both daemons answer (each names itself).
        assert len({answering(url) for _ in range(6)}) == 2
        daemons[0].kill()
        # Every request is still answered, by the other one: a refused connection is
        # retried there, and the health check soon takes the dead one out.
        assert {answering(url) for _ in range(10)} == {answering(daemons[1].url)}
    finally:
        proxy.terminate()
        out, _ = proxy.communicate(timeout=10)
    assert proxy.returncode in (0, 143, -15), out
