"""Small domain exceptions. Messages name the model, plugin, key or file involved."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "Conflict",
    "DecryptionFailed",
    "Forbidden",
    "InvalidInput",
    "MlwardenError",
    "NotFound",
    "PluginError",
    "TrainingFailed",
    "TrainingTimedOut",
    "Unauthorized",
]


class MlwardenError(Exception):
    """Base class of every error mlwarden raises on purpose."""

    #: HTTP status the API answers with when this error escapes a handler.
    status = 500
    #: Stable machine-readable code in ``{"error": {"code": ...}}``.
    code = "internal_error"


class ConfigError(MlwardenError):
    """The configuration is invalid; the message names the file and the key."""

    status = 400
    code = "invalid_config"

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))


class PluginError(MlwardenError):
    """A plugin could not be loaded, is duplicated, or is misconfigured."""

    code = "plugin_error"


class TrainingFailed(MlwardenError):
    """The trainer ran but produced no usable model (exit code, missing output, ...).

    A trainer plugin raises it (or any exception) from ``train``; the job queue retries
    the job up to ``training.max_retries`` and records the message as the job's error.
    """

    code = "training_failed"


class TrainingTimedOut(TrainingFailed):
    """The trainer exceeded the job's timeout; its process group was killed."""

    code = "training_timed_out"


class InvalidInput(MlwardenError):
    """A request or call carried data that is malformed or does not fit the schema."""

    status = 400
    code = "invalid_input"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        if code:
            self.code = code
        if status:
            self.status = status


class NotFound(MlwardenError):
    """The model, version, job, experiment or other object does not exist."""

    status = 404
    code = "not_found"


class Conflict(MlwardenError):
    """The request is valid but refused by the current state (illegal transition, ...)."""

    status = 409
    code = "conflict"


class Unauthorized(MlwardenError):
    status = 401
    code = "unauthorized"


class Forbidden(MlwardenError):
    status = 403
    code = "forbidden"


class DecryptionFailed(MlwardenError):
    """An object stored encrypted could not be opened: wrong or missing key, or altered.

    ``what`` names the object (``outbox row 12``, ``artifact models/m-1/model.pkl``);
    nothing of it is returned, so nothing is served half-decrypted.
    """

    status = 500
    code = "decryption_failed"
    #: A value read from a sealed column: its table and the stored (sealed) value, by
    #: which the row is found (the daemon names its key in the error and the audit).
    table: str = ""
    stored: bytes | str | None = None

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"cannot decrypt {what}: {reason}")
