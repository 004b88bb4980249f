"""``kind: instance-schedule``: EC2 instances and RDS databases stopped outside schedule windows
and started a lead time before one opens (the time-based elasticity of AWS Instance Scheduler).

The target's units are the number of its resources running. It reads no demand (its spec is
``demand_free``: demand is zero), so the one decision path gives: inside a window, the
window's ``desired_units`` (or ``min_units``), started ``lead_time`` before the window opens
(the schedules' wake-ahead rule); outside every window, ``min_units`` (0 by default): stopped.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from daemon.kinds.base import BuildContext, Built, KindSpec, Permission
from daemon.settings.base import field_error
from daemon.settings.quantities import Duration, PositiveDuration
from daemon.settings.target_base import TargetBase


class InstanceScheduleTarget(TargetBase):
    """EC2 instances (by ID or tags) and RDS instances or clusters, run by schedule windows."""

    _act_via: ClassVar[frozenset[str]] = frozenset({"replicas"})

    kind: Literal["instance-schedule"]
    # No demand is read: these shared fields have no meaning here, so they default away.
    source: str = Field(default="", description="Not used: an instance schedule reads no demand.")
    unit_capacity: float = Field(
        default=1.0, gt=0, description="Not used: an instance schedule reads no demand."
    )
    min_units: int = Field(
        default=0, ge=0, description="Resources running outside every window; 0 stops them all."
    )
    scale_down_stabilisation: Duration = Field(
        default=0.0,
        description="Seconds a window's end waits before resources stop; 0: at once (a "
        "schedule's end does not waver as a forecast does).",
    )
    ec2_instance_ids: tuple[str, ...] = Field(
        default=(), description="EC2 instance IDs run by the schedule."
    )
    ec2_tags: dict[str, str] = Field(
        default_factory=dict,
        description="EC2 instances carrying all of these tags are run by the schedule too.",
    )
    rds_instances: tuple[str, ...] = Field(
        default=(), description="RDS DB instance identifiers (not Aurora members: use the cluster)."
    )
    rds_clusters: tuple[str, ...] = Field(
        default=(), description="RDS / Aurora DB cluster identifiers."
    )
    refusal_cool_off: PositiveDuration = Field(
        default=3600.0,
        description="Seconds a resource that refused a start or stop (a read replica, stop "
        "protection) is left alone before it is tried again; a changed config retries at once.",
    )

    @model_validator(mode="after")
    def _check_schedule(self) -> Self:
        if not (self.ec2_instance_ids or self.ec2_tags or self.rds_instances or self.rds_clusters):
            raise field_error(
                "ec2_instance_ids", "name at least one resource (ec2_instance_ids, ec2_tags, "
                "rds_instances or rds_clusters)"
            )  # fmt: skip
        if not (self.schedules or self.overrides):
            raise field_error(
                "schedules", "an instance schedule without windows would keep everything stopped"
            )
        if self.source:
            raise field_error("source", "must be omitted: an instance schedule reads no demand")
        if self.query is not None:
            raise field_error("query", "must be omitted: an instance schedule reads no demand")
        return self


async def build(target: InstanceScheduleTarget, context: BuildContext) -> Built:
    from daemon.actuators.instance_schedule import InstanceScheduleActuator, Selection

    selection = Selection(
        ec2_instance_ids=target.ec2_instance_ids,
        ec2_tags=target.ec2_tags or None,
        rds_instances=target.rds_instances,
        rds_clusters=target.rds_clusters,
    )
    actuator = InstanceScheduleActuator(
        target.name,
        selection,
        refusal_cool_off_s=target.refusal_cool_off,
        **context.aws().client_args(),
    )
    return actuator, None


def _details(target: InstanceScheduleTarget) -> list[str]:
    lines = ["  units: resources running; no demand is read, the windows decide"]
    if target.ec2_instance_ids:
        lines.append(f"  EC2 instances: {', '.join(target.ec2_instance_ids)}")
    if target.ec2_tags:
        tags = ", ".join(f"{k}={v}" for k, v in sorted(target.ec2_tags.items()))
        lines.append(f"  EC2 instances tagged: {tags}")
    if target.rds_instances:
        lines.append(f"  RDS instances: {', '.join(target.rds_instances)}")
    if target.rds_clusters:
        lines.append(f"  RDS clusters: {', '.join(target.rds_clusters)}")
    lines.append(
        f"  outside every window {target.min_units} run; each window starts them "
        f"{target.lead_time:g}s early"
    )
    return lines


SPEC = KindSpec(
    kinds=("instance-schedule",),
    config=InstanceScheduleTarget,
    build=build,
    writes="EC2 instances and RDS instances/clusters started or stopped (StartInstances, "
    "StopInstances, Start/StopDBInstance, Start/StopDBCluster)",
    permissions=(
        Permission("aws", "ec2:DescribeInstances", "read the instances' states and tags"),
        Permission("aws", "ec2:StartInstances", "start instances before a window"),
        Permission("aws", "ec2:StopInstances", "stop instances outside the windows"),
        Permission("aws", "rds:DescribeDBInstances", "read the databases' states"),
        Permission("aws", "rds:StartDBInstance", "start databases before a window"),
        Permission("aws", "rds:StopDBInstance", "stop databases outside the windows"),
        Permission("aws", "rds:DescribeDBClusters", "read the clusters' states"),
        Permission("aws", "rds:StartDBCluster", "start clusters before a window"),
        Permission("aws", "rds:StopDBCluster", "stop clusters outside the windows"),
    ),
    typical_lead="EC2 1 - 3 min; RDS 5 - 15 min (Aurora clusters up to 20)",
    unit_name="resources running",
    demand_free=True,
    details=_details,
)
