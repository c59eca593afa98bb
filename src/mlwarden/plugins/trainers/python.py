"""The ``python`` trainer: calls ``package.module:function`` in a child process.

Run as ``python -m mlwarden.plugins.trainers.python MODULE:FUNCTION KWARGS_JSON`` it is
also the child's entry point: it imports the function, calls it with the keyword
arguments, and writes a returned dict to ``MLWARDEN_OUTPUT``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ...hookspecs import hookimpl
from ...types import TrainingJob
from .command import CommandTrainer

__all__ = ["PythonTrainer"]

_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


class PythonTrainer(CommandTrainer):
    """Call an importable ``package.module:function`` in a child process.

    Same contract as the ``command`` trainer (environment, MLflow, output file, log,
    timeout killing the whole process tree); the function is imported in the child,
    never in the daemon. It is called as ``function(**kwargs)`` and may be async; if
    it returns a dict (``{"model_uri": ..., "metrics": {...}}``) the child writes it to
    ``MLWARDEN_OUTPUT``, otherwise the function must have written that file itself.

    Parameters
    ----------
    function:
        ``"package.module:function"``.
    kwargs:
        JSON-serialisable keyword arguments for the function.
    python:
        The interpreter (default: the daemon's own).
    pythonpath:
        Directories prepended to ``PYTHONPATH`` in the child.
    env, cwd:
        As for the ``command`` trainer.
    """

    name = "python"
    test_params: ClassVar[tuple[dict[str, Any], ...]] = (
        {"function": "package.module:train"},
        {"function": "a.b:c", "kwargs": {"epochs": 3}, "pythonpath": ["/srv"]},
    )

    def __init__(
        self,
        *,
        function: str,
        kwargs: Mapping[str, Any] | None = None,
        python: str = "",
        pythonpath: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str = "",
    ) -> None:
        if not isinstance(function, str) or not _TARGET.match(function):
            raise ValueError(
                f"option 'function' must look like 'package.module:function', got {function!r}"
            )
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise ValueError("option 'kwargs' must be a table of keyword arguments")
        if env is not None and not isinstance(env, Mapping):
            raise ValueError("option 'env' must map strings to strings")
        try:
            kwargs_json = json.dumps(dict(kwargs or {}), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"option 'kwargs' must be JSON-serialisable: {exc}") from None
        if isinstance(pythonpath, str) or not all(
            isinstance(d, str) and "\0" not in d for d in pythonpath
        ):
            raise ValueError("option 'pythonpath' must be an array of directory paths")
        if not isinstance(python, str) or "\0" in python:
            raise ValueError("option 'python' must be the path of an interpreter")
        extra = dict(env or {})
        if pythonpath:
            parts = [str(p) for p in pythonpath]
            current = extra.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
            extra["PYTHONPATH"] = os.pathsep.join(parts + ([current] if current else []))
        command = [python or sys.executable, "-m", __name__, function, kwargs_json]
        super().__init__(command=command, env=extra, cwd=cwd)
        self.function = function

    def argv(self, job: TrainingJob) -> list[str]:
        return self.command


def _main(argv: list[str]) -> int:
    """The child: import MODULE:FUNCTION, call it, write a returned dict to the output."""
    target, kwargs_json = argv
    module_name, _, attr = target.partition(":")
    sys.path.insert(0, os.getcwd())
    function = getattr(importlib.import_module(module_name), attr)
    result = function(**json.loads(kwargs_json))
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    if isinstance(result, dict):
        output = os.environ["MLWARDEN_OUTPUT"]
        with open(output, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
    elif result is not None:
        print(
            f"{target} returned {type(result).__name__}; expected a dict or None",
            file=sys.stderr,
        )
        return 3
    return 0


async def _await(awaitable: Any) -> Any:
    return await awaitable


@hookimpl
def mlwarden_trainers() -> list[type]:
    return [PythonTrainer]


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
