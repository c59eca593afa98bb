"""Monitoring: drift checks, data quality and performance of every watched model."""
