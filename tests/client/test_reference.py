"""Client.upload_reference and ``mlwarden reference``: a model's reference put in force."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pyarrow.feather as feather
import pytest

from mlwarden.cli import main
from mlwarden.client import AsyncClient, Client, ReferenceRefused

from ..daemon.ingest.test_reference_upload import config, frame


@pytest.fixture
async def served(make_warden, make_client, tmp_path):
    from ..daemon.ingest.test_ingest import write_reference

    warden = await make_warden(config(write_reference(tmp_path)))
    await warden.ingest.model_state("m").ready.wait()
    url = str((await make_client(warden)).make_url("")).rstrip("/")
    return warden, url


async def test_upload_a_dataframe_a_table_and_files(served, tmp_path):
    warden, url = served
    client = Client(url)
    try:
        data = frame(300, seed=4)
        feather.write_feather(pa.Table.from_pandas(data.head(200)), tmp_path / "r.feather")
        data.head(100).to_csv(tmp_path / "r.csv", index=False)
        data.head(50).to_parquet(tmp_path / "r.parquet")
        sent = [
            (data, 300),
            (pa.Table.from_pandas(data.head(250)), 250),
            (tmp_path / "r.feather", 200),
            (str(tmp_path / "r.csv"), 100),
            (tmp_path / "r.parquet", 50),
        ]
        for given, rows in sent:
            info = await asyncio.to_thread(client.upload_reference, "m", given)
            assert info["in_force"] == "upload" and info["rows"] == rows
            assert warden.ingest.model_state("m").layout.fingerprint == info["fingerprint"]
            assert info["upload"]["media_type"] == "application/vnd.apache.arrow.stream"
        with pytest.raises(ReferenceRefused) as refused:
            await asyncio.to_thread(client.upload_reference, "m", data.drop(columns=["y"]))
        assert refused.value.status == 400 and "column 'y': missing feature" in str(refused.value)
        assert warden.ingest.model_state("m").reference.rows == 50  # the last good one
        with pytest.raises(ValueError, match=r"expected a \.parquet"):
            client.upload_reference("m", tmp_path / "r.txt")
        info = await asyncio.to_thread(client.remove_reference, "m")
        assert info["in_force"] == "config"
        with pytest.raises(ReferenceRefused) as refused:
            await asyncio.to_thread(client.remove_reference, "m")
        assert refused.value.status == 404
    finally:
        client.close(timeout=1.0)


async def test_async_client_and_cli(served, tmp_path, capsys):
    warden, url = served
    async with AsyncClient(url) as client:
        info = await client.upload_reference("m", frame(120))
        assert info["rows"] == 120
        assert (await client.remove_reference("m"))["in_force"] == "config"
    path = tmp_path / "r.parquet"
    frame(80).to_parquet(path)
    code = await asyncio.to_thread(main, ["reference", "upload", "m", str(path), "--url", url])
    assert code == 0
    assert "in force as the reference of 'm': 80 rows" in capsys.readouterr().out
    assert warden.ingest.model_state("m").uploaded
    frame(80).drop(columns=["x"]).to_parquet(path)
    code = await asyncio.to_thread(main, ["reference", "upload", "m", str(path), "--url", url])
    assert code == 1 and "column 'x': missing feature" in capsys.readouterr().err
    code = await asyncio.to_thread(main, ["reference", "remove", "m", "--url", url])
    assert code == 0 and "in force: config" in capsys.readouterr().out
