"""A/B tests between two versions of a model."""
