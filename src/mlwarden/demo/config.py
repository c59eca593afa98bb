"""The demo's configuration: embedded defaults, accelerated so the story fits in minutes."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["MODEL", "demo_config_text"]

MODEL = "btc-usdt"


def demo_config_text(
    base_path: Path, listen: str, apprise_urls: list[str], tls: tuple[str, str] | None = None
) -> str:
    """TOML for the demo daemon; ``data/`` under the base path holds the market log.

    ``tls``: (certificate, key) files; the demo daemon then serves HTTPS.
    """
    data = base_path / "demo"
    notifiers = '[[notifiers]]\nname = "log"\nplugin = "log"\nmin_severity = "info"\n'
    if apprise_urls:
        notifiers += (
            '\n[[notifiers]]\nname = "apprise"\nplugin = "apprise"\n'
            f'urls = {json.dumps(apprise_urls)}\nmin_severity = "warning"\n'
        )
    return f"""\
# Written by `mlwarden demo`. Time is accelerated: one market step is one simulated hour,
# windows and intervals are seconds instead of hours.
[daemon]
base_path = {json.dumps(str(base_path))}
listen = {json.dumps(listen)}

{_tls_section(tls)}[monitoring]
performance_threshold = 0.5    # the shift makes MSE ~20x worse; 15% is noise here
window_hours = 0.025           # 90 s window
bucket_seconds = 5
interval_seconds = 5
min_window_rows = 1200
label_ttl_hours = 1

[training]
max_concurrent_jobs = 1
min_training_data_points = 200
retry_backoff_seconds = 2
scheduler_interval_seconds = 2

[ab_testing]
min_duration_hours = 0.005     # 18 s
min_samples = 300
evaluation_interval_seconds = 5

[alerts]
group_wait_seconds = 2         # Alertmanager's 30 s would be a simulated day here

[deployment]
default_strategy = "canary"
tick_seconds = 2

[deployment.strategies.canary]
steps = [20, 50, 100]
interval_seconds = 6
min_samples = 50
failure_budget = 1

[[models]]
name = "{MODEL}"
task = "regression"
reference = {json.dumps(str(data / "reference.csv"))}
features = ["ret_1h", "ret_6h", "ret_24h", "vol_24h", "funding_rate"]
drift_methods = ["ks", "psi"]
triggers = ["drift", "performance"]
strategy = "canary"
performance_metric = "mse"     # watched for degradation; the trading metrics are reported too

# The prediction is the next hour's return: a sign strategy's Sharpe, drawdown, win rate.
[models.trading]
periods_per_year = 8760

# Consecutive market hours are autocorrelated, so a short window of a calm market
# differs from the reference by more than chance: demand stronger evidence.
[models.drift_options.ks]
threshold = 0.001

[models.drift_options.psi]
threshold = 0.25

[models.trigger_options.drift]
cooldown_seconds = 600

[models.trainer]
plugin = "python"
function = "mlwarden.demo.trainer:train"
kwargs = {{ data_path = {json.dumps(str(data / "market.csv"))}, rows = 500 }}

[models.gates]
max_mse = 0.01

{notifiers}"""


def _tls_section(tls: tuple[str, str] | None) -> str:
    if not tls:
        return ""
    cert, key = (str(Path(p).resolve()) for p in tls)
    return f"[tls]\ncert_file = {json.dumps(cert)}\nkey_file = {json.dumps(key)}\n\n"
