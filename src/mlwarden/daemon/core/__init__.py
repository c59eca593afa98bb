"""The core: what every service of the daemon gets.

Owns: the configuration (``config.py`` its shape, ``config_loader.py`` reading it,
``config_checks.py`` the checks across keys), the store (``store.py``: SQLAlchemy Core,
the schema-version steps; table ``schema_version``), the audit log (``audit.py``; table
``audit_log``; its key and checkpoint files outside the database in ``audit_seal.py``),
MLflow tracking (``tracking.py``), every Prometheus metric
(``metrics.py``; ``mlwarden_events_total`` and ``mlwarden_plugin_errors_total`` are
counted here), the plugin manager and its catalog (``plugins.py``), cluster
membership and the leases of work done once cluster-wide (``cluster.py``,
``leases.py``; tables ``cluster_members`` and ``leases``; the heartbeat task; metrics
``mlwarden_cluster_members`` and ``mlwarden_leases_held``), systemd notifications,
worker threads and processes, and the process's memory tuning.

Exposes: :class:`~.context.Context` (config, store, metrics, audit, tracking, clock,
plugins, cluster; ``spawn`` for owned background tasks, ``emit``, ``call_hook``,
``record_error``) and :class:`~.service.Service`, the base of every service.

May import: the contract (``mlwarden.types``, ``errors``, ``stats``, ``hookspecs``) and
``mlwarden.plugins`` (the built-in list, the schedule's cron checks); nothing else of
the daemon.
"""
