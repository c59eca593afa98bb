"""A/B tests (service ``experiments``) between two versions of one model.

Owns: experiments and their evaluations (``service.py``, ``records.py``; tables
``experiments`` and ``experiment_evaluations``), their statistics (``analysis.py``: the
settings fixed at start and each evaluation through ``mlwarden.stats.analyse``), and
their MLflow runs and gauges (``tracking.py``: ``mlwarden_experiment_p_value``,
``_samples``, ``_lift``, ``_srm_detected``); events ``experiment_started`` and
``experiment_concluded``; task ``experiments-evaluate``.

Exposes: the service's public methods (start, evaluate, stop, history), which return
experiment records (``ExperimentRecord``, defined with the tables in ``records.py``).

May import: ``core``, the contract, ``ingest`` outcomes (as ``mlwarden.types.
OutcomeSource``), ``registry.interfaces`` and ``rollouts.interfaces`` (the traffic table
an experiment splits, and the rollout a winner starts).
"""
