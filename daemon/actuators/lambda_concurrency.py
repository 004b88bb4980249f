"""Set a Lambda function's provisioned concurrency on one alias or version.

One unit is one concurrent execution (a pre-initialised execution environment). A size is
written with PutProvisionedConcurrencyConfig, and 0 with DeleteProvisionedConcurrencyConfig
(AWS refuses a provisioned concurrency of 0). After a write AWS reports the config
``IN_PROGRESS`` until the environments are initialised, then ``READY`` (or ``FAILED``): that
allocation is this kind's lead time.

What the daemon sees:

- ``desired`` is ``RequestedProvisionedConcurrentExecutions`` (0 when nothing is configured);
  ``ready`` is ``AllocatedProvisionedConcurrentExecutions`` while ``READY`` and
  ``AvailableProvisionedConcurrentExecutions`` while ``IN_PROGRESS`` (what serves meanwhile).
- The upper bound is the function's reserved concurrency when it has one
  (GetFunctionConcurrency: provisioned concurrency is part of it), else the account's
  unreserved concurrency minus the 100 AWS keeps for functions without reserved concurrency
  (GetAccountSettings). Other aliases' provisioned concurrency shares either pool, so AWS may
  still refuse less; its error is reported.
- ``IN_PROGRESS``: no write (AWS answers ResourceConflictException to a change while one is in
  progress); it is retried next tick. Past ``allocation_timeout`` since ``LastModified`` the
  read fails (transient), so a stuck allocation shows on ``/readyz`` and in the audit log.
- ``FAILED``: the read fails permanently with AWS's ``StatusReason``; nothing is written until
  someone fixes the cause and puts or deletes the config (the daemon will not retry a request
  AWS has refused to allocate, forever).
- Every status change is logged (event ``provisioned_concurrency_status``).

The API has no compare-and-set: the write is fenced by the caller's lease deadline and a fresh
read compared with the size the decision was made on (see :mod:`daemon.actuators.aws`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Unpack

from botocore.exceptions import ClientError

from daemon.actuators.aws import AwsOptions
from daemon.actuators.aws_size import AwsSizeActuator, SizeState, WriteRequest
from daemon.actuators.base import Capacity, ScaleResult
from daemon.errors import PermanentActuatorError, TransientActuatorError

log = logging.getLogger(__name__)

# AWS keeps this much of the account's concurrency for functions without reserved concurrency.
UNRESERVED_MINIMUM = 100
# How long an allocation may stay IN_PROGRESS before it is reported as stuck: AWS typically
# takes one to a few minutes, longer for thousands of environments.
DEFAULT_ALLOCATION_TIMEOUT_S = 900.0


class LambdaConcurrencyActuator(AwsSizeActuator):
    """Reads and writes the provisioned concurrency of one function alias or version."""

    service: ClassVar[str] = "lambda"

    def __init__(
        self,
        function_name: str,
        qualifier: str,
        *,
        allocation_timeout: float = DEFAULT_ALLOCATION_TIMEOUT_S,
        wall_clock: Callable[[], float] = time.time,
        **aws: Unpack[AwsOptions],
    ) -> None:
        """``allocation_timeout``: seconds an allocation may stay IN_PROGRESS before it is
        reported as stuck; ``wall_clock``: epoch seconds, compared with ``LastModified``."""
        self.function_name = function_name
        self.qualifier = qualifier
        self.allocation_timeout = allocation_timeout
        self._wall_clock = wall_clock
        self._last_status: str | None = None
        super().__init__(**aws)

    def describe(self) -> str:
        return f"lambda {self.function_name}:{self.qualifier} provisioned concurrency"

    async def read_state(self) -> SizeState:
        config = await self._config()
        limit = await self._limit()
        status = str(config.get("Status", "NONE")) if config is not None else "NONE"
        self._report(status, config)
        if config is None:
            return SizeState(Capacity(desired=0, ready=0, min_size=0, max_size=limit), None)
        requested = int(config.get("RequestedProvisionedConcurrentExecutions", 0))
        if status == "FAILED":
            reason = config.get("StatusReason") or "no reason given"
            raise PermanentActuatorError(
                f"{self.describe()}: allocation of {requested} FAILED: {reason}; fix the cause, "
                "then put or delete the config"
            )
        if status == "IN_PROGRESS":
            waited = self._in_progress_for(config)
            if waited is not None and waited > self.allocation_timeout:
                raise TransientActuatorError(
                    f"{self.describe()}: allocation of {requested} still IN_PROGRESS after "
                    f"{waited:.0f}s (allocation_timeout {self.allocation_timeout:g}s)"
                )
            ready = int(config.get("AvailableProvisionedConcurrentExecutions", 0))
        else:
            ready = int(config.get("AllocatedProvisionedConcurrentExecutions", 0))
        return SizeState(
            Capacity(desired=requested, ready=ready, min_size=0, max_size=limit), config
        )

    def write_request(self, applied: int, state: SizeState) -> WriteRequest:
        config: dict[str, Any] | None = state.raw
        if config is not None and config.get("Status") == "IN_PROGRESS":
            raise TransientActuatorError(
                f"{self.describe()}: an allocation is IN_PROGRESS; AWS accepts no change "
                "until it is READY, retrying next tick"
            )
        target = {"FunctionName": self.function_name, "Qualifier": self.qualifier}
        if applied == 0:
            # 0 is not a valid provisioned concurrency: no config is how AWS says "none".
            return WriteRequest("delete_provisioned_concurrency_config", "delete", target)
        return WriteRequest(
            "put_provisioned_concurrency_config",
            "put",
            target | {"ProvisionedConcurrentExecutions": applied},
        )

    async def scale(
        self, desired: int, *, expected: int | None = None, deadline: float | None = None
    ) -> ScaleResult:
        try:
            result = await super().scale(desired, expected=expected, deadline=deadline)
        except PermanentActuatorError as error:
            # Another writer (a console user, Application Auto Scaling) started an allocation
            # between our read and our write: busy, not broken; the next tick reads its status.
            if _code(error) == "ResourceConflictException":
                raise TransientActuatorError(str(error)) from error
            raise
        if result.written:
            # AWS answers every accepted put IN_PROGRESS; say so now, as the allocation may be
            # READY before the next read and its start would then never be logged.
            status = "IN_PROGRESS" if result.applied > 0 else "NONE"
            self._report(status, {"RequestedProvisionedConcurrentExecutions": result.applied})
        return result

    async def _config(self) -> dict[str, Any] | None:
        """The config of the alias or version; None when none is configured."""
        try:
            return await self.client.call(
                "get_provisioned_concurrency_config",
                f"read {self.describe()}",
                FunctionName=self.function_name,
                Qualifier=self.qualifier,
            )
        except PermanentActuatorError as error:
            # "Nothing configured" is a size (0), not an error; a missing function or alias
            # (ResourceNotFoundException) stays permanent.
            if _code(error) == "ProvisionedConcurrencyConfigNotFoundException":
                return None
            raise

    async def _limit(self) -> int:
        """The most provisioned concurrency AWS can allocate to the function."""
        reserved = await self.client.call(
            "get_function_concurrency",
            f"read {self.describe()} reserved concurrency",
            FunctionName=self.function_name,
        )
        if reserved.get("ReservedConcurrentExecutions") is not None:
            return int(reserved["ReservedConcurrentExecutions"])
        settings = await self.client.call("get_account_settings", f"read {self.describe()} limit")
        unreserved = int(settings.get("AccountLimit", {}).get("UnreservedConcurrentExecutions", 0))
        return max(0, unreserved - UNRESERVED_MINIMUM)

    def _in_progress_for(self, config: dict[str, Any]) -> float | None:
        stamp = config.get("LastModified")
        if not isinstance(stamp, str):
            return None
        try:
            modified = datetime.fromisoformat(stamp)
        except ValueError:
            return None
        return self._wall_clock() - modified.timestamp()

    def _report(self, status: str, config: dict[str, Any] | None) -> None:
        """Log each status change, so an allocation's progress (and its end) is visible."""
        if status == self._last_status:
            return
        self._last_status = status
        config = config or {}
        level = logging.WARNING if status == "FAILED" else logging.INFO
        log.log(
            level,
            "%s: %s (requested %s, allocated %s)%s",
            self.describe(),
            status,
            config.get("RequestedProvisionedConcurrentExecutions", 0),
            config.get("AllocatedProvisionedConcurrentExecutions", 0),
            f": {config['StatusReason']}" if config.get("StatusReason") else "",
            extra={
                "event": "provisioned_concurrency_status",
                "status": status,
                "actuator": self.describe(),
            },
        )


def _code(error: BaseException) -> str:
    """The AWS error code behind a mapped error, if it came from a ClientError."""
    cause = error.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""
