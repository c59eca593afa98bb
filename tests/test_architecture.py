"""The house's rules, held by tools: import layers (lint-imports), types (mypy), HTTP.

docs/architecture.md describes the layers; pyproject.toml holds the import-linter
contracts and the mypy settings. These run as tests so that the README's test command
(and .ci/run) fails on a wrong import or a type error like on any other defect.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mlwarden"
DAEMON = SRC / "daemon"


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' brings it")
    return path


def test_import_layers_hold():
    result = subprocess.run(
        [_tool("lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_mypy_finds_no_error_in_src():
    result = subprocess.run(
        [_tool("mypy"), "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_only_the_api_and_the_app_import_aiohttp():
    allowed = {DAEMON / "app.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for path in _python_files(DAEMON)
        if path not in allowed
        and DAEMON / "api" not in path.parents
        and re.search(r"^\s*(from|import) aiohttp", path.read_text(), re.M)
    ]
    assert offenders == [], f"services know no HTTP; move the routes to daemon/api/: {offenders}"


def test_no_service_is_looked_up_by_name_outside_the_composition_root():
    lookup = re.compile(r"services\.get\(|\.service\(\"")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _python_files(SRC)
        if path != DAEMON / "warden.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if lookup.search(line)
    ]
    assert offenders == [], f"pass the service in, typed by a Protocol: {offenders}"
