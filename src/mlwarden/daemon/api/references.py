"""A model's reference data over the API: upload, show, remove (daemon/ingest/uploads.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .contract import Reply
from .http import WARDEN, Route, json_response

__all__ = ["ReferenceInForce", "reference_routes"]


class UploadSummary(Reply):
    sha256: str
    bytes: int
    media_type: str
    rows: int
    uploaded_at: float


class ReferenceInForce(Reply):
    model: str
    #: ``upload`` (PUT), ``config`` (``models.reference``) or ``none``.
    in_force: str
    configured: str | None
    status: str
    rows: int | None
    features: list[str] | None
    #: The reference layout's fingerprint (changes with every new reference).
    fingerprint: str | None
    upload: UploadSummary | None


async def put_reference(request: web.Request) -> web.Response:
    """Upload the model's reference data (Arrow IPC stream, Parquet or CSV body)."""
    ingest = request.app[WARDEN].ingest
    name = request.match_info["name"]
    ingest.model_state(name)  # 404 before reading a large body
    body = await request.read()
    info: dict[str, Any] = await ingest.upload_reference(name, body, request.content_type)
    return json_response(info)


async def get_reference(request: web.Request) -> web.Response:
    """Which reference is in force for the model: uploaded, configured or none."""
    ingest = request.app[WARDEN].ingest
    return json_response(await ingest.reference_info(request.match_info["name"]))


async def delete_reference(request: web.Request) -> web.Response:
    """Remove the uploaded reference: the configured one (if any) is in force again."""
    ingest = request.app[WARDEN].ingest
    return json_response(await ingest.remove_reference(request.match_info["name"]))


def reference_routes() -> list[Route]:
    return [
        Route("PUT", "/api/models/{name}/reference", put_reference, "operator",
              "Upload the model's reference data (Arrow, Parquet or CSV)", raw_body=True,
              responses={200: ReferenceInForce}),
        Route("GET", "/api/models/{name}/reference", get_reference, "viewer",
              "The model's reference in force", responses={200: ReferenceInForce}),
        Route("DELETE", "/api/models/{name}/reference", delete_reference, "operator",
              "Remove the uploaded reference (the configured one is in force again)",
              responses={200: ReferenceInForce}),
    ]  # fmt: skip
