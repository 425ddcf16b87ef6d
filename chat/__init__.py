"""Ripple's chat app: real-time rooms over WebSockets (and an HTTP fallback) on Django Channels."""

# The release, as in pyproject.toml (tests/unit/test_project_meta.py keeps the two equal).
__version__ = "0.1.0"
