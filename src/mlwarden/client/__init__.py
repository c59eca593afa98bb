"""mlwarden.client: what a serving system imports to send predictions and labels.

Two lines in a serving system::

    client = mlwarden.client.Client("http://127.0.0.1:9741", token=TOKEN)
    client.log_predictions("my-model", features, ids=request_ids, predictions=y)

Calls only append to a bounded buffer; a background thread batches them by size and
age and sends Arrow IPC streams, retrying under the same batch id (see ``_core``).
``monitor(model, client, "my-model")`` wraps any ``predict`` callable or MLflow pyfunc
model in one line. ``client.upload_reference("my-model", frame)`` puts a model's
reference data in force. Importing this package imports neither the daemon, nor MLflow,
scipy or scikit-learn; pyarrow and numpy are imported when a client is made.
"""

from __future__ import annotations

from typing import Any

from ._async import AsyncClient
from ._core import Client, ClientStats
from ._monitor import Monitored
from ._reference import ReferenceRefused

__all__ = ["AsyncClient", "Client", "ClientStats", "Monitored", "ReferenceRefused", "monitor"]


def monitor(
    model: Any, client: Client, name: str, *, version: str | None = None, scores: bool = False
) -> Monitored:
    """``model`` (with ``predict``, or a callable) whose predictions are logged as ``name``;
    with ``scores=True`` its ``predict_proba`` too (see ``Monitored``)."""
    return Monitored(model, client, name, version=version, scores=scores)
