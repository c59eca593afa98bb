"""Built-in traffic backends: where a model's traffic table is applied outside the daemon."""
