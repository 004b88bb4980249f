"""Source tests: the real Prometheus is the session-wide ``prometheus`` fixture of
``tests/conftest.py`` (shared with the backtest tests); throttles start fresh per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from daemon.ratelimit_client import forget_throttles


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    """Throttles are shared per URL across the process; no test may inherit another's gate."""
    forget_throttles()
    yield
    forget_throttles()
