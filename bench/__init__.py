"""Benchmarks: scripts run as ``python bench/<name>.py`` (a package only so that the layer
contract in pyproject.toml sees what they import: they sit above the service)."""
