"""Build and generation scripts (run as ``python hack/NAME.py``; tests import them)."""
