"""CPU and memory/size amounts as Kubernetes and people write them."""

from __future__ import annotations

import pytest

from daemon.settings import parse_bytes, parse_cpu


@pytest.mark.parametrize(
    ("written", "cores"), [("500m", 0.5), ("2", 2.0), (1.5, 1.5), ("3920m", 3.92), (0, 0.0)]
)
def test_cpu(written: str | float, cores: float) -> None:
    assert parse_cpu(written) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ("512Mi", 512 * 2**20),
        ("4Gi", 4 * 2**30),
        ("1.5Gi", 3 * 2**29),
        ("50MB", 50 * 10**6),
        ("128M", 128 * 10**6),
        (1048576, 1048576),
    ],
)
def test_bytes(written: str | int, size: int) -> None:
    assert parse_bytes(written) == size


@pytest.mark.parametrize("written", ["half", "-1", "1.5x", True, float("nan")])
def test_bad_cpu(written: object) -> None:
    with pytest.raises(ValueError, match="invalid CPU amount"):
        parse_cpu(written)  # type: ignore[arg-type]


@pytest.mark.parametrize("written", ["5Qi", "-1Gi", "Gi", False, float("inf")])
def test_bad_bytes(written: object) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_bytes(written)  # type: ignore[arg-type]
