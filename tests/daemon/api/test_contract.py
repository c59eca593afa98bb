"""The typed API contract: bodies and queries checked against their Structs, the OpenAPI
document built from them, JSON depth refused before parsing, HEAD, 405 Allow, and the
request metric recording the status the client got."""

from __future__ import annotations

import msgspec
import pytest

from mlwarden.daemon.api.http import ROUTES, Route, json_response
from mlwarden.errors import InvalidInput
from tests.daemon.api.test_auth import headers_for, tokens_toml

#: daemon/ingest/decode.py's MAX_JSON_DEPTH (spelt out: these tests ran on the code before).
MAX_JSON_DEPTH = 64

MODELS = (
    '[[models]]\nname = "cls"\ntask = "classification"\nfeatures = ["x", "kind"]\n'
    'categorical = ["kind"]\n'
)


@pytest.fixture
async def client(make_warden, make_client):
    warden = await make_warden(MODELS + "[monitoring]\nmax_batch_records = 3\n")
    return await make_client(warden)


async def error_of(resp, status: int) -> dict:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"}
    return body["error"]


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


# -- PUT /api/models/{name}/traffic: every fuzzed body was a 500 or a wrong 404 ----------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "weights: required"),
        ({"weights": None}, "weights: expected object, got null"),
        ({"weights": 5}, "weights: expected object, got int"),
        ({"weights": [[1]]}, "weights: expected object, got array"),
        ({"reason": "x"}, "weights: required"),
        ({"weights": "x"}, "weights: expected object, got str"),
        ({"weights": {"1.0.0": 1}, "reason": 3}, "reason: expected str, got int"),
        ({"weights": {"1.0.0": 1}, "why": "x"}, "unknown field 'why' (expected: weights, reason)"),
        ({"weights": {"1.0.0": "x"}}, "weight of version '1.0.0' must be a number in [0, 1]"),
        ({"weights": {}}, "expected a non-empty object"),
    ],
)
async def test_bad_traffic_bodies_are_400_naming_the_field(client, body, words):
    for model in ("cls", "nosuch"):  # an unknown model too: the body is checked first
        resp = await client.put(f"/api/models/{model}/traffic", json=body)
        error = await error_of(resp, 400)
        assert words in error["message"]


async def test_traffic_for_an_unknown_model_is_404(client):
    resp = await client.put("/api/models/nosuch/traffic", json={"weights": {"1.0.0": 1.0}})
    error = await error_of(resp, 404)
    assert "nosuch" in error["message"]


# -- JSON depth ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "text"),
    [
        ("PUT", "/api/models/cls/traffic", '{"weights": ' + nested(1000) + "}"),
        ("POST", "/api/system/cleanup", '{"model": ' + nested(1000) + "}"),
        (
            "POST",
            "/api/models/cls/predictions",
            '{"records": [{"id": 1, "features": {"x": ' + nested(1000) + ', "kind": "a"}}]}',
        ),
        (
            "POST",
            "/api/models/cls/predictions",
            '{"columns": {"id": [1], "features": {"x": [' + nested(1000) + '], "kind": ["a"]}}}',
        ),
        ("POST", "/api/models/cls/labels", '{"labels": [{"id": 1, "label": ' + nested(900) + "}]}"),
        ("POST", "/api/silences", '{"matchers": ' + nested(100_000) + "}"),
        ("POST", "/api/experiments", nested(MAX_JSON_DEPTH + 1)),
    ],
    ids=["weights", "cleanup", "record-feature", "column-feature", "label", "silence", "top"],
)
async def test_deep_json_is_a_400_before_parsing(client, method, path, text):
    resp = await client.request(
        method, path, data=text.encode(), headers={"Content-Type": "application/json"}
    )
    error = await error_of(resp, 400)
    assert error["code"] == "too_deep"
    assert f"deeper than {MAX_JSON_DEPTH} levels" in error["message"]


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        (nested(MAX_JSON_DEPTH), False),
        (nested(MAX_JSON_DEPTH + 1), True),
        ('{"a": "' + "[" * 500 + '"}', False),  # brackets in a string do not count
        ('{"a": "\\"' + "[" * 500 + '"}', False),  # nor after an escaped quote
        ('{"a\\"[[": ' + nested(MAX_JSON_DEPTH + 1) + "}", True),
        ('{"a": "' + "]" * 500 + '", "b": ' + nested(MAX_JSON_DEPTH + 1) + "}", True),
        ("[" + ", ".join(["{}"] * 5000) + "]", False),  # many brackets, shallow
    ],
    ids=["limit", "limit+1", "in-string", "escaped-quote", "key", "close-in-string", "wide"],
)
def test_depth_is_counted_outside_strings(text, deep):
    from mlwarden.daemon.ingest.decode import MAX_JSON_DEPTH as limit
    from mlwarden.daemon.ingest.decode import check_json_depth

    assert limit == MAX_JSON_DEPTH
    if deep:
        with pytest.raises(InvalidInput, match="deeper than"):
            check_json_depth(text.encode())
    else:
        check_json_depth(text.encode())


