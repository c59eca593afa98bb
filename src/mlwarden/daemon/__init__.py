"""The host process: one package per service and one composition root.

``warden.py`` builds the core context and every service and wires them by the Protocols
of each provider's ``interfaces.py``; ``app.py`` runs the Warden behind the HTTP API
(``api/``) with systemd's lifecycle; ``at_rest.py`` is the Warden's part that holds
the key ring in use. The layers, held by ``lint-imports`` (pyproject.toml): app > api
> warden > at_rest > reports > the services (ingest, monitoring, registry,
training, rollouts, experiments, alerts; independent of each other but through their
interfaces) > profiles > core. docs/architecture.md shows them and one record's path.
"""
