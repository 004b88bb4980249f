"""KEDA beside a Deployment or StatefulSet target (``act_via: keda-floor``).

A workload a KEDA ScaledObject scales has an HPA that KEDA owns and rewrites from the
ScaledObject, so neither its replicas (the HPA undoes them) nor that HPA's ``minReplicas``
(KEDA undoes it) hold. Given the HPA that targets the workload, :func:`keda_build` finds the
ScaledObject that owns it and either builds the floor on ``spec.minReplicaCount`` (keda-floor)
or refuses at start, naming the ScaledObject and the mode that works.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from daemon.kinds.base import BuildContext, Built, Permission

if TYPE_CHECKING:
    from kubernetes_asyncio import client

    from daemon.actuators.events import KubernetesEventRecorder
    from daemon.kinds.kubernetes_workload import KubernetesWorkloadTarget

__all__ = ["KEDA_PERMISSIONS", "OwnedTarget", "keda_build", "keda_details"]

log = logging.getLogger("elasticd.kinds")

KEDA_PERMISSIONS = (
    Permission("kubernetes", "keda.sh/scaledobjects:get", "act_via: keda-floor reads the floor"),
    Permission(
        "kubernetes", "keda.sh/scaledobjects:patch", "act_via: keda-floor raises minReplicaCount"
    ),
)


class OwnedTarget(Protocol):
    """What the decision reads of a target: its name, namespace and mode."""

    @property
    def name(self) -> str: ...

    @property
    def namespace(self) -> str: ...

    @property
    def act_via(self) -> str: ...


async def keda_build(
    target: OwnedTarget,
    context: BuildContext,
    api: client.ApiClient,
    hpa: str | None,
    workload: str,
    recorder: KubernetesEventRecorder,
) -> Built | None:
    """The keda-floor actuator; ``ConfigError`` where KEDA makes the target's mode futile;
    None when KEDA is not involved (the caller goes on as before).

    ``hpa``: the HPA that targets the object, if any; ``workload``: ``Deployment ns/name``.
    """
    from daemon.actuators.events import ScaleEvents
    from daemon.actuators.keda import (
        KEDA_GROUP,
        KEDA_VERSION,
        KedaFloorActuator,
        keda_scaled_object,
        scaled_object_ref,
    )
    from daemon.errors import ActuatorError, ConfigError

    where = f"{context.where}.act_via"
    keda_floor = target.act_via == "keda-floor"
    scaled: str | None = None
    if hpa is not None:
        try:
            scaled = await keda_scaled_object(api, target.namespace, hpa)
        except ActuatorError as error:
            if keda_floor:
                raise ConfigError(where, f"cannot read HPA {hpa} of {workload}: {error}") from error
            log.warning(
                "cannot check whether KEDA owns HPA %s of %s (%s)",
                hpa,
                workload,
                error,
                extra={"target": target.name},
            )
            return None
    if keda_floor:
        if scaled is None:
            found = f"its HPA {hpa} is not KEDA's" if hpa is not None else "no HPA targets it"
            raise ConfigError(
                where,
                f"no KEDA ScaledObject scales {workload} ({found}); use act_via: hpa-floor "
                "or replicas",
            )
        floor = KedaFloorActuator(api, scaled_object_ref(target.namespace, scaled))
        events = ScaleEvents(
            recorder, "ScaledObject", scaled, floor=True, api_version=f"{KEDA_GROUP}/{KEDA_VERSION}"
        )
        return floor, events
    if scaled is not None:
        raise ConfigError(
            where,
            f"{workload} is scaled by KEDA ScaledObject {target.namespace}/{scaled}, which owns "
            f"HPA {hpa} and rewrites it (a raised minReplicas would not hold); use "
            "act_via: keda-floor to raise the ScaledObject's minReplicaCount",
        )
    return None


def keda_details(target: KubernetesWorkloadTarget, kind: str) -> list[str]:
    """``explain`` lines of a keda-floor target."""
    return [
        f"  writes: minReplicaCount of the KEDA ScaledObject that scales {kind} "
        f"{target.namespace}/{target.workload} (found through its HPA's owner)"
    ]
