"""Built-in trainers: ``command`` (an argv) and ``python`` (an importable function)."""
