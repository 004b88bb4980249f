"""The EC2 side of releasing idle instances: which running instances a rule may stop, and the
stop itself (one ``StopInstances`` per instance, written once, fenced by the lease deadline).
Whether an instance is idle is decided elsewhere (``daemon.core.idle``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aioboto3
from botocore.config import Config

from daemon.actuators.aws import AwsClient
from daemon.actuators.retry import RetryPolicy, WriteGuard

__all__ = ["IdleCandidates", "IdleInstances"]


@dataclass(frozen=True, slots=True)
class IdleCandidates:
    """Running instances the rule selects: those it may stop, and those its exclusion tag keeps."""

    checked: tuple[str, ...]
    excluded: tuple[str, ...]


class IdleInstances:
    """Lists and stops the EC2 instances of one idle-release rule."""

    def __init__(
        self,
        name: str,
        tags: Mapping[str, str],
        exclude_tag: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        session: aioboto3.Session | None = None,
        client_config: Config | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.tags = dict(tags)
        self.exclude_tag = exclude_tag
        self.ec2 = AwsClient(
            "ec2",
            region=region,
            endpoint_url=endpoint_url,
            session=session,
            client_config=client_config,
            retry=retry,
        )
        self._guard = WriteGuard(f"idle release {name}")

    async def candidates(self) -> IdleCandidates:
        """The running instances carrying every tag of the rule."""
        filters: list[dict[str, Any]] = [
            {"Name": f"tag:{key}", "Values": [value]} for key, value in sorted(self.tags.items())
        ]
        filters.append({"Name": "instance-state-name", "Values": ["running"]})
        checked: list[str] = []
        excluded: list[str] = []
        token: str | None = None
        while True:
            extra = {"NextToken": token} if token else {}
            answer = await self.ec2.call(
                "describe_instances",
                f"describe instances of idle release {self.name}",
                Filters=filters,
                **extra,
            )
            for reservation in answer.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    tags = {t.get("Key") for t in instance.get("Tags", [])}
                    keep = self.exclude_tag in tags
                    (excluded if keep else checked).append(str(instance["InstanceId"]))
            token = answer.get("NextToken")
            if not token:
                return IdleCandidates(tuple(sorted(checked)), tuple(sorted(excluded)))

    async def stop(self, instance_id: str, *, deadline: float | None = None) -> None:
        """Stop one instance: sent once, never after ``deadline``; ``ActuatorError`` if refused."""
        self.ec2.ensure_writable(f"stop idle instance {instance_id}")
        await self.ec2.write(
            "stop_instances",
            f"stop idle instance {instance_id}",
            self._guard,
            deadline,
            InstanceIds=[instance_id],
        )

    async def close(self) -> None:
        await self.ec2.close()
