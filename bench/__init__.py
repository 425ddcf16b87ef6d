"""Ripple's benchmark tool: ``python -m bench <scenario> [options]`` (see bench/README.md)."""
