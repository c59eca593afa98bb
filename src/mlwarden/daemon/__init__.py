"""The host process and its services."""
