"""``kind: spot-fleet``: an EC2 Spot Fleet request's TargetCapacity, in its capacity units."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.settings.target_base import TargetBase


class SpotFleetTarget(TargetBase):
    """An EC2 Spot Fleet request of type ``maintain``, resized through its TargetCapacity.

    Units are the fleet's capacity units: with weighted capacity (``WeightedCapacity`` on its
    launch specifications) one unit is what a weight of 1 stands for, often a vCPU, so
    ``unit_capacity`` is the demand one capacity unit serves, and ``min_units`` /
    ``max_units`` are in capacity units too.
    """

    kind: Literal["spot-fleet"]
    spot_fleet_request_id: str = Field(
        pattern=r"^sfr-[0-9a-f-]+$", description="Spot Fleet request ID (sfr-...)."
    )


async def build(target: SpotFleetTarget, context: BuildContext) -> Built:
    from daemon.actuators.spot_fleet import SpotFleetActuator

    return SpotFleetActuator(target.spot_fleet_request_id, **context.aws().client_args()), None


def _details(target: SpotFleetTarget) -> list[str]:
    return [
        f"  writes: TargetCapacity of Spot Fleet request {target.spot_fleet_request_id}",
        "  units: the fleet's capacity units (its WeightedCapacity; a vCPU when weighted by "
        "vCPU); unit_capacity is the demand one capacity unit serves",
        "  ready: FulfilledCapacity; bounds: OnDemandTargetCapacity .. max_units",
    ]


SPEC = KindSpec(
    kinds=("spot-fleet",),
    config=SpotFleetTarget,
    build=build,
    writes="the Spot Fleet request's TargetCapacity, in its capacity units",
    permissions=(
        Permission("aws", "ec2:DescribeSpotFleetRequests", "read target and fulfilled capacity"),
        Permission("aws", "ec2:ModifySpotFleetRequest", "write TargetCapacity"),
    ),
    typical_lead="2 - 5 min (Spot request fulfilment, instance boot)",
    node_units=False,
    unit_name="capacity units",
    details=_details,
)
