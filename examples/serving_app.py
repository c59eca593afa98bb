"""A small serving app that reports to mlwarden with mlwarden.client (two added lines).

    python examples/serving_app.py --model-uri models:/my-model/1 --mlwarden http://127.0.0.1:9741
    curl -X POST localhost:8080/predict -d '{"id": "r1", "features": {"x": 1.0, "y": 2.0}}'
    curl -X POST localhost:8080/label -d '{"id": "r1", "label": 3.1}'

Without ``--model-uri`` it serves a stand-in linear model (so it runs with nothing
else installed). The daemon must watch a model named ``--name`` (default ``my-model``).
"""

from __future__ import annotations

import argparse

import pandas as pd
from aiohttp import web

import mlwarden.client


def load_model(uri: str | None):
    if uri:
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(uri)
    return lambda frame: frame.select_dtypes("number").sum(axis=1).to_numpy()  # a stand-in


def make_app(model, client: mlwarden.client.Client, name: str) -> web.Application:
    monitored = mlwarden.client.monitor(model, client, name)  # line 2: monitor the model

    async def predict(request: web.Request) -> web.Response:
        body = await request.json()
        frame = pd.DataFrame([body["features"]])
        prediction = monitored.predict(frame, ids=[body["id"]])  # logged in the background
        return web.json_response({"id": body["id"], "prediction": float(prediction[0])})

    async def label(request: web.Request) -> web.Response:
        body = await request.json()
        client.log_labels(name, [body["id"]], [body["label"]])
        return web.json_response({"ok": True})

    async def close_client(app: web.Application) -> None:
        client.close()  # flushes what is buffered

    app = web.Application()
    app.router.add_post("/predict", predict)
    app.router.add_post("/label", label)
    app.on_cleanup.append(close_client)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default=None)
    parser.add_argument("--name", default="my-model")
    parser.add_argument("--mlwarden", default="http://127.0.0.1:9741")
    parser.add_argument("--token", default=None)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    client = mlwarden.client.Client(args.mlwarden, token=args.token)  # line 1: the client
    web.run_app(make_app(load_model(args.model_uri), client, args.name), port=args.port)


if __name__ == "__main__":
    main()
