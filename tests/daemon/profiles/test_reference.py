"""References: CSV, Parquet and MLflow artifacts; schema inference; bad references; reuse."""

from __future__ import annotations

import asyncio

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlwarden.daemon.core.config import ModelConfig, MonitoringConfig
from mlwarden.daemon.profiles.layout import Layout
from mlwarden.daemon.profiles.reference import build_reference
from mlwarden.errors import ConfigError, Conflict


def reference_frame(n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "count": rng.integers(0, 5, n),
            "flag": rng.random(n) > 0.5,
            "city": rng.choice(["paris", "oslo"], n),
            "prediction": rng.normal(size=n),
            "label": rng.normal(size=n),
        }
    )


def test_schema_inference_and_quantile_edges():
    frame = reference_frame()
    monitoring = MonitoringConfig(histogram_bins=10, reference_sample_size=500)
    model = ModelConfig(name="m", categorical=("count",))
    reference = build_reference(frame, model, monitoring, "fp")
    layout = reference.layout
    # `count` is numeric but declared categorical; bools and strings are categorical.
    assert layout.numeric == ("x", "prediction")
    assert layout.categorical == ("count", "flag", "city")
    assert layout.features == ("x", "count", "flag", "city")
    assert layout.prediction == "prediction"
    np.testing.assert_allclose(layout.edges[0], np.quantile(frame["x"], np.linspace(0, 1, 11)))
    assert set(layout.categories[2]) == {"paris", "oslo"}
    assert reference.profile.rows == 2000 and len(reference.profile.keys) == 500
    assert reference.target is not None and reference.target.layout.numeric == ("label",)
    # The whole reference is in the histogram (the maximum in the last bin).
    assert reference.profile.hist[0].sum() == 2000
    assert reference.profile.hist[0, 0] == reference.profile.hist[0, -1] == 0


def test_a_classifiers_scores_are_not_inferred_as_features():
    frame = reference_frame().drop(columns=["count", "flag", "city"])
    frame["prediction"] = np.where(frame["x"] > 0, "up", "down")
    frame["probabilities.up"] = 1 / (1 + np.exp(-frame["x"]))
    frame["probabilities.down"] = 1 - frame["probabilities.up"]
    frame["probability"] = frame["probabilities.up"]
    model = ModelConfig(name="m", task="classification")
    layout = build_reference(frame, model, MonitoringConfig(), "fp").layout
    assert layout.features == ("x",)
    # A regression model has no scores: its columns of these names are features.
    model = ModelConfig(name="m")
    frame["prediction"] = frame["x"]
    layout = build_reference(frame, model, MonitoringConfig(), "fp").layout
    assert layout.features == ("x", "probabilities.up", "probabilities.down", "probability")


def test_missing_feature_column_is_a_config_error():
    model = ModelConfig(name="m", features=("x", "nope"))
    with pytest.raises(ConfigError, match="'nope'"):
        build_reference(reference_frame(), model, MonitoringConfig(), "fp")


async def test_csv_reference_and_bad_reference_fallback(make_warden, tmp_path):
    csv = tmp_path / "reference.csv"
    reference_frame().to_csv(csv, index=False)
    (tmp_path / "ref.txt").write_text("x\n1\n")
    warden = await make_warden(
        f'[[models]]\nname = "csv"\nreference = "{csv}"\n'
        f'[[models]]\nname = "gone"\nreference = "{tmp_path / "missing.parquet"}"\n'
        'features = ["x", "city"]\ncategorical = ["city"]\n'
        f'[[models]]\nname = "text"\nreference = "{tmp_path / "ref.txt"}"\n'
    )
    ingest = warden.ingest
    for name in ("csv", "gone", "text"):
        await ingest.model_state(name).ready.wait()
    assert ".parquet, .csv, .arrow or .feather" in ingest.model_state("text").reference_status
    assert ingest.model_state("text").open_schema  # no features configured either
    assert ingest.model_state("csv").reference_status == "ready (built)"
    gone = ingest.model_state("gone")
    assert gone.reference is None and gone.reference_status.startswith("error")
    # The schema falls back to the configured features.
    assert gone.layout.features == ("x", "city") and not gone.open_schema
    assert any("gone" in e["where"] for e in warden.last_errors)
    health = await warden.get_system_health()
    assert health["components"]["ingest"]["models"]["gone"]["reference"].startswith("error")


async def test_mlflow_artifact_reference(make_config, tmp_path, base_path):
    from mlwarden.daemon.warden import Warden

    path = tmp_path / "reference.parquet"
    reference_frame().to_parquet(path)
    tracking_uri = f"sqlite:///{base_path / 'mlflow.db'}"

    def log_reference() -> str:
        client = mlflow.MlflowClient(tracking_uri)
        experiment = client.create_experiment(
            "references", artifact_location=str(tmp_path / "artifacts")
        )
        run = client.create_run(experiment)
        client.log_artifact(run.info.run_id, str(path), artifact_path="data")
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    run_id = await asyncio.to_thread(log_reference)
    uri = f"runs:/{run_id}/data/reference.parquet"
    config = make_config(f'[[models]]\nname = "m"\nreference = "{uri}"\n')
    async with Warden(config) as warden:
        state = warden.ingest.model_state("m")
        await state.ready.wait()
        assert state.reference_status == "ready (built)", state.reference_status
        assert state.layout.numeric == ("x", "count", "prediction")
    async with Warden(config) as warden:  # the artifact is not downloaded again
        state = warden.ingest.model_state("m")
        await state.ready.wait()
        assert state.reference_status == "ready (stored profile)"
        assert state.reference.rows == 2000


