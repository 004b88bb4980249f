"""``kind: lambda-provisioned-concurrency``: a Lambda alias's or version's provisioned
concurrency, in concurrent executions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.settings.quantities import PositiveDuration
from daemon.settings.target_base import TargetBase


class LambdaConcurrencyTarget(TargetBase):
    """Provisioned concurrency of one Lambda function alias or published version.

    One unit is one concurrent execution, so ``unit_capacity`` is the demand one execution
    environment serves (for requests/s: about 1 / the function's average duration in
    seconds). 0 units deletes the config (AWS has no provisioned concurrency of 0).
    """

    kind: Literal["lambda-provisioned-concurrency"]
    function_name: str = Field(min_length=1, description="Function name or ARN.")
    qualifier: str = Field(
        min_length=1,
        description="Alias name or published version number; not $LATEST (AWS refuses it).",
    )
    allocation_timeout: PositiveDuration = Field(
        default=900.0,
        description="Seconds an allocation may stay IN_PROGRESS before the target reports it "
        "as stuck (AWS typically needs one to a few minutes).",
    )

    @field_validator("qualifier")
    @classmethod
    def _published(cls, value: str) -> str:
        if value == "$LATEST":
            raise ValueError(
                "$LATEST cannot have provisioned concurrency; name an alias or version"
            )
        return value


async def build(target: LambdaConcurrencyTarget, context: BuildContext) -> Built:
    from daemon.actuators.lambda_concurrency import LambdaConcurrencyActuator

    actuator = LambdaConcurrencyActuator(
        target.function_name,
        target.qualifier,
        allocation_timeout=target.allocation_timeout,
        **context.aws().client_args(),
    )
    return actuator, None


def _details(target: LambdaConcurrencyTarget) -> list[str]:
    return [
        f"  writes: provisioned concurrency of {target.function_name}:{target.qualifier} "
        "(PutProvisionedConcurrencyConfig; 0 deletes the config)",
        "  units: concurrent executions; ready: allocated while READY",
        "  bounds: 0 .. the function's reserved concurrency if set (GetFunctionConcurrency), "
        "else the account's unreserved concurrency - 100 (GetAccountSettings)",
        f"  an allocation IN_PROGRESS over {target.allocation_timeout:g}s, or FAILED, is "
        "reported on the target",
    ]


SPEC = KindSpec(
    kinds=("lambda-provisioned-concurrency",),
    config=LambdaConcurrencyTarget,
    build=build,
    writes="provisioned concurrency of a function alias or version",
    permissions=(
        Permission("aws", "lambda:GetProvisionedConcurrencyConfig", "read requested/allocated"),
        Permission("aws", "lambda:PutProvisionedConcurrencyConfig", "write the concurrency"),
        Permission("aws", "lambda:DeleteProvisionedConcurrencyConfig", "write 0"),
        Permission("aws", "lambda:GetFunctionConcurrency", "read the reserved concurrency bound"),
        Permission("aws", "lambda:GetAccountSettings", "read the unreserved concurrency bound"),
    ),
    typical_lead="1 - 5 min (IN_PROGRESS until READY; longer for thousands of environments)",
    unit_name="concurrent executions",
    details=_details,
)
