"""Ingest: predictions and labels in, validated and folded into profiles and outcomes."""