# -- labels, batch size, HEAD, 405 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"labels": [{"id": "a", "label": "x", "weight": 2}]}, "labels[0]: unknown field 'weight'"),
        ({"labels": [{"id": "a", "label": "x"}], "model": "cls"}, "unknown field 'model'"),
    ],
)
async def test_labels_refuse_unknown_fields_like_predictions(client, body, words):
    error = await error_of(await client.post("/api/models/cls/labels", json=body), 400)
    assert error["code"] == "unknown_field"
    assert words in error["message"]


async def test_batch_too_large_names_the_real_config_key(client):
    records = [{"id": i, "features": {"x": 1.0, "kind": "a"}, "prediction": "a"} for i in range(4)]
    resp = await client.post("/api/models/cls/predictions", json={"records": records})
    error = await error_of(resp, 413)
    assert "monitoring.max_batch_records" in error["message"]
    labels = [{"id": i, "label": "a"} for i in range(4)]
    resp = await client.post("/api/models/cls/labels", json={"labels": labels})
    assert "monitoring.max_batch_records" in (await error_of(resp, 413))["message"]


async def test_head_is_answered_like_get_without_a_body(client):
    get = await client.get("/metrics")
    head = await client.head("/metrics")
    assert head.status == get.status == 200
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert await head.read() == b""
    assert (await client.head("/api/models")).status == 200


async def test_head_needs_the_role_of_get(make_warden, make_client):
    client = await make_client(await make_warden(tokens_toml()))
    assert (await client.head("/api/audit")).status == 401
    assert (await client.head("/api/audit", headers=headers_for("viewer"))).status == 403
    assert (await client.head("/api/audit", headers=headers_for("admin"))).status == 200


async def test_a_405_says_which_methods_are_allowed(client):
    resp = await client.post("/healthz", json={})
    assert (await error_of(resp, 405))["code"] == "method_not_allowed"
    assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}
    resp = await client.delete("/api/models/cls/traffic")
    await error_of(resp, 405)
    assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "PUT"}


# -- the request metric --------------------------------------------------------------------


