"""Built-in retraining triggers: ``schedule``, ``drift``, ``performance``, ``regime``."""
