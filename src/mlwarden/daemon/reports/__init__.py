"""Reports people read and exports they load: model, experiment and compliance reports
(JSON, or one self-contained HTML file with plotly figures), streamed CSV/Parquet/JSON
exports of the history tables, and scheduled reports (``[[reports]]``).

Owns: the ``report_runs`` table (the scheduled runs' history); the metrics
``mlwarden_reports_total``, ``mlwarden_report_duration_seconds``,
``mlwarden_scheduled_reports_total`` and
``mlwarden_scheduled_report_last_success_timestamp_seconds``; the background task
``reports-loop``.

It is the read side over the other services' tables: it sits above them in the import
layers (between ``warden`` and the services, pyproject.toml) and reads their tables,
never writes them; the window profiles come through ingest's ``WindowSource``.
"""

from __future__ import annotations

from .service import ReportService

__all__ = ["ReportService"]
