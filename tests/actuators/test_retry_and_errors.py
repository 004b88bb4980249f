"""The shared retry policy and the mapping of SDK errors to what the caller should do."""

from __future__ import annotations

import random

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.parsers import ResponseParserError
from kubernetes_asyncio.client.exceptions import ApiException

from daemon.actuators.aws import map_aws_error
from daemon.actuators.base import clamp
from daemon.actuators.kubernetes import map_api_error
from daemon.actuators.retry import RetryPolicy, with_retries
from daemon.errors import (
    ActuatorError,
    ConflictError,
    PermanentActuatorError,
    TransientActuatorError,
)


class Flaky:
    """Fails with the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: ActuatorError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


POLICY = RetryPolicy(attempts=4, base_delay=1.0, max_delay=3.0, rng=random.Random(7))


async def test_transient_errors_are_retried_with_growing_capped_jitter() -> None:
    flaky, sleeps = Flaky(*[TransientActuatorError("x")] * 3), Sleeps()

    assert await with_retries(flaky, POLICY, what="t", sleep=sleeps) == "ok"

    assert flaky.calls == 4
    ceilings = [1.0, 2.0, 3.0]  # base * 2**n, capped by max_delay
    assert all(0 <= d <= c for d, c in zip(sleeps.delays, ceilings, strict=True))


async def test_attempts_are_bounded() -> None:
    flaky, sleeps = Flaky(*[TransientActuatorError("x")] * 9), Sleeps()
    with pytest.raises(TransientActuatorError):
        await with_retries(flaky, POLICY, what="t", sleep=sleeps)
    assert flaky.calls == 4 and len(sleeps.delays) == 3


@pytest.mark.parametrize("error", [PermanentActuatorError("p"), ConflictError("c")])
async def test_permanent_errors_and_conflicts_are_not_retried(error: ActuatorError) -> None:
    flaky, sleeps = Flaky(error), Sleeps()
    with pytest.raises(type(error)):
        await with_retries(flaky, POLICY, what="t", sleep=sleeps)
    assert flaky.calls == 1 and sleeps.delays == []


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (409, ConflictError),
        (404, PermanentActuatorError),
        (403, PermanentActuatorError),
        (422, PermanentActuatorError),
        (429, TransientActuatorError),
        (500, TransientActuatorError),
        (503, TransientActuatorError),
    ],
)
def test_kubernetes_status_codes(status: int, expected: type[ActuatorError]) -> None:
    error = map_api_error(ApiException(status=status, reason="why"), "patch x")
    assert type(error) is expected
    assert str(error) == f"patch x: HTTP {status} why"


def test_kubernetes_timeout_is_transient() -> None:
    assert type(map_api_error(TimeoutError(), "read x")) is TransientActuatorError


def client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Op")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("Throttling", 400), TransientActuatorError),
        (client_error("ThrottlingException", 400), TransientActuatorError),
        (client_error("ResourceInUseException", 409), TransientActuatorError),
        (client_error("ScalingActivityInProgress", 400), TransientActuatorError),
        (client_error("InternalFailure", 500), TransientActuatorError),
        (client_error("Anything", 503), TransientActuatorError),
        (client_error("ResourceNotFoundException", 404), PermanentActuatorError),
        (client_error("ValidationError", 400), PermanentActuatorError),
        (client_error("AccessDeniedException", 403), PermanentActuatorError),
        (ResponseParserError("<html>500</html>"), PermanentActuatorError),
        (NoCredentialsError(), PermanentActuatorError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), TransientActuatorError),
        (TimeoutError(), TransientActuatorError),
    ],
)
def test_aws_errors(error: Exception, expected: type[ActuatorError]) -> None:
    assert type(map_aws_error(error, "op")) is expected


@pytest.mark.parametrize(
    ("desired", "low", "high", "expected"),
    [(5, 1, 10, 5), (0, 1, 10, 1), (11, 1, 10, 10), (-2, None, None, -2), (7, None, 4, 4)],
)
def test_clamp(desired: int, low: int | None, high: int | None, expected: int) -> None:
    assert clamp(desired, low, high) == expected
