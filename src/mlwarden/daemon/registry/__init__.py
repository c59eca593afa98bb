"""The model registry: versions on MLflow, semantic versions, statuses, gates, cleanup."""
