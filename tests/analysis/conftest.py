"""The analysis tests reuse the report tests' small real run (one per session)."""

from tests.report.conftest import evaluated_run, small_backbone  # noqa: F401
