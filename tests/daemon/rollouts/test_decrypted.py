"""The gateway's decrypted model copies: private, decrypted once, whole or absent, removed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mlwarden.daemon.core.keys import new_key, write_key_file
from mlwarden.daemon.rollouts.decrypted import DecryptedModels
from mlwarden.daemon.warden import Warden
from mlwarden.errors import DecryptionFailed

from .helpers import MODEL_CONFIG, register_models, send_traffic

# -- the cache alone --------------------------------------------------------------------


def _writer(calls: list[str], fail_after: int | None = None):
    def download(directory: str) -> str:
        calls.append(directory)
        model = Path(directory) / "model"
        model.mkdir()
        for i in range(3):
            if fail_after is not None and i == fail_after:
                raise DecryptionFailed(f"artifact {model}/part{i}", "the tag check failed")
            (model / f"part{i}").write_text(f"plaintext {i}")
        return str(model)

    return download


def test_a_version_is_decrypted_once_into_a_private_directory(tmp_path):
    cache = DecryptedModels(str(tmp_path))
    calls: list[str] = []
    first = cache.path("price", "1.0.0", _writer(calls))
    again = cache.path("price", "1.0.0", _writer(calls))
    assert first == again and len(calls) == 1
    assert sorted(p.name for p in Path(first).iterdir()) == ["part0", "part1", "part2"]
    assert cache.root is not None
    assert stat.S_IMODE(cache.root.stat().st_mode) == 0o700
    assert "price" not in first and "1.0.0" not in first  # names never become paths
    other = cache.path("price", "1.1.0", _writer(calls))
    assert other != first and len(calls) == 2
    assert cache.discard("price", "1.0.0") and not Path(first).exists()
    assert not cache.discard("price", "1.0.0")
    assert Path(other).exists()
    cache.close()
    assert not any(tmp_path.iterdir())


def test_a_failed_decryption_leaves_nothing_behind(tmp_path):
    cache = DecryptedModels(str(tmp_path))
    calls: list[str] = []
    with pytest.raises(DecryptionFailed, match="part1"):
        cache.path("price", "1.0.0", _writer(calls, fail_after=1))
    assert cache.root is not None and list(cache.root.iterdir()) == []  # no partial copy
    assert not cache.cached("price", "1.0.0")
    # The next load decrypts it again, whole.
    path = cache.path("price", "1.0.0", _writer(calls))
    assert len(calls) == 2 and len(list(Path(path).iterdir())) == 3
    cache.close()


# -- in the daemon ----------------------------------------------------------------------


async def test_the_gateway_decrypts_each_version_once_and_forgets_it_when_retired(
    make_config, make_client, tmp_path, monkeypatch
):
    import mlflow.artifacts

    key_file = tmp_path / "keys"
    write_key_file(key_file, {"k1": new_key()})
    config = make_config(MODEL_CONFIG + f'[encryption]\nenabled = true\nkey_file = "{key_file}"\n')
    warden = Warden(config)
    await warden.start()
    downloads: list[str] = []
    real = mlflow.artifacts.download_artifacts

    def counted(*args, **kwargs):
        if ".partial-" in str(kwargs.get("dst_path")):  # the gateway's, not registration's
            downloads.append(kwargs["artifact_uri"])
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", counted)
    gateway = warden.rollouts.gateway
    try:
        v1, v2, _ = await register_models(warden)
        client = await make_client(warden)
        served = await send_traffic(client, 20, "a", seed=1)
        assert len(served) == 20 and len(downloads) == 1
        copy = Path(gateway.decrypted.path("price", v1, lambda d: pytest.fail("decrypted")))
        assert b"python_function" in (copy / "MLmodel").read_bytes()  # whole, in clear
        root = gateway.decrypted.root
        assert root is not None and stat.S_IMODE(root.stat().st_mode) == 0o700
        # Out of memory (an eviction) and back: loaded again from the copy, not decrypted.
        gateway._models.clear()
        assert len(await send_traffic(client, 20, "b", seed=2)) == 20
        assert len(downloads) == 1
        # v2 takes production: v1 is deprecated, leaves the gateway and its copy goes.
        await warden.registry.transition("price", v2, "staging", actor="test")
        await warden.registry.transition("price", v2, "production", actor="test")
        assert not gateway.decrypted.cached("price", v1) and not copy.exists()
        assert f"price@{v1}" not in gateway.loaded
    finally:
        await warden.stop()
    assert not root.exists()  # the daemon stopped: every decrypted copy is gone
