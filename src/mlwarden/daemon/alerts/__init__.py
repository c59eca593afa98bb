"""Alerts (service ``alerts``): events to alerts to notifications, exactly once.

Owns: the rules that fire and resolve alerts (``rules.py``), dedup, group wait, repeat
and resolve (``service.py``; table ``alerts`` with its ``Alert`` records in
``records.py``), silences (``silences.py``; table ``alert_silences``), the durable
outbox with retries per destination (``outbox.py``; table ``notification_outbox`` with
its ``OutboxEntry`` records in ``outbox_records.py``), the notifier plugins built from
the configuration and the messages they send (``notifiers.py``); metrics
``mlwarden_alerts_firing`` and ``mlwarden_notifications_total``; task ``alerts``. It
hears every event through the ``mlwarden_event`` hook, like a plugin.

Exposes: the service's public methods (alerts, silences, outbox entries, ``wake``),
which return typed records (``Alert``, ``SilenceRecord``, ``OutboxEntry``).

May import: ``core`` and the contract.
"""
