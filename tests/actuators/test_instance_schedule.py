"""InstanceScheduleActuator with the real aioboto3 client against moto in server mode (moto
implements every call it makes: Describe/Start/StopInstances with DisableApiStop enforced,
Describe/Start/StopDBInstance with read replicas refused, Describe/Start/StopDBCluster)."""

from __future__ import annotations

import logging
from typing import Any

import boto3
import pytest
from botocore.config import Config

from daemon.actuators.base import Actuator, Capacity
from daemon.actuators.instance_schedule import InstanceScheduleActuator, Selection
from daemon.actuators.retry import RetryPolicy
from daemon.errors import ConflictError, PermanentActuatorError

REGION = "us-east-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _ec2(endpoint: str) -> Any:
    return boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)


def _rds(endpoint: str) -> Any:
    return boto3.client("rds", region_name=REGION, endpoint_url=endpoint)


def _instances(endpoint: str, count: int, tags: dict[str, str], **extra: Any) -> list[str]:
    answer = _ec2(endpoint).run_instances(
        ImageId="ami-12c6146b",
        MinCount=count,
        MaxCount=count,
        InstanceType="t3.micro",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
        **extra,
    )
    return sorted(i["InstanceId"] for i in answer["Instances"])


def _database(endpoint: str, name: str) -> None:
    _rds(endpoint).create_db_instance(
        DBInstanceIdentifier=name,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
    )


def _ec2_states(endpoint: str) -> dict[str, str]:
    answer = _ec2(endpoint).describe_instances()
    return {
        i["InstanceId"]: i["State"]["Name"] for r in answer["Reservations"] for i in r["Instances"]
    }


def _db_status(endpoint: str, name: str) -> str:
    answer = _rds(endpoint).describe_db_instances(DBInstanceIdentifier=name)
    return str(answer["DBInstances"][0]["DBInstanceStatus"])


def _actuator(
    endpoint: str,
    selection: Selection,
    aws_config: Config,
    fast_retry: RetryPolicy,
    clock: Clock | None = None,
) -> InstanceScheduleActuator:
    return InstanceScheduleActuator(
        "dev",
        selection,
        region=REGION,
        endpoint_url=endpoint,
        client_config=aws_config,
        retry=fast_retry,
        refusal_cool_off_s=600.0,
        clock=clock or Clock(),
    )


async def test_stops_and_starts_only_what_must_change(
    moto_endpoint: str, aws_config: Config, fast_retry: RetryPolicy
) -> None:
    tagged = _instances(moto_endpoint, 2, {"env": "dev"})
    listed = _instances(moto_endpoint, 1, {"env": "prod"})
    untouched = _instances(moto_endpoint, 1, {"env": "prod"})
    _database(moto_endpoint, "orders")
    selection = Selection(
        ec2_instance_ids=tuple(listed), ec2_tags={"env": "dev"}, rds_instances=("orders",)
    )
    actuator = _actuator(moto_endpoint, selection, aws_config, fast_retry)
    assert isinstance(actuator, Actuator)
    try:
        assert await actuator.read() == Capacity(desired=4, ready=4, min_size=0, max_size=4)

        stopped = await actuator.scale(0, expected=4)

        assert (stopped.written, stopped.previous, stopped.applied) == (True, 4, 0)
        states = _ec2_states(moto_endpoint)
        assert {states[i] for i in [*tagged, *listed]} == {"stopped"}
        assert states[untouched[0]] == "running"  # not selected: never touched
        assert _db_status(moto_endpoint, "orders") == "stopped"
        assert (await actuator.read()).desired == 0

        # Already in the desired state: nothing is sent.
        again = await actuator.scale(0, expected=0)
        assert (again.written, again.applied) == (False, 0)

        # Two of four, as a window with desired_units 2 asks: the first two keys start.
        partial = await actuator.scale(2, expected=0)
        assert (partial.written, partial.applied) == (True, 2)
        assert (await actuator.read()).desired == 2

        started = await actuator.scale(10, expected=2)  # clamped to what exists
        assert (started.written, started.applied) == (True, 4)
        assert _db_status(moto_endpoint, "orders") == "available"
        assert {_ec2_states(moto_endpoint)[i] for i in [*tagged, *listed]} == {"running"}
    finally:
        await actuator.close()


