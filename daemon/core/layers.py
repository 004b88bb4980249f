"""One plan for pods and the nodes under them.

Nodes take longer to arrive than pods, so the node layer plans over its own, longer lead time
(the node lead plus the pod lead: pods need their nodes when they are asked for, a pod lead
before their demand): nodes desired = max(nodes for the pods forecast over that lead time,
nodes for the current replicas, nodes for the pods desired now). The first term raises the
node group a node lead time before the replicas it must host; the second keeps nodes under
pods that still run, so nodes go only after their pods are gone; the third covers a pod
decision the forecast did not foresee (a reactive floor, a schedule's minimum). Each term's
reason names the layer: ``node_forecast``, ``pods_current``, ``pods_desired``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from daemon.core.binpack import NodeShape, nodes_for
from daemon.core.reactive import units_to_serve

__all__ = ["LayerPlan", "LayerReason", "plan_layers"]


class LayerReason(StrEnum):
    """Which layer set the node count."""

    NODE_FORECAST = "node_forecast"
    """Pods forecast over the node lead time: nodes ahead of the pods."""
    PODS_CURRENT = "pods_current"
    """The replicas running now: nodes never leave before their pods."""
    PODS_DESIRED = "pods_desired"
    """The pod layer's decision this tick."""
    CLAMPED_MIN = "clamped_min"
    """Raised to the node group's minimum."""
    CLAMPED_MAX = "clamped_max"
    """Lowered to the node group's maximum: some planned pods may stay pending."""


@dataclass(frozen=True, slots=True)
class LayerPlan:
    """Desired capacity of both layers and why."""

    pods_desired: int
    """The pod layer's desired replicas (its planner's decision), passed through."""
    pods_forecast: int | None
    """Pods the forecast over the node lead time needs (capped at the pod max); None = none."""
    nodes_for_forecast: int | None
    """Nodes for ``pods_forecast``; None without a forecast."""
    nodes_for_current: int
    """Nodes for the current replicas."""
    nodes_for_desired: int
    """Nodes for ``pods_desired``."""
    nodes_desired: int
    """Nodes the node group should have."""
    reason: str
    """The reason that set ``nodes_desired`` (a ``LayerReason`` value)."""
    reasons: tuple[str, ...]
    """The driving layer, then a clamp if one applied."""


def plan_layers(
    *,
    node_lead_forecast: float | None,
    unit_capacity: float,
    current_replicas: int,
    pods_desired: int,
    shape: NodeShape,
    max_pods: int | None = None,
    node_min_units: int = 0,
    node_max_units: int | None = None,
) -> LayerPlan:
    """Plan the nodes under a pod workload.

    ``node_lead_forecast``: calibrated peak demand over ``(now, now + node lead]``; None or an
    unusable value drops that term (the pods still hold their nodes, so missing data never
    removes nodes). ``pods_desired``: the pod target's ``Decision.desired`` this tick (planned
    over the pod lead time). ``max_pods``: pods can never exceed it, so nodes are not bought
    for more. ``node_min_units``/``node_max_units``: the node group's own bounds.
    """
    if current_replicas < 0 or pods_desired < 0:
        raise ValueError("current_replicas and pods_desired must be >= 0")
    pods_forecast: int | None = None
    nodes_forecast: int | None = None
    if node_lead_forecast is not None and math.isfinite(node_lead_forecast):
        pods_forecast = units_to_serve(max(node_lead_forecast, 0.0), unit_capacity)
        if max_pods is not None:
            pods_forecast = min(pods_forecast, max_pods)
        nodes_forecast = nodes_for(pods_forecast, shape)
    nodes_current = nodes_for(current_replicas, shape)
    nodes_desired_pods = nodes_for(pods_desired, shape)

    # Ties go to the plainer explanation: nothing is anticipated if the pods already need it.
    nodes, reason = nodes_current, LayerReason.PODS_CURRENT
    if nodes_desired_pods > nodes:
        nodes, reason = nodes_desired_pods, LayerReason.PODS_DESIRED
    if nodes_forecast is not None and nodes_forecast > nodes:
        nodes, reason = nodes_forecast, LayerReason.NODE_FORECAST
    reasons = [reason]
    if node_max_units is not None and nodes > node_max_units:
        nodes, reason = node_max_units, LayerReason.CLAMPED_MAX
        reasons.append(reason)
    elif nodes < node_min_units:
        nodes, reason = node_min_units, LayerReason.CLAMPED_MIN
        reasons.append(reason)
    return LayerPlan(
        pods_desired=pods_desired,
        pods_forecast=pods_forecast,
        nodes_for_forecast=nodes_forecast,
        nodes_for_current=nodes_current,
        nodes_for_desired=nodes_desired_pods,
        nodes_desired=nodes,
        reason=reason,
        reasons=tuple(reasons),
    )
