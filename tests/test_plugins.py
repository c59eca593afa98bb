"""The plugin-manager factory: built-ins, entry points, dotted modules, blocking, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlwarden.daemon.core.plugins import PluginCatalog, make_plugin_manager
from mlwarden.errors import PluginError
from mlwarden.plugins import DEFAULT_PLUGINS

COLLECTOR = "tests.fake_plugins.collector"


@pytest.fixture
def entry_point_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make an installed distribution with ``mlwarden`` entry points visible on sys.path."""

    def make(entry_points: dict[str, str], dist: str = "fake_ep_dist", version: str = "2.5.0"):
        site = tmp_path / f"site-{dist}"
        info = site / f"{dist}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text("[mlwarden]\n" + lines)
        monkeypatch.syspath_prepend(str(site))
        return site

    return make


def test_default_plugins_are_registered_as_builtins():
    pm = make_plugin_manager(autoload=False)
    for dotted in DEFAULT_PLUGINS:
        assert pm.has_plugin(dotted)
        assert pm.origins[dotted][0] == "builtin"
    infos = {(i.kind, i.name): i for i in PluginCatalog(pm).infos()}
    log = infos[("notifier", "log")]
    assert log.plugin == "mlwarden.plugins.notifiers.log"
    assert log.origin == "builtin"


def test_extra_dotted_module_is_registered_with_config_origin():
    pm = make_plugin_manager([COLLECTOR], autoload=False)
    catalog = PluginCatalog(pm)
    cls = catalog.get("notifier", "collector")
    assert cls.__module__ == COLLECTOR
    info = next(i for i in catalog.infos() if i.name == "collector")
    assert (info.kind, info.plugin, info.origin) == ("notifier", COLLECTOR, "config")


def test_entry_point_is_loaded_with_its_distribution_and_version(entry_point_dist):
    entry_point_dist({"collector_ep": COLLECTOR})
    pm = make_plugin_manager(autoload=True)
    assert pm.has_plugin("collector_ep")
    info = next(i for i in PluginCatalog(pm).infos() if i.name == "collector")
    assert info.plugin == "collector_ep"
    assert info.version == "2.5.0"
    assert info.origin == f"entry point {COLLECTOR} (fake_ep_dist)"


