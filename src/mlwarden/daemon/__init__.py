"""The host process: one package per service and one composition root.

``warden.py`` builds the core context and every service and wires them by the Protocols
of each provider's ``interfaces.py``; ``app.py`` runs the Warden behind the HTTP API
(``api/``) with systemd's lifecycle; ``keys/`` is encryption at rest (the Warden's part
that holds the key ring in use, and the ``mlwarden keys`` command). The layers, held by
``lint-imports`` (pyproject.toml): app > api > warden > keys > reports > the services
(ingest, monitoring, registry, training, rollouts, experiments, alerts; independent of
each other but through their interfaces) > profiles > core. docs/architecture.md shows
them and one record's path.
"""
