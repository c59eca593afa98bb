"""Monitoring (services ``monitor``, ``estimation``, ``performance``): drift and performance.

Owns: the drift checks of every model (``drift.py``: the loop, checks on demand and of
a DataFrame, history; table ``drift_reports``; metrics ``mlwarden_drift_score``,
``mlwarden_drift_detected``, ``mlwarden_feature_drift_score``,
``mlwarden_feature_drift_p_value``, ``mlwarden_drift_check_duration_seconds``,
``mlwarden_retrain_recommendation``; events ``drift_detected`` / ``drift_resolved``;
task ``monitor-loop``), the drift report itself (``report.py``: the drift methods fitted
and run, the recommendation), the data-quality checks (``quality.py``), performance per
version (``performance.py``: tables ``performance_history`` and ``performance_state``;
metric ``mlwarden_model_metric``; events ``performance_degraded`` /
``performance_recovered``; task ``performance-loop``), performance estimated before the
labels arrive (``estimation.py``, service ``estimation``: table
``performance_estimates``; metrics ``mlwarden_estimated_metric`` and its bounds,
``mlwarden_estimation_error``; events ``performance_estimate_degraded`` /
``performance_estimate_recovered``), and two versions side by side (``compare.py``).

Exposes: the services' public methods, used by the Warden and the API.

May import: ``profiles``, ``core``, the contract, ``mlwarden.plugins.drift`` (the
default methods per feature kind), ``mlwarden.plugins.estimators`` (the default
estimator per task), and ``ingest.interfaces`` / ``registry.interfaces``.
"""
