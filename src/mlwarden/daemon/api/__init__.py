"""The HTTP API: every aiohttp route, auth, JSON errors, OpenAPI (services know no HTTP).

``routes.py`` builds the application from every route module's routes; ``http.py`` has
what the route modules share (``Route``, app keys, JSON in and out); ``middleware.py``
and ``auth.py`` the request pipeline. The API is a thin layer over the Warden
(``daemon/warden.py``); the daemon's lifecycle (``daemon/app.py``) serves it.
"""

from __future__ import annotations

from .http import IN_FLIGHT, InFlight, Route
from .routes import build_app

__all__ = ["IN_FLIGHT", "InFlight", "Route", "build_app"]
