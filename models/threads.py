"""Cap native thread pools (OpenMP, BLAS) around fitting and prediction.

scikit-learn's OpenMP pool spins on a busy 2-core machine: a fit that takes 0.4 s alone took
over 70 s beside another busy process. One thread per fit is both faster and predictable there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

DEFAULT_NATIVE_THREADS = 1


@contextmanager
def capped_threads(limit: int = DEFAULT_NATIVE_THREADS) -> Iterator[None]:
    """Run the body with every native pool limited to ``limit`` threads."""
    with threadpool_limits(limits=limit):
        yield
