"""Rollouts (service ``rollouts``): promotions, strategies driven, traffic, the gateway.

Owns: the rollout controller (``controller.py``: the state machine that drives a
strategy plugin step by step, typed by ``strategy.DeploymentStrategy``, the
confirm-promotion hook, a rollout's promotion and rollback), the operator's changes
checked against the active rollout (``promotion.py``: direct promotions, lifecycle
moves, rollout starts, rollbacks), the
evidence a step is decided on (``evidence.py``) and the canary analysis itself
(``analysis.py``: candidate against baseline over the same interval), the traffic
tables with sticky routing and the traffic backends (``traffic.py``), the serving
gateway (``gateway.py``; its calls per interval, every daemon's, in
``serving_stats.py``), the one place where what serves changes (``serving.py``:
registry status, aliases, traffic table and rollout state as one recorded step), the
service's reads (``reads.py``); tables ``rollouts``, ``rollout_analyses``,
``serving_changes``, ``shadow_predictions`` (``records.py``), ``serving_stats``,
``traffic_weights`` and ``traffic_changes``;
metrics ``mlwarden_rollouts_total`` and ``mlwarden_traffic_weight``; events
``rollout_started``, ``rollout_step``, ``rollout_promoted``, ``rollout_rolled_back``;
tasks ``rollouts-tick``, ``rollouts-follow-<model>`` and (PostgreSQL) ``gateway-stats``.

Exposes (``interfaces.py``): ``TrafficControl`` (a model's traffic table and rollouts;
for the experiments) and the ``Rollout`` record it hands out (defined with its table in
``records.py``).

May import: ``core``, the contract, ``mlwarden.plugins.strategies`` (the built-in
strategies' base class, which ``strategy.py`` checks against the protocol),
``ingest.interfaces`` (outcomes, recording served predictions) and
``registry.interfaces`` (moving versions through their statuses).
"""
