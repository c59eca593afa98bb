"""Mergeable profiles of observations, their stored form, and reference profiles."""
