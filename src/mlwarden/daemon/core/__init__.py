"""What every service gets: configuration, store, metrics, audit, tracking, plugins."""
