"""What one more target costs in memory (issue 10: 1,000 targets within 400 MB).

A random.Random is 2.5 KB of Mersenne Twister state; the daemon built three per target (the
trainer's history retries, the write backoff, the read retry policy) for nothing but jitter.
"""

from __future__ import annotations

import gc
import random
from pathlib import Path

from tests.runtime.test_app import FactoryHarness


def randoms() -> int:
    gc.collect()
    return sum(isinstance(thing, random.Random) for thing in gc.get_objects())


async def test_a_target_brings_no_random_generator_of_its_own(tmp_path: Path) -> None:
    harness = FactoryHarness(tmp_path)
    try:
        targets = [
            {
                "name": f"sim-{i}",
                "kind": "simulator",
                "source": "sim",
                "unit_capacity": 100,
                "min_units": 1,
                "max_units": 10,
                "lead_time": "5m",
            }
            for i in range(5)
        ]
        settings = harness.settings(targets)
        await harness.build(settings)  # the first build creates what targets share
        before = randoms()

        built = await harness.build(settings)

        assert len(built) == 5
        assert randoms() == before
    finally:
        await harness.close()
