"""Test setup for tests/cluster.

Hypothesis imports ``hypothesis.extra._patching`` (and with it libcst) only when reporting a
failing example; in this environment that import emits a DeprecationWarning from
mypy_extensions, which ``filterwarnings = error`` turns into a pytest INTERNALERROR that hides the
real failure. Import it once here, with that one warning silenced, so failures report normally.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst absent: hypothesis skips patch generation
        pass
