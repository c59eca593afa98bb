"""Real plugin modules that tests load by dotted path (``tests.fake_plugins.NAME``)."""
