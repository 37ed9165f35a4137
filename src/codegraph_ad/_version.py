"""The package version, in one module of rank 0 so that any module can read it without
importing the package face (which pulls in the whole API); pyproject.toml carries the same
string for the build, and tests/test_layering.py checks that the two agree."""

__version__ = "0.1.0"
