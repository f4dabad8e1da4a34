"""Shared by tests/ and compat/: the socket-leak guard (respkv/testing/leaks.py)."""

pytest_plugins = ["respkv.testing.leaks"]
