"""The user docs stay true: every hook has a section in docs/plugin_hooks.md."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from mlwarden.daemon.core.plugins import make_plugin_manager

DOCS = Path(__file__).resolve().parents[1] / "docs"


def hook_signature(function) -> str:
    """``name(arg: Type, ...) -> Return`` as written in hookspecs.py."""
    sig = inspect.signature(function)
    params = ", ".join(
        f"{p.name}: {p.annotation}" if p.annotation is not p.empty else p.name
        for p in sig.parameters.values()
    )
    return f"{function.__name__}({params}) -> {sig.return_annotation}"


def hookspecs() -> dict[str, str]:
    pm = make_plugin_manager(autoload=False)
    specs = {}
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if name.startswith("mlwarden_") and caller.spec is not None:
            specs[name] = hook_signature(caller.spec.function)
    return specs


def test_every_hook_has_a_section_headed_by_its_signature():
    text = (DOCS / "plugin_hooks.md").read_text()
    headings = set(re.findall(r"^## (mlwarden_\S.*)$", text, flags=re.M))
    specs = hookspecs()
    assert len(specs) >= 10
    missing = [sig for sig in specs.values() if sig not in headings]
    assert not missing, f"docs/plugin_hooks.md has no section for: {missing}"
    documented = {h.split("(")[0] for h in headings}
    stale = documented - set(specs)
    assert not stale, f"docs/plugin_hooks.md documents hooks that do not exist: {stale}"


def test_signature_rendering_matches_the_source():
    from mlwarden import hookspecs as module

    assert hook_signature(module.mlwarden_event) == (
        "mlwarden_event(event: Event) -> Awaitable[None] | None"
    )


def test_configuration_doc_lists_every_key():
    from tests.test_example_config import config_keys

    text = (DOCS / "configuration.md").read_text()
    missing = []
    for dotted in config_keys():
        name = dotted.rpartition(".")[2]
        if (
            f"| `{name}` |" not in text
            and f"`[{dotted}]`" not in text
            and (f"`[[{dotted}]]`" not in text)
        ):
            missing.append(dotted)
    assert not missing, f"docs/configuration.md has no row for {missing}"
    for section in ("daemon", "mlflow", "monitoring", "training", "ab_testing", "alerts"):
        assert f"### `[{section}]`" in text
