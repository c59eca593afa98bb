"""Training job routes: retrain a model, list and read jobs, cancel one."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from ...errors import InvalidInput
from .contract import Body, Paged, Reply, body_of, query_of
from .http import WARDEN, Link, Route, json_response

__all__ = ["job_routes"]

_MAX_REASON = 1000


class RetrainBody(Body):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_REASON)] = (
        "manual retrain requested through the API"
    )


class JobQuery(Paged):
    model: str | None = None
    state: str | None = None


class JobList(Reply):
    jobs: list[dict[str, Any]]


async def retrain(request: web.Request) -> web.Response:
    """Queue a training job for the model (202), or return the one queued/running (200)."""
    warden = request.app[WARDEN]
    name = request.match_info["name"]
    reason = body_of(request, RetrainBody).reason
    if not reason.strip():
        raise InvalidInput(f"reason: expected a non-empty string of at most {_MAX_REASON} chars")
    job, created = await warden.jobs.submit_job(name, reason=reason, trigger="manual")
    return json_response(job, 202 if created else 200)


async def list_jobs(request: web.Request) -> web.Response:
    """Jobs, newest first; ``?model=``, ``?state=``, ``?limit=`` (1..1000, default 100)."""
    query = query_of(request, JobQuery)
    jobs = await request.app[WARDEN].jobs.list(
        model=query.model, state=query.state, limit=query.limit
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
        Route("POST", "/api/models/{name}/retrain", retrain, "operator", "Queue a training job",
              body=RetrainBody, responses={202: dict[str, Any], 200: dict[str, Any]},
              links=(Link("GetJob", "GET", "/api/jobs/{id}", {"id": "$response.body#/id"}),)),
        Route("GET", "/api/jobs", list_jobs, "viewer", "Training jobs", query=JobQuery,
              responses={200: JobList}),
        Route("GET", "/api/jobs/{id}", get_job, "viewer", "One training job"),
        Route("POST", "/api/jobs/{id}/cancel", cancel_job, "operator", "Cancel a training job"),
    ]  # fmt: skip
