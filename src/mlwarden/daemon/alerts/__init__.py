"""Alerts: rules, dedup, repeat and resolve, silences, the durable outbox, notifiers."""