def test_autoload_env_var_skips_entry_points(entry_point_dist, monkeypatch):
    entry_point_dist({"collector_ep": COLLECTOR})
    monkeypatch.setenv("MLWARDEN_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert not make_plugin_manager().has_plugin("collector_ep")
    monkeypatch.setenv("MLWARDEN_DISABLE_PLUGIN_AUTOLOAD", "")
    assert make_plugin_manager().has_plugin("collector_ep")


def test_disable_plugins_blocks_modules_entry_points_and_classes(entry_point_dist):
    entry_point_dist({"collector_ep": COLLECTOR})
    pm = make_plugin_manager(
        disable=["collector_ep", "mlwarden.plugins.notifiers.log"], autoload=True
    )
    assert not pm.has_plugin("collector_ep")
    assert not pm.has_plugin("mlwarden.plugins.notifiers.log")
    assert "log" not in PluginCatalog(pm).names("notifier")

    # A class name in disable_plugins drops that class but keeps its module.
    pm = make_plugin_manager([COLLECTOR], disable=["collector"], autoload=False)
    catalog = PluginCatalog(pm, ["collector"])
    assert pm.has_plugin(COLLECTOR)
    assert "collector" not in catalog.names("notifier")
    assert "log" in catalog.names("notifier")
    with pytest.raises(
        PluginError, match=r"unknown notifier plugin 'collector' \(available: .*log"
    ):
        catalog.get("notifier", "collector")


def test_import_error_names_the_plugin():
    with pytest.raises(PluginError) as err:
        make_plugin_manager(["tests.fake_plugins.broken_import"], autoload=False)
    message = str(err.value)
    assert message.startswith('Error importing plugin "tests.fake_plugins.broken_import"')
    assert "mlwarden_no_such_dependency" in message


def test_entry_point_import_error_names_the_entry_point(entry_point_dist):
    entry_point_dist({"broken_ep": "tests.fake_plugins.broken_import"})
    with pytest.raises(PluginError, match=r'^Error importing plugin "broken_ep": .*no_such'):
        make_plugin_manager(autoload=True)


def test_missing_module_names_the_plugin():
    with pytest.raises(PluginError, match=r'Error importing plugin "no_such_pkg.plugin"'):
        make_plugin_manager(["no_such_pkg.plugin"], autoload=False)


def test_duplicate_class_name_names_both_plugins():
    pm = make_plugin_manager(["tests.fake_plugins.duplicate_log"], autoload=False)
    with pytest.raises(PluginError) as err:
        PluginCatalog(pm)
    message = str(err.value)
    assert '"tests.fake_plugins.duplicate_log"' in message
    assert '"mlwarden.plugins.notifiers.log"' in message
    assert "duplicate notifier name 'log'" in message


def test_duplicate_name_stops_warden_start(make_config):
    from mlwarden.daemon.warden import Warden

    config = make_config('[daemon]\nplugins = ["tests.fake_plugins.duplicate_log"]\n')
    with pytest.raises(PluginError, match="duplicate_log"):
        Warden(config)


def test_check_pending_names_a_plugin_with_an_unknown_hook():
    with pytest.raises(PluginError) as err:
        make_plugin_manager(["tests.fake_plugins.typo_hook"], autoload=False)
    message = str(err.value)
    assert '"tests.fake_plugins.typo_hook"' in message
    assert "mlwarden_evnt" in message


def test_class_without_name_is_refused(tmp_path, monkeypatch):
    module = tmp_path / "nameless_plugin.py"
    module.write_text(
        "from mlwarden import hookimpl\n"
        "class Nameless:\n    pass\n"
        "@hookimpl\ndef mlwarden_triggers():\n    return [Nameless]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = make_plugin_manager(["nameless_plugin"], autoload=False)
    with pytest.raises(PluginError, match=r'Plugin "nameless_plugin": trigger class .* no `name`'):
        PluginCatalog(pm)


#: Alert settings that turn an event into a notification at once (no group wait).
FAST_ALERTS = (
    "[alerts]\ngroup_wait_seconds = 0\ntick_seconds = 0.1\n"
    '[[alerts.rules]]\nname = "FakeEvent"\nfire_on = ["fake_event"]\n'
)


async def wait_until(predicate, timeout: float = 20.0) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_log_notifier_receives_events_end_to_end(make_warden, caplog):
    from mlwarden.types import Event, Severity

    warden = await make_warden(FAST_ALERTS)
    with caplog.at_level("INFO", logger="mlwarden.notifications"):
        await warden.emit(
            Event(kind="fake_event", model="m1", severity=Severity.WARNING, message="drift")
        )

        def logged():
            return [r for r in caplog.records if r.name == "mlwarden.notifications"]

        await wait_until(logged)
    record = logged()[0]
    assert record.levelname == "WARNING"
    assert "m1" in record.getMessage()


async def test_configured_notifier_from_module_gets_its_options(make_warden):
    from mlwarden.types import Event, Severity
    from tests.fake_plugins import collector

    collector.RECEIVED.clear()
    warden = await make_warden(
        f'[daemon]\nplugins = ["{COLLECTOR}"]\n'
        '[[notifiers]]\nname = "crit"\nplugin = "collector"\nmin_severity = "critical"\n'
        'options = { label = "oncall" }\n' + FAST_ALERTS
    )
    await warden.emit(Event(kind="fake_event", model="quiet", severity=Severity.WARNING))
    await warden.emit(Event(kind="fake_event", model="loud", severity=Severity.CRITICAL))
    await wait_until(lambda: collector.RECEIVED)
    assert [(label, n.model) for label, n in collector.RECEIVED] == [("oncall", "loud")]
