"""Training job routes: retrain a model, list and read jobs, cancel one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...errors import InvalidInput
from .http import WARDEN, Route, json_response, query_limit, read_json

__all__ = ["job_routes"]

_MAX_REASON = 1000


async def retrain(request: web.Request) -> web.Response:
    """Queue a training job for the model (202), or return the one queued/running (200)."""
    warden = request.app[WARDEN]
    name = request.match_info["name"]
    body: dict[str, Any] = {}
    if request.can_read_body:
        body = await read_json(request)
    unknown = sorted(set(body) - {"reason"})
    if unknown:
        raise InvalidInput(f"unknown key(s) {', '.join(unknown)}; expected only 'reason'")
    reason = body.get("reason", "manual retrain requested through the API")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > _MAX_REASON:
        raise InvalidInput(f"'reason' must be a non-empty string of at most {_MAX_REASON} chars")
    job, created = await warden.jobs.submit_job(name, reason=reason, trigger="manual")
    return json_response(job, 202 if created else 200)


async def list_jobs(request: web.Request) -> web.Response:
    """Jobs, newest first; ``?model=``, ``?state=``, ``?limit=`` (1..1000, default 100)."""
    limit = query_limit(request)
    jobs = await request.app[WARDEN].jobs.list(
        model=request.query.get("model"), state=request.query.get("state"), limit=limit
    )
    return json_response({"jobs": jobs})


async def get_job(request: web.Request) -> web.Response:
    """One job with its state, attempts, result and log tail."""
    return json_response(await request.app[WARDEN].jobs.get(request.match_info["id"]))


async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a queued or running job; its process tree is killed."""
    job = await request.app[WARDEN].jobs.cancel(request.match_info["id"])
    return json_response(job)


def job_routes() -> list[Route]:
    return [
        Route("POST", "/api/models/{name}/retrain", retrain, "operator", "Queue a training job"),
        Route("GET", "/api/jobs", list_jobs, "viewer", "Training jobs"),
        Route("GET", "/api/jobs/{id}", get_job, "viewer", "One training job"),
        Route("POST", "/api/jobs/{id}/cancel", cancel_job, "operator", "Cancel a training job"),
    ]
