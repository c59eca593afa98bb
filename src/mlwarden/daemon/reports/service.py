"""The report service: model, experiment and compliance reports, exports, and the
scheduled reports' loop with its run history."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ...errors import InvalidInput, NotFound
from ..core.cluster import REPORT_WORK
from ..core.config import Config, ReportConfig
from ..core.context import Context
from ..core.service import Service
from ..core.store import Schema, create_tables
from ..ingest.interfaces import WindowSource
from .compliance import compliance_report
from .experiment import experiment_report
from .exports import ExportFormat, export_chunks, export_kind, warm_parquet
from .model import known_model, model_report
from .period import Period, iso
from .profiles import ProfileSummaries
from .render import render_html
from .schedule import deliver, next_due, prune, run_directory

__all__ = ["REPORT_FORMATS", "ReportService", "runs_table"]

logger = logging.getLogger(__name__)

REPORT_FORMATS = ("html", "json")

runs_table = sa.Table(
    "report_runs",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("report", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # ok | failed
    sa.Column("files", sa.Text, nullable=False),  # JSON list of paths
    sa.Column("sent_to", sa.Text, nullable=False),  # JSON list of notifier names
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Index("ix_report_runs_report", "report", "id"),
)


def report_format(raw: str) -> str:
    if raw not in REPORT_FORMATS:
        raise InvalidInput(
            f"query parameter 'format' must be one of {', '.join(REPORT_FORMATS)}, got {raw!r}"
        )
    return raw


class ReportService(Service):
    """Builds reports and exports on request and runs ``[[reports]]`` on their cron."""

    name = "reports"
    schema = Schema("reports", [create_tables(runs_table)])
    #: How often the loop looks for due reports (seconds).
    tick_seconds = 1.0

    def __init__(self, context: Context, *, windows: WindowSource) -> None:
        super().__init__(context)
        self.windows = windows
        self._due: dict[str, float] = {}
        self._running: set[str] = set()

    async def start(self) -> None:
        self._plan(self.context.config)
        # The first Parquet file a process writes pays a fixed cost (exports.py): paid
        # here, so that an export's memory is its own.
        await asyncio.to_thread(warm_parquet)
        self.context.spawn(self._loop(), name="reports-loop")

    async def reload(self, config: Config) -> None:
        self._plan(config)

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "next_runs": {k: iso(v) for k, v in self._due.items()}}

    def _plan(self, config: Config) -> None:
        now = self.context.clock()
        self._due = {r.name: next_due(r, now) for r in config.reports}

    # -- reports -----------------------------------------------------------------------

    async def model_report(self, model: str, period: Period) -> dict[str, Any]:
        """The model report's data (NotFound for an unknown model)."""
        with self._timed("model"):
            return await model_report(
                self.context.config, self.context.store, self.windows, model, period,
                self.context.clock(),
            )  # fmt: skip

    async def experiment_report(self, experiment_id: str) -> dict[str, Any]:
        with self._timed("experiment"):
            return await experiment_report(self.context.store, experiment_id, self.context.clock())

    async def compliance_report(self, period: Period, models: Sequence[str]) -> dict[str, Any]:
        with self._timed("compliance"):
            return await compliance_report(
                self.context.config, self.context.store, self.context.audit, models, period,
                self.context.clock(),
            )  # fmt: skip

    async def render(self, data: dict[str, Any]) -> str:
        """``data`` as one self-contained HTML file, rendered in a thread."""
        with self._timed(f"{data['kind']}_html"):
            return await asyncio.to_thread(render_html, data)

    def _timed(self, kind: str) -> _Timed:
        return _Timed(self, kind)

    # -- exports -----------------------------------------------------------------------

    async def export(
        self, kind_name: str, fmt: ExportFormat, period: Period, model: str | None
    ) -> AsyncIterator[bytes]:
        """The export file in pieces; the kind and model are checked before the first."""
        kind = export_kind(kind_name)
        rows_of = None
        if model is not None:
            from .history import History

            await known_model(self.context.config, History(self.context.store, period), model)
        if kind.name == "profiles":
            layouts = {}
            for name in self.windows.watched():
                state = await self.windows.watched_model(name)
                if state.reference is not None:
                    layouts[state.reference.layout.fingerprint] = state.reference.layout
            rows_of = ProfileSummaries(layouts).rows
        return self._counted(
            kind.name, export_chunks(self.context.store, kind, fmt, period, model, rows_of=rows_of)
        )

    async def _counted(self, kind: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        with self._timed(f"export_{kind}"):
            async for chunk in chunks:
                yield chunk

    # -- scheduled reports -------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            if not self.context.config.reports:
                continue
            try:  # one daemon of a cluster runs the scheduled reports
                lease = await self.context.cluster.singleton(REPORT_WORK)
            except Exception as exc:  # the store is away: try at the next tick
                where = "scheduled reports"
                self.context.failed(logger, exc, where, "cannot take the scheduled reports' lease")
                continue
            if lease is None:
                continue
            now = self.context.clock()
            for report in self.context.config.reports:
                due = self._due.get(report.name)
                if due is None or now < due or report.name in self._running:
                    continue
                self._due[report.name] = next_due(report, now)
                try:
                    await self.run_report(report.name)
                except Exception as exc:  # recorded in the run history already
                    logger.warning("scheduled report %s failed: %s", report.name, exc)

    def report_config(self, name: str) -> ReportConfig:
        for report in self.context.config.reports:
            if report.name == name:
                return report
        known = [r.name for r in self.context.config.reports]
        raise NotFound(f"no [[reports]] named {name!r} (configured: {known})")

    async def run_report(self, name: str) -> dict[str, Any]:
        """Run the scheduled report ``name`` now: write its files, send them; the run."""
        report = self.report_config(name)
        started = self.context.clock()
        self._running.add(name)
        files: list[Path] = []
        sent: list[str] = []
        error = ""
        try:
            files, sent = await self._produce(report, started)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._running.discard(name)
        outcome = "failed" if error else "ok"
        self.context.metrics.scheduled_reports.labels(name, outcome).inc()
        if not error:
            self.context.metrics.scheduled_report_last_success.labels(name).set(started)
        run = {
            "report": name,
            "kind": report.kind,
            "started_at": started,
            "finished_at": self.context.clock(),
            "outcome": outcome,
            "files": json.dumps([str(f) for f in files]),
            "sent_to": json.dumps(sent),
            "error": error,
        }
        async with self.context.store.begin() as conn:
            run_id = (await conn.execute(runs_table.insert().values(**run))).inserted_primary_key
        if error:
            self.context.record_error(f"report {name}", error)
        return {**run, "id": run_id[0] if run_id else None, "files": [str(f) for f in files],
                "sent_to": sent}  # fmt: skip

    async def _produce(self, report: ReportConfig, now: float) -> tuple[list[Path], list[str]]:
        period = Period(now - report.period_days * 86400.0, now)
        reports: list[tuple[str, dict[str, Any]]] = []
        if report.kind == "compliance":
            reports.append(("compliance", await self.compliance_report(period, report.models)))
        else:
            for model in report.models:
                reports.append((f"model-{model}", await self.model_report(model, period)))
        if report.directory:
            target = run_directory(report, now)
        else:
            target = self.context.config.base_path / "reports" / run_directory(report, now).name
        contents: list[tuple[Path, str]] = []
        for stem, data in reports:
            for fmt in report.formats:
                text = (
                    await self.render(data)
                    if fmt == "html"
                    else json.dumps(data, indent=1, default=str, allow_nan=False)
                )
                contents.append((target / f"{stem}.{fmt}", text))
        await asyncio.to_thread(_write_files, target, contents)
        files = [path for path, _ in contents]
        sent: list[str] = []
        if report.notifiers:
            chosen = [n for n in self.context.config.notifiers if n.name in report.notifiers]
            title = f"mlwarden report {report.name} ({iso(period.since)} to {iso(period.until)})"
            body = f"The {report.kind} report {report.name!r} is attached ({len(files)} files)."
            failed = await asyncio.to_thread(deliver, chosen, title, body, files)
            if failed:
                raise RuntimeError(f"could not send report to notifiers {failed}")
            sent = [n.name for n in chosen]
        if report.directory:
            await asyncio.to_thread(prune, report)
        else:
            await asyncio.to_thread(_remove, target)
        return (files if report.directory else []), sent

    async def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """The scheduled reports' runs, newest first."""
        query = sa.select(runs_table).order_by(runs_table.c.id.desc()).limit(limit)
        async with self.context.store.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            {**r, "files": json.loads(r["files"]), "sent_to": json.loads(r["sent_to"])}
            for r in rows
        ]


def _write_files(target: Path, contents: list[tuple[Path, str]]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path, text in contents:
        path.write_text(text, encoding="utf-8")


def _remove(target: Path) -> None:
    import shutil

    shutil.rmtree(target, ignore_errors=True)


class _Timed:
    """Counts a report or export and observes how long it took, by outcome."""

    def __init__(self, service: ReportService, kind: str) -> None:
        self.metrics = service.context.metrics
        self.kind = kind
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, exc_type: object, *_: object) -> None:
        outcome = "ok" if exc_type is None else "failed"
        self.metrics.reports.labels(self.kind, outcome).inc()
        self.metrics.report_duration.labels(self.kind).observe(time.perf_counter() - self.started)