async def test_a_size_changed_since_the_decision_is_a_conflict(
    moto_endpoint: str, aws_config: Config, fast_retry: RetryPolicy
) -> None:
    ids = _instances(moto_endpoint, 2, {"env": "dev"})
    actuator = _actuator(moto_endpoint, Selection(ec2_tags={"env": "dev"}), aws_config, fast_retry)
    try:
        with pytest.raises(ConflictError):
            await actuator.scale(0, expected=1)
        assert {_ec2_states(moto_endpoint)[i] for i in ids} == {"running"}
    finally:
        await actuator.close()


async def test_refusals_are_reported_remembered_and_retried_after_the_cool_off(
    moto_endpoint: str, aws_config: Config, fast_retry: RetryPolicy
) -> None:
    protected = _instances(moto_endpoint, 1, {"env": "dev"}, DisableApiStop=True)
    plain = _instances(moto_endpoint, 1, {"env": "dev"})
    _database(moto_endpoint, "orders")
    _rds(moto_endpoint).create_db_instance_read_replica(
        DBInstanceIdentifier="orders-replica", SourceDBInstanceIdentifier="orders"
    )
    selection = Selection(ec2_tags={"env": "dev"}, rds_instances=("orders", "orders-replica"))
    clock = Clock()
    actuator = _actuator(moto_endpoint, selection, aws_config, fast_retry, clock)
    try:
        with pytest.raises(PermanentActuatorError) as refused:
            await actuator.scale(0, expected=4)

        # Both refusals named, with AWS's reason; everything else was stopped all the same.
        text = str(refused.value)
        assert protected[0] in text and "orders-replica" in text
        assert set(actuator.refused) == {f"ec2:{protected[0]}", "rds:orders-replica"}
        assert _ec2_states(moto_endpoint)[plain[0]] == "stopped"
        assert _db_status(moto_endpoint, "orders") == "stopped"
        # Left out of the count: the target is at its decision, and nothing is re-sent.
        assert await actuator.read() == Capacity(desired=0, ready=0, min_size=0, max_size=2)
        assert (await actuator.scale(0, expected=0)).written is False

        clock.now += 600.0  # the cool-off is over: tried once more, refused once more
        assert (await actuator.read()).desired == 2
        with pytest.raises(PermanentActuatorError):
            await actuator.scale(0, expected=2)
        assert len(actuator.refused) == 2
    finally:
        await actuator.close()


async def test_a_database_restarted_outside_its_window_is_stopped_again_and_said_why(
    moto_endpoint: str,
    aws_config: Config,
    fast_retry: RetryPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _database(moto_endpoint, "orders")
    _rds(moto_endpoint).create_db_cluster(
        DBClusterIdentifier="reports",
        Engine="aurora-postgresql",
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
    )
    selection = Selection(rds_instances=("orders",), rds_clusters=("reports",))
    actuator = _actuator(moto_endpoint, selection, aws_config, fast_retry)
    try:
        assert (await actuator.scale(0, expected=2)).applied == 0
        # Seven days later RDS starts the database by itself (here: as AWS would, directly).
        _rds(moto_endpoint).start_db_instance(DBInstanceIdentifier="orders")
        assert (await actuator.read()).desired == 1

        with caplog.at_level(logging.WARNING, logger="elasticd.actuators.instance_schedule"):
            result = await actuator.scale(0, expected=1)

        assert (result.written, result.previous, result.applied) == (True, 1, 0)
        assert _db_status(moto_endpoint, "orders") == "stopped"
        again = [r for r in caplog.records if getattr(r, "event", None) == "stopped_again"]
        assert [(r.key, r.stopped_by_elasticd) for r in again] == [("rds:orders", True)]  # type: ignore[attr-defined]
        assert "seven days" in again[0].getMessage()
        cluster = _rds(moto_endpoint).describe_db_clusters(DBClusterIdentifier="reports")
        assert cluster["DBClusters"][0]["Status"] == "stopped"
    finally:
        await actuator.close()
