"""Who else sizes a scalable object: an HPA (``hpa-floor``), or KEDA through its HPA
(``keda-floor``). One decision for every kind with a scale subresource.

Writing the replica count of an object an HPA owns only flaps (each undoes the other's write),
so ``replicas`` is refused there with the mode that works instead; a floor mode without the
autoscaler it needs is refused too. The HPA is found by its ``scaleTargetRef`` (kind and name),
so it works for a Deployment, a StatefulSet or an Argo Rollout alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from daemon.kinds.base import BuildContext, Built
from daemon.kinds.keda_floor import OwnedTarget, keda_build

if TYPE_CHECKING:
    from kubernetes_asyncio import client

    from daemon.actuators.events import KubernetesEventRecorder

__all__ = ["OwnedTarget", "build_with_owners"]

log = logging.getLogger("elasticd.kinds")

FLOOR_MODES = ("hpa-floor", "keda-floor")


async def build_with_owners(
    target: OwnedTarget,
    context: BuildContext,
    api: client.ApiClient,
    kind: str,
    name: str,
    replicas: Callable[[KubernetesEventRecorder], Built],
) -> Built:
    """The actuator for ``target``'s mode on object ``kind``/``name``: ``replicas(recorder)``
    (its own scale subresource), the floor of the HPA that owns it, or the floor of the KEDA
    ScaledObject behind that HPA; ``ConfigError`` where the mode cannot hold."""
    from daemon.actuators.events import KubernetesEventRecorder, ScaleEvents
    from daemon.actuators.floors import HpaFloorActuator, find_owning_hpa
    from daemon.errors import ActuatorError, ConfigError

    where = f"{context.where}.act_via"
    what = f"{kind} {target.namespace}/{name}"
    try:
        owner = await find_owning_hpa(api, target.namespace, kind, name)
    except ActuatorError as error:
        if target.act_via in FLOOR_MODES:
            raise ConfigError(where, f"cannot find the HPA that targets {what}: {error}") from error
        # Without list on HPAs (an older Role) the check cannot be made; scaling the replicas
        # still works, so warn instead of refusing a config that ran before.
        log.warning(
            "cannot check whether an HPA owns %s (%s); writing its replicas anyway",
            what,
            error,
            extra={"target": target.name},
        )
        owner = None
    recorder = KubernetesEventRecorder(api, target.namespace)
    if owner is not None or target.act_via == "keda-floor":
        keda = await keda_build(target, context, api, owner, what, recorder)
        if keda is not None:
            return keda
    if target.act_via == "hpa-floor":
        if owner is None:
            raise ConfigError(where, f"no HPA targets {what}; create one or use act_via: replicas")
        floor = HpaFloorActuator(api, target.namespace, owner)
        return floor, ScaleEvents(recorder, "HorizontalPodAutoscaler", owner, floor=True)
    if owner is not None:
        raise ConfigError(where, f"{what} is owned by HPA {owner}; use act_via: hpa-floor")
    return replicas(recorder)