async def test_the_request_metric_records_the_status_the_client_got(make_warden, make_client):
    warden = await make_warden(tokens_toml() + MODELS)
    client = await make_client(warden)
    viewer, admin = headers_for("viewer"), headers_for("admin")
    calls = [
        ("GET", "/api/audit", {}, 401),
        ("GET", "/api/audit", viewer, 403),
        ("GET", "/api/alerts?limit=0", viewer, 400),
        ("GET", "/api/models/nosuch", viewer, 404),
        ("PUT", "/api/models/cls/traffic", admin, 400),
        ("GET", "/api/nope", {}, 404),
        ("GET", "/api/audit", admin, 200),
    ]
    for method, path, headers, status in calls:
        resp = await client.request(method, path, headers=headers, json={"weights": 1})
        assert resp.status == status, (path, await resp.text())

    def count(method: str, template: str, status: str) -> float:
        value = warden.metrics.registry.get_sample_value(
            "mlwarden_http_request_duration_seconds_count",
            {"method": method, "route": template, "status": status},
        )
        return value or 0.0

    assert count("GET", "/api/audit", "401") == 1
    assert count("GET", "/api/audit", "403") == 1
    assert count("GET", "/api/audit", "200") == 1
    assert count("GET", "/api/alerts", "400") == 1
    assert count("GET", "/api/models/{name}", "404") == 1
    assert count("PUT", "/api/models/{name}/traffic", "400") == 1
    total_500 = sum(
        s.value
        for metric in warden.metrics.registry.collect()
        for s in metric.samples
        if s.name == "mlwarden_http_request_duration_seconds_count" and s.labels["status"] == "500"
    )
    assert total_500 == 0


# -- the OpenAPI document --------------------------------------------------------------------


async def test_openapi_has_real_schemas_and_query_parameters(client):
    doc = await (await client.get("/api/openapi.json")).json()
    components = doc["components"]["schemas"]
    put = doc["paths"]["/api/models/{name}/traffic"]["put"]
    ref = put["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = components[ref.rsplit("/", 1)[1]]
    assert body["required"] == ["weights"] and body["additionalProperties"] is False
    assert body["properties"]["weights"]["additionalProperties"]["maximum"] == 1
    assert put["requestBody"]["required"] is True
    alerts = doc["paths"]["/api/alerts"]["get"]
    params = {p["name"]: p for p in alerts["parameters"]}
    assert set(params["state"]["schema"]["enum"]) == {"firing", "resolved", "all"}
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000,
                                         "default": 100}  # fmt: skip
    assert params["state"]["in"] == "query" and params["state"]["required"] is False
    compare = {p["name"]: p for p in doc["paths"]["/api/models/compare"]["get"]["parameters"]}
    assert compare["a"]["required"] is True
    created = doc["paths"]["/api/silences"]["post"]["responses"]
    assert set(created) == {"201", "default"} and "links" in created["201"]
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


async def test_a_declared_contract_is_what_the_handler_reads(make_warden, make_client):
    from mlwarden.daemon.api.contract import Body, Query, Reply, body_of, query_of

    class EchoBody(Body):
        n: int
        tag: str = "t"

    class EchoQuery(Query):
        times: int = 1

    class Echo(Reply):
        out: list[int]

    async def echo(request):
        body, query = body_of(request, EchoBody), query_of(request, EchoQuery)
        return json_response({"out": [body.n] * query.times})

    route = Route(
        "POST", "/api/echo", echo, "operator", "Echo", body=EchoBody, query=EchoQuery,
        responses={200: Echo},
    )  # fmt: skip
    client = await make_client(await make_warden(), extra_routes=[route])
    resp = await client.post("/api/echo?times=3", json={"n": 2})
    assert (await resp.json()) == {"out": [2, 2, 2]}
    error = await error_of(await client.post("/api/echo?times=x", json={"n": 2}), 400)
    assert error == {
        "code": "invalid_input",
        "message": "query parameter 'times': expected int, got str",
    }
    error = await error_of(await client.post("/api/echo", json={"n": 2.5}), 400)
    assert error == {"code": "invalid_input", "message": "n: expected int, got float"}
    doc = await (await client.get("/api/openapi.json")).json()
    assert doc["components"]["schemas"]["Echo"]["properties"]["out"]["type"] == "array"
    assert msgspec.json.schema(EchoBody)["$defs"]["EchoBody"]["required"] == ["n"]
    assert client.server.app[ROUTES][("POST", "/api/echo")].body is EchoBody
