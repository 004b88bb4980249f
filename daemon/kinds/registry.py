"""Every target kind elasticd knows: one line per kind.

A new kind is its module under ``daemon/kinds/`` (config model, ``build``, permissions,
``explain`` lines; its actuator under ``daemon/actuators/``) plus its line below.
"""

from __future__ import annotations

from typing import Any

from daemon.kinds import (
    asg,
    ecs_service,
    eks_nodegroup,
    emr,
    instance_schedule,
    kubernetes_workload,
    lambda_concurrency,
    placeholder_pods,
    scalable,
    simulator,
    spot_fleet,
)
from daemon.kinds.base import KindSpec

SPECS: tuple[KindSpec[Any], ...] = (
    kubernetes_workload.SPEC,
    eks_nodegroup.SPEC,
    asg.SPEC,
    simulator.SPEC,
    scalable.SPEC,
    placeholder_pods.SPEC,
    emr.SPEC,
    ecs_service.SPEC,
    spot_fleet.SPEC,
    lambda_concurrency.SPEC,
    instance_schedule.SPEC,
)

# kind: value -> its spec
KINDS: dict[str, KindSpec[Any]] = {kind: spec for spec in SPECS for kind in spec.kinds}


def spec_of(kind: str) -> KindSpec[Any]:
    """The spec of ``kind`` (settings validation guarantees it exists)."""
    return KINDS[kind]
