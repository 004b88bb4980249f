"""Cap native thread pools (OpenMP, BLAS) around fitting and prediction.

scikit-learn's OpenMP pool spins on a busy 2-core machine: a fit that takes 0.4 s alone took
over 70 s beside another busy process. One thread per fit is both faster and predictable there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

# Imported for its side effect: the OpenMP runtime scikit-learn ships is loaded, so the
# controller below finds it when it scans the process once.
import sklearn.ensemble  # noqa: F401
from threadpoolctl import ThreadpoolController

DEFAULT_NATIVE_THREADS = 1


@cache
def _controller() -> ThreadpoolController:
    # Scanning the loaded libraries costs about 2 ms; a daemon predicting one row per target
    # per minute paid that on every prediction (13 % of its CPU with 1,000 targets). Scan once.
    return ThreadpoolController()


@contextmanager
def capped_threads(limit: int = DEFAULT_NATIVE_THREADS) -> Iterator[None]:
    """Run the body with every native pool limited to ``limit`` threads."""
    with _controller().limit(limits=limit):
        yield