async def test_reference_sample_is_kept_in_the_store_not_in_memory(make_config, tmp_path):
    from mlwarden.daemon.profiles.reference import reference_table
    from mlwarden.daemon.warden import Warden

    path = tmp_path / "reference.parquet"
    frame = reference_frame(5000)
    frame.to_parquet(path)
    monitoring = MonitoringConfig(reference_sample_size=1000)
    built = build_reference(frame, ModelConfig(name="m"), monitoring, "fp")
    config = make_config(
        f"[monitoring]\nreference_sample_size = 1000\nmin_window_rows = 100\n"
        f'[[models]]\nname = "m"\nreference = "{path}"\ndrift_methods = ["ks", "psi"]\n'
    )
    for status in ("ready (built)", "ready (stored profile)"):  # built, then after a restart
        async with Warden(config) as warden:
            state = warden.ingest.model_state("m")
            await state.ready.wait()
            assert state.reference_status == status
            held = state.reference.profile
            assert held.sample.shape == (0, 3) and held.keys.size == 0  # x, count, prediction
            assert held.rows == 5000 and held.hist[0].sum() == 5000  # the rest is whole
            whole = (await state.reference.with_sample()).profile
            # The same rows as a build in memory (same seed): nothing lost in the store.
            np.testing.assert_array_equal(whole.sample, built.profile.sample)
            np.testing.assert_array_equal(whole.keys, built.profile.keys)
            assert state.reference.profile.sample.shape == (0, 3)  # still not held
            # A drift check fits the methods on the stored sample: KS sees 1,000 rows.
            await warden.monitor_model_drift("m", frame.iloc[:500])
            report = await warden.monitor_model_drift("m", frame.iloc[:500].assign(x=9.0))
            ks = report["feature_drifts"]["x"]["methods"]["ks"]
            assert report["status"] == "ok" and ks["drifted"], report
    async with Warden(config) as warden:
        state = warden.ingest.model_state("m")
        await state.ready.wait()
        # A stored row that is no longer this reference's is refused, not used.
        t = reference_table
        async with warden.store.begin() as conn:
            await conn.execute(t.update().values(layout=Layout((), ()).to_bytes()))
        with pytest.raises(Conflict, match="no longer"):
            await state.reference.with_sample()
        async with warden.store.begin() as conn:
            await conn.execute(t.delete())
        with pytest.raises(Conflict, match="no longer"):
            await state.reference.with_sample()


def test_reference_profiled_in_chunks_equals_one_piece(monkeypatch):
    import mlwarden.daemon.profiles.reference as reference_module

    frame = reference_frame(5000)
    frame.loc[::7, "x"] = np.nan
    frame["city"] = frame["city"].where(frame.index % 11 > 0, None)
    monitoring = MonitoringConfig(reference_sample_size=800)
    whole = build_reference(frame, ModelConfig(name="m"), monitoring, "fp").profile
    monkeypatch.setattr(reference_module, "PROFILE_CHUNK_ROWS", 1000)
    chunked = build_reference(frame, ModelConfig(name="m"), monitoring, "fp").profile
    for name in ("count", "nulls", "nans", "infs", "hist", "cat_counts", "cat_nulls"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name), name)
    np.testing.assert_array_equal(chunked.minimum, whole.minimum)
    np.testing.assert_allclose(chunked.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(chunked.m2, whole.m2, rtol=1e-12)
    assert chunked.rows == whole.rows == 5000
    # The same keys are drawn, so the bottom-k sample is the same rows.
    order, expected = np.argsort(chunked.keys), np.argsort(whole.keys)
    np.testing.assert_array_equal(chunked.keys[order], whole.keys[expected])
    np.testing.assert_array_equal(chunked.sample[order], whole.sample[expected])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_only_the_configured_columns_are_read(tmp_path, suffix):
    from mlwarden.daemon.profiles.reference import load_frame, read_reference

    path = tmp_path / f"reference{suffix}"
    frame = reference_frame().assign(unused=1.0)
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    read = load_frame(str(path), columns=["x", "city", "prediction", "label", "absent"])
    assert list(read.columns) == ["x", "city", "prediction", "label"]
    np.testing.assert_allclose(read["x"], frame["x"])
    assert list(load_frame(str(path)).columns) == list(frame.columns)
    model = ModelConfig(name="m", reference=str(path), features=("x", "city"))
    reference = read_reference(model, MonitoringConfig(), "", "fp")
    assert reference.layout.numeric == ("x", "prediction")
    assert reference.layout.categorical == ("city",)
    assert reference.target is not None  # the label column was read too
    missing = ModelConfig(name="m", reference=str(path), features=("x", "nope"))
    with pytest.raises(ConfigError, match="'nope'"):
        read_reference(missing, MonitoringConfig(), "", "fp")
