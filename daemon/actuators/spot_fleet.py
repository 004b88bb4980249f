"""Resize an EC2 Spot Fleet request through ModifySpotFleetRequest ``TargetCapacity``.

Sizes are in the fleet's own capacity units: with weighted launch specifications a unit is
whatever the weights count (a vCPU, a GiB, an instance), so the decision is made in those
units too. The API has no compare-and-set: the write is fenced by the caller's lease deadline
and a fresh read compared with the size the decision was made on (see
:mod:`daemon.actuators.aws`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Unpack

from daemon.actuators.aws import AwsClient, AwsOptions
from daemon.actuators.aws_size import AwsSizeActuator, SizeState, WriteRequest
from daemon.actuators.base import Capacity
from daemon.errors import PermanentActuatorError, TransientActuatorError

# States in which the request's capacity may be changed, and states in which an earlier
# change or the initial launch is still being applied (AWS refuses a modification then).
_WRITABLE = frozenset({"active"})
_BUSY = frozenset({"submitted", "modifying"})


class SpotFleetActuator(AwsSizeActuator):
    """Reads and writes the target capacity of one Spot Fleet request (type ``maintain``).

    Only a ``maintain`` request can be modified (AWS refuses ``request`` and ``instant``
    fleets): any other type is a permanent error. The lower bound is the request's
    ``OnDemandTargetCapacity`` (the total includes it); there is no upper bound of its own, so
    the target's ``max_units`` is the ceiling. ``ready`` is ``FulfilledCapacity`` rounded
    down (in capacity units, possibly fractional with odd weights).
    """

    service: ClassVar[str] = "ec2"

    def __init__(
        self,
        request_id: str,
        **aws: Unpack[AwsOptions],
    ) -> None:
        self.request_id = request_id
        super().__init__(**aws)

    def describe(self) -> str:
        return f"spot fleet {self.request_id}"

    async def read_state(self) -> SizeState:
        fleet = await describe_fleet(self.client, self.request_id, self.describe())
        config: dict[str, Any] = fleet.get("SpotFleetRequestConfig", {})
        fulfilled = float(config.get("FulfilledCapacity", 0.0) or 0.0)
        return SizeState(
            Capacity(
                desired=int(config["TargetCapacity"]),
                ready=math.floor(fulfilled) if math.isfinite(fulfilled) else None,
                min_size=int(config.get("OnDemandTargetCapacity", 0) or 0),
                max_size=None,
            ),
            fleet,
        )

    def write_request(self, applied: int, state: SizeState) -> WriteRequest:
        fleet: dict[str, Any] = state.raw
        fleet_state = str(fleet.get("SpotFleetRequestState", ""))
        if fleet_state in _BUSY:
            raise TransientActuatorError(
                f"{self.describe()} is {fleet_state}: an earlier change is still being "
                "applied; retrying next tick"
            )
        # Only TargetCapacity: ExcessCapacityTerminationPolicy is left as the fleet has it
        # (by default a scale-down terminates the excess instances).
        return WriteRequest(
            "modify_spot_fleet_request",
            "modify",
            {"SpotFleetRequestId": self.request_id, "TargetCapacity": applied},
        )


async def describe_fleet(ec2: AwsClient, request_id: str, what: str) -> dict[str, Any]:
    """The request as DescribeSpotFleetRequests returns it; ``PermanentActuatorError`` if it
    is unknown, cancelled or failed, or not of type ``maintain``."""
    answer = await ec2.call(
        "describe_spot_fleet_requests", f"describe {what}", SpotFleetRequestIds=[request_id]
    )
    fleets: list[dict[str, Any]] = answer.get("SpotFleetRequestConfigs", [])
    # AWS answers an unknown id with InvalidSpotFleetRequestId.NotFound (permanent already);
    # moto with an empty list.
    if not fleets:
        raise PermanentActuatorError(f"{what} not found")
    fleet = fleets[0]
    state = str(fleet.get("SpotFleetRequestState", ""))
    if state not in _WRITABLE | _BUSY:
        raise PermanentActuatorError(f"{what} is {state or 'in an unknown state'}, not active")
    fleet_type = fleet.get("SpotFleetRequestConfig", {}).get("Type", "maintain")
    if fleet_type != "maintain":
        raise PermanentActuatorError(
            f"{what} is of type {fleet_type!r}: only a 'maintain' fleet's capacity can be changed"
        )
    return fleet
