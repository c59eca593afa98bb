"""systemd/mlwarden.service: verify is silent, the security exposure holds, MDWE is safe.

``systemd-analyze verify`` only warns on unknown keys and exits 0, so any output at all
fails the check. It also needs the ExecStart binary to exist, so the unit is verified
as a copy whose /opt/mlwarden/bin/mlwarden is the installed ``mlwarden``.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import free_port, http, require_binary

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "mlwarden.service"
#: `systemd-analyze security --offline=yes` measured 1.2 ("OK") on systemd 252 for this
#: unit; the test holds it at or below this ceiling (lower is safer, 10 is worst).
MAX_EXPOSURE = 1.5


def installed_copy(tmp_path: Path, text: str | None = None) -> Path:
    binary = shutil.which("mlwarden") or pytest.fail("the mlwarden console script is missing")
    text = UNIT.read_text() if text is None else text
    copy = tmp_path / "mlwarden.service"
    copy.write_text(text.replace("/opt/mlwarden/bin/mlwarden", binary))
    return copy


def verify(analyze: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120
    )


def test_unit_declares_the_service_contract():
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "StateDirectory=mlwarden",
        "Environment=MLOPS_BASE_PATH=/var/lib/mlwarden",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
    ):
        assert line in text.splitlines(), line
    assert re.search(r"^WatchdogSec=\d+", text, re.M)
    # The key ring as a credential, named as [encryption] credential's default.
    assert "#LoadCredential=mlwarden-keys:/etc/mlwarden/keys" in text.splitlines()


def test_the_credential_line_verifies_when_enabled(tmp_path):
    """Uncommented (with a key file in place), the unit still passes systemd-analyze."""
    keys = tmp_path / "keys"
    keys.write_text("k1:" + "A" * 43 + "=\n")
    keys.chmod(0o600)
    analyze = require_binary("systemd-analyze")
    text = UNIT.read_text().replace(
        "#LoadCredential=mlwarden-keys:/etc/mlwarden/keys", f"LoadCredential=mlwarden-keys:{keys}"
    )
    result = verify(analyze, installed_copy(tmp_path, text))
    assert result.returncode == 0 and "LoadCredential" not in result.stderr, result.stderr


def test_systemd_analyze_verify_is_silent(tmp_path):
    analyze = require_binary("systemd-analyze")
    result = verify(analyze, installed_copy(tmp_path))
    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == "", result.stdout + result.stderr


def test_the_verify_check_catches_an_unknown_key(tmp_path):
    analyze = require_binary("systemd-analyze")
    text = UNIT.read_text().replace("[Service]\n", "[Service]\nWatchdogSecs=30\n")
    result = verify(analyze, installed_copy(tmp_path, text))
    assert "WatchdogSecs" in result.stdout + result.stderr


def test_security_exposure_stays_low(tmp_path):
    analyze = require_binary("systemd-analyze")
    result = subprocess.run(
        [
            analyze,
            "security",
            "--offline=yes",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            str(installed_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for mlwarden\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout


def _mdwe_available() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(66, 0, 0, 0, 0) >= 0  # PR_GET_MDWE, Linux >= 6.3


MDWE_EXEC = (
    "import ctypes, os, sys\n"
    "assert ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) == 0  # PR_SET_MDWE, REFUSE_EXEC_GAIN\n"
    "os.execv(sys.executable, [sys.executable] + sys.argv[1:])\n"
)


def test_daemon_and_numeric_stack_run_without_write_execute_memory(tmp_path):
    """MemoryDenyWriteExecute=yes is safe: the same restriction, set with PR_SET_MDWE."""
    if not _mdwe_available():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3)")
    workload = (
        "import mmap, numpy as np, scipy.stats as st, pandas as pd, ctypes\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "    raise SystemExit('W+X memory was allowed: MDWE is not in force')\n"
        "except PermissionError:\n"
        "    pass\n"
        "x = np.random.default_rng(0).normal(size=(500, 3))\n"
        "st.ks_2samp(x[:, 0], x[:, 1]); pd.DataFrame(x).describe()\n"
        "LogisticRegression().fit(x, x[:, 0] > 0)\n"
        "assert ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda v: v + 1)(1) == 2\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", MDWE_EXEC, "-c", workload],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr

    port = free_port()
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", MDWE_EXEC, "-m", "mlwarden", "run", "--listen", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLOPS_BASE_PATH": str(tmp_path / "state")},
    )
    try:
        deadline = time.monotonic() + 120
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _ = http("GET", f"http://127.0.0.1:{port}/readyz", timeout=5)
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, (tmp_path / "daemon.log").read_text()
        assert http("GET", f"http://127.0.0.1:{port}/metrics")[0] == 200
        assert http("GET", f"http://127.0.0.1:{port}/api/system/health")[0] == 200
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
        log.close()
