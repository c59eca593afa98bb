"""The plugin contract's import boundaries: built-in plugins import it as a third party would.

The contract is ``mlwarden.types``, ``mlwarden.errors``, ``mlwarden.stats`` and
``mlwarden.hookspecs`` (plus the ``mlwarden._version`` leaf). Built-in plugins import
only that (and each other); the contract imports neither plugins nor the daemon at run
time. The graph counts every import statement: inside functions and under
``TYPE_CHECKING`` too, unless said otherwise.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import grimp
import pytest

CONTRACT = ("mlwarden.types", "mlwarden.errors", "mlwarden.stats", "mlwarden.hookspecs")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("mlwarden", cache_dir=None)


@pytest.fixture(scope="module")
def runtime_graph() -> grimp.ImportGraph:
    return grimp.build_graph("mlwarden", cache_dir=None, exclude_type_checking_imports=True)


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _plugin_modules(graph: grimp.ImportGraph) -> list[str]:
    return sorted({"mlwarden.plugins"} | graph.find_descendants("mlwarden.plugins"))


def _lines(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    return "; ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details)


def test_no_builtin_plugin_module_imports_the_daemon(graph):
    modules = _plugin_modules(graph)
    assert "mlwarden.plugins.triggers.regime" in modules
    wrong = [
        f"{module} imports {imported} ({_lines(graph, module, imported)})"
        for module in modules
        for imported in graph.find_modules_directly_imported_by(module)
        if _within(imported, "mlwarden.daemon")
    ]
    assert not wrong, "\n".join(wrong)


def test_builtin_plugins_import_only_the_contract(graph):
    allowed = (*CONTRACT, "mlwarden.plugins", "mlwarden._version")
    wrong = [
        f"{module} imports {imported} ({_lines(graph, module, imported)})"
        for module in _plugin_modules(graph)
        for imported in graph.find_modules_directly_imported_by(module)
        if not _within(imported, *allowed)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", [*CONTRACT, "mlwarden._version"])
def test_the_contract_imports_no_plugins_and_no_daemon_at_run_time(runtime_graph, package):
    modules = {package} | runtime_graph.find_descendants(package)
    wrong = [
        f"{module} imports {imported} ({_lines(runtime_graph, module, imported)})"
        for module in sorted(modules)
        for imported in runtime_graph.find_modules_directly_imported_by(module)
        if _within(imported, "mlwarden.plugins", "mlwarden.daemon")
    ]
    assert not wrong, "\n".join(wrong)


def test_importing_the_contract_and_the_builtins_loads_no_daemon_module():
    probe = textwrap.dedent(
        """
        import importlib, sys
        import mlwarden.errors, mlwarden.hookspecs, mlwarden.stats, mlwarden.types
        assert not [m for m in sys.modules if m.startswith("mlwarden.plugins")]
        from mlwarden.plugins import DEFAULT_PLUGINS
        for dotted in DEFAULT_PLUGINS:
            importlib.import_module(dotted)
        print(sorted(m for m in sys.modules if m.startswith("mlwarden.daemon")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_hookimpl_and_version_are_the_root_packages():
    import mlwarden
    from mlwarden import _version, hookspecs

    assert mlwarden.hookimpl is hookspecs.hookimpl
    assert mlwarden.__version__ == _version.__version__
