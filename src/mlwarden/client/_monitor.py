"""One line to monitor a model: its predict calls are logged through a Client."""

from __future__ import annotations

import logging
from typing import Any

from ._core import Client

__all__ = ["Monitored"]

logger = logging.getLogger("mlwarden.client")


class Monitored:
    """A model (anything with ``predict``, e.g. an MLflow pyfunc model) or a ``predict``
    callable whose calls are logged to mlwarden.

    ``predict(data, *args, ids=None, **kwargs)`` calls the model and logs ``data`` with
    its predictions under ``model``; ``ids`` name the rows for labels sent later
    (generated otherwise). With ``scores=True`` the model's ``predict_proba(data)``
    (a scikit-learn classifier's) is logged too, its columns named by ``classes_``, for
    performance estimation. A logging problem never fails the prediction: it is
    logged and counted in ``log_errors``. Every other attribute is the wrapped model's.
    """

    def __init__(
        self,
        model: Any,
        client: Client,
        name: str,
        *,
        version: str | None = None,
        scores: bool = False,
    ):
        self.wrapped = model
        self.client = client
        self.name = name
        self.version = version
        self.log_errors = 0
        self._predict = getattr(model, "predict", model)
        if not callable(self._predict):
            raise TypeError(f"expected a model with predict() or a callable, got {model!r}")
        self._proba = getattr(model, "predict_proba", None) if scores else None
        if scores and (self._proba is None or not hasattr(model, "classes_")):
            raise TypeError(
                f"scores=True needs a classifier with predict_proba() and classes_, got {model!r}"
            )

    def predict(self, data: Any, *args: Any, ids: Any = None, **kwargs: Any) -> Any:
        result = self._predict(data, *args, **kwargs)
        try:
            probabilities = classes = None
            if self._proba is not None:
                probabilities = self._proba(data)
                classes = [str(c) for c in self.wrapped.classes_]
            self.client.log_predictions(
                self.name,
                data,
                ids=ids,
                version=self.version,
                predictions=_flat(result),
                probabilities=probabilities,
                classes=classes,
            )
        except Exception as exc:  # monitoring never breaks serving
            self.log_errors += 1
            logger.warning("mlwarden: predictions of %r not logged: %s", self.name, exc)
        return result

    __call__ = predict

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def _flat(result: Any) -> Any:
    """One prediction per row: a 2-D output of one column is flattened, of several
    columns (class scores) it becomes the index of the largest."""
    module = type(result).__module__
    if module.startswith("pandas"):
        result = result.to_numpy()
    if hasattr(result, "ndim"):
        if result.ndim == 2:
            return result[:, 0] if result.shape[1] == 1 else result.argmax(axis=1)
        if result.ndim == 0:
            return [result.item()]
        return result
    if isinstance(result, list | tuple):
        return list(result)
    return [result]
