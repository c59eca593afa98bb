"""Rollouts: the rollout controller, strategies driven, traffic tables, the gateway."""
