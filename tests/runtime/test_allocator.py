"""The mmap threshold is set in the C library of this (glibc) machine, in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys


def run(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment | env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_fixed_on_glibc_and_left_to_the_environment_when_it_says() -> None:
    code = "from daemon.runtime.allocator import fix_mmap_threshold as f; print(f())"
    assert run(code) == "True"
    assert run(code, MALLOC_MMAP_THRESHOLD_="65536") == "False"
