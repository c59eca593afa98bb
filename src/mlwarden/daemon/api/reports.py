"""Report and export routes: model, experiment and compliance reports; exports; the
scheduled reports' runs.

Query parameters (every one optional):

- reports: ``format`` (``html`` | ``json``, default ``html``), ``from`` and ``to`` (Unix
  seconds or ISO 8601; default the 30 days up to now), and for the compliance report
  ``model`` (repeatable; default every configured or registered model);
- exports: ``format`` (``csv`` | ``parquet`` | ``json``, default ``csv``), ``from``,
  ``to``, ``model``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import msgspec
from aiohttp import web

from ...errors import InvalidInput
from ..reports.exports import EXPORT_KINDS, export_format, media_type
from ..reports.period import Period, parse_period
from ..reports.service import report_format
from .contract import Files, Paged, Query, query_of
from .http import WARDEN, Route, json_response

__all__ = ["report_routes"]

#: Query parameters of the report routes (for the OpenAPI description).
REPORT_QUERY = ("format", "from", "to")
#: Query parameters of the compliance report.
COMPLIANCE_QUERY = ("format", "from", "to", "model")
#: Query parameters of the export routes.
EXPORT_QUERY = ("format", "from", "to", "model")


class ReportQuery(Query):
    format: Literal["html", "json"] = "html"
    #: Unix seconds or ISO 8601 (default: 30 days before ``to``).
    from_: str | None = msgspec.field(default=None, name="from")
    #: Unix seconds or ISO 8601 (default: now).
    to: str | None = None


class ExperimentReportQuery(Query):
    format: Literal["html", "json"] = "html"


class ComplianceQuery(ReportQuery):
    #: A model to cover; repeat the parameter for several (default: every model).
    model: str | None = None


class ExportQuery(Query):
    format: Literal["csv", "parquet", "json"] = "csv"
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
    model: str | None = None


def _period(request: web.Request) -> Period:
    return parse_period(
        request.query.get("from"), request.query.get("to"), request.app[WARDEN].clock()
    )


def _check_query(request: web.Request, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"unknown query parameter(s) {unknown}: expected some of {list(allowed)}"
        )


async def _answer(request: web.Request, data: dict[str, Any], fmt: str) -> web.Response:
    if fmt == "json":
        return json_response(data)
    html = await request.app[WARDEN].reports.render(data)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def model_report(request: web.Request) -> web.Response:
    """The model report: verdict, features with their plots, history (``format``,
    ``from``, ``to``)."""
    _check_query(request, REPORT_QUERY)
    fmt = report_format(request.query.get("format", "html"))
    period = _period(request)
    data = await request.app[WARDEN].reports.model_report(request.match_info["name"], period)
    return await _answer(request, data, fmt)


async def experiment_report(request: web.Request) -> web.Response:
    """The experiment report: arms, lift with its interval, the p-value's path, SRM,
    the decision (``format``)."""
    _check_query(request, ("format",))
    fmt = report_format(request.query.get("format", "html"))
    data = await request.app[WARDEN].reports.experiment_report(request.match_info["id"])
    return await _answer(request, data, fmt)


async def compliance_report(request: web.Request) -> web.Response:
    """The compliance report (``format``, ``from``, ``to``, ``model`` repeatable)."""
    _check_query(request, COMPLIANCE_QUERY)
    fmt = report_format(request.query.get("format", "html"))
    period = _period(request)
    models = request.query.getall("model", [])
    data = await request.app[WARDEN].reports.compliance_report(period, models)
    return await _answer(request, data, fmt)


async def export(request: web.Request) -> web.StreamResponse:
    """A history table as CSV, Parquet or JSON, streamed (``format``, ``from``, ``to``,
    ``model``)."""
    _check_query(request, EXPORT_QUERY)
    kind = request.match_info.get("kind", "audit")
    fmt = export_format(request.query.get("format", "csv"))
    period = _period(request)
    model = request.query.get("model") or None
    chunks = await request.app[WARDEN].reports.export(kind, fmt, period, model)
    response = web.StreamResponse(
        headers={
            "Content-Type": media_type(fmt),
            "Content-Disposition": f'attachment; filename="mlwarden-{kind}.{fmt}"',
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        async for chunk in chunks:
            await response.write(chunk)
    except (ConnectionResetError, asyncio.CancelledError):
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    await response.write_eof()
    return response


async def report_runs(request: web.Request) -> web.Response:
    """The scheduled reports' runs, newest first (``limit`` <= 1000)."""
    runs = await request.app[WARDEN].reports.runs(query_of(request, Paged).limit)
    return json_response({"runs": runs})


async def run_report(request: web.Request) -> web.Response:
    """Run the scheduled report ``name`` now; its run (files, notifiers, outcome)."""
    run = await request.app[WARDEN].reports.run_report(request.match_info["name"])
    return json_response(run, 200 if run["outcome"] == "ok" else 502)


#: A report: HTML or JSON by ``format``; an export: CSV, Parquet or JSON.
REPORT = {200: Files("text/html", "application/json")}
EXPORT = {200: Files("text/csv", "application/vnd.apache.parquet", "application/json")}


def report_routes() -> list[Route]:
    kinds = ", ".join(sorted(k for k in EXPORT_KINDS if k != "audit"))
    return [
        Route("GET", "/api/models/{name}/report", model_report, "viewer",
              "Model report (HTML or JSON)", query=ReportQuery,
              responses=REPORT),
        Route("GET", "/api/experiments/{id}/report", experiment_report, "viewer",
              "Experiment report (HTML or JSON)", query=ExperimentReportQuery,
              responses=REPORT),
        Route("GET", "/api/compliance/report", compliance_report, "auditor",
              "Compliance report (HTML or JSON)", query=ComplianceQuery,
              responses=REPORT),
        Route("GET", "/api/exports/audit", export, "auditor",
              "Export the audit log (CSV, Parquet or JSON)", query=ExportQuery,
              responses=EXPORT),
        Route("GET", "/api/exports/{kind}", export, "viewer",
              f"Export a history ({kinds}) as CSV, Parquet or JSON", query=ExportQuery,
              responses=EXPORT),
        Route("GET", "/api/reports/runs", report_runs, "viewer", "Scheduled report runs",
              query=Paged),
        Route("POST", "/api/reports/{name}/run", run_report, "operator",
              "Run a scheduled report now"),
    ]  # fmt: skip
