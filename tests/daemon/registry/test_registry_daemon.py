"""The registry in a real ``mlwarden run`` process: what it acknowledged survives kill -9."""

from __future__ import annotations

from types import SimpleNamespace

from tests.daemon.registry.helpers import log_model_files

CONFIG = '[[models]]\nname = "btc"\n[models.gates]\nmax_mse = 0.05\n'


def test_registry_state_survives_kill_9(daemon_factory):
    from mlflow import MlflowClient

    daemon = daemon_factory(CONFIG).start()
    uri = f"sqlite:///{daemon.base_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("mlwarden").experiment_id
    fake = SimpleNamespace(tracking=SimpleNamespace(client=client, experiment_id=experiment))
    runs = [log_model_files(fake, metrics={"mse": 0.01}) for _ in range(2)]
    for run_id in runs:
        status, body = daemon.call("POST", "/api/models/btc/versions", {"run_id": run_id})
        assert status == 201, body
    for version in ("1.0.0", "1.0.1"):
        status, body = daemon.call("POST", "/api/models/btc/promote", {"version": version})
        assert status == 200, body
    daemon.kill()

    daemon.start()
    status, body = daemon.call("GET", "/api/models/btc")
    assert status == 200, body
    assert (body["production_version"], body["rollback_target"]) == ("1.0.1", "1.0.0")
    assert body["aliases"] == {"champion": "1.0.1"}
    assert client.get_registered_model("btc").aliases == {"champion": 2}
    status, body = daemon.call("POST", "/api/models/btc/rollback", {})
    assert (status, body["version"]) == (200, "1.0.0"), body
    assert daemon.stop() == 0
