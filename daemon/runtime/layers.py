"""Pods and nodes, one plan: the pod target plans its nodes, the node target takes them as a floor.

A Deployment with a ``node_group`` link forecasts its own demand a second time, over the node
group's (longer) lead time, and each pod tick turns that into a ``LayerPlan``
(:func:`daemon.core.layers.plan_layers`). The plan is posted on a ``LayerBoard`` under the node
target's name; the node target's reconciler reads it on its next tick and uses the nodes the
pods need as its minimum for that tick, so the node planner's own damping (stabilisation, rate
limits, bounds) still applies on top.

Two agents, one board: the pod and node reconcilers tick on their own intervals, so the board
holds each pod target's latest plan with an expiry. A plan that is not refreshed (the pod
target stopped, or was removed by a reload) stops holding nodes up once it expires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from daemon.core.binpack import NodeShape, Resources
from daemon.core.conformal import ConformalTracker, grid_index
from daemon.core.layers import LayerPlan, plan_layers
from daemon.forecasting import TargetForecaster
from daemon.runtime.planning import schedule_at
from daemon.settings import NodeGroupLink, TargetConfig
from models.calibration import CalibrationState, calibrated

__all__ = [
    "NODE_MODEL_SUFFIX",
    "LayerBoard",
    "NodeLink",
    "NodeRequest",
    "node_shape",
]

NODE_MODEL_SUFFIX = "+nodes"
"""The node-lead forecaster of pod target ``web`` is trained and saved as ``web+nodes``: a
character no target name may contain, so it never shares a model file (or metric labels) with
a node target a user named ``web-nodes``, as the Kubernetes example does."""


@dataclass(frozen=True, slots=True)
class NodeRequest:
    """One pod target's latest plan for the node target it runs on."""

    pod_target: str
    at: float
    """The pod tick's time, on the targets' clock."""
    expires: float
    plan: LayerPlan


class LayerBoard:
    """The latest ``NodeRequest`` of each pod target, by node target; one per daemon."""

    def __init__(self) -> None:
        self._requests: dict[str, dict[str, NodeRequest]] = {}

    def publish(self, node_target: str, request: NodeRequest) -> None:
        self._requests.setdefault(node_target, {})[request.pod_target] = request

    def fresh(self, node_target: str, now: float) -> list[NodeRequest]:
        """The unexpired requests for ``node_target``, by pod target name."""
        requests = self._requests.get(node_target, {})
        return [requests[name] for name in sorted(requests) if requests[name].expires >= now]


def node_shape(link: NodeGroupLink) -> NodeShape:
    """The link's settings in the core's terms."""
    return NodeShape(
        Resources(link.pod_requests.cpu, link.pod_requests.memory),
        Resources(link.node_allocatable.cpu, link.node_allocatable.memory),
        Resources(link.node_overhead.cpu, link.node_overhead.memory),
    )


@dataclass
class NodeLink:
    """What a pod reconciler needs to plan the nodes under it."""

    pod_target: TargetConfig
    node_target: TargetConfig
    shape: NodeShape
    forecaster: TargetForecaster
    """Trained on the pod demand, forecasting over the node plus pod lead time."""
    board: LayerBoard
    tracker: ConformalTracker
    """The node-lead forecast's conformal offset (the one streaming implementation)."""

    def plan(
        self,
        now: float,
        calibration: CalibrationState,
        current_replicas: int,
        pods_desired: int,
        *,
        pods_forecast: float | None = None,
        demand: float | None = None,
        sample_time: float | None = None,
    ) -> tuple[LayerPlan, float | None]:
        """The plan for this pod tick (posted on the board) and the node-lead forecast used.

        ``calibration``: the pod tick's state; its integral (driven by the pods' short steps)
        applies to the node-lead forecast too, with the node forecaster's own residuals as
        the conformal part (``demand`` at ``sample_time`` resolves its forecasts).
        ``pods_forecast``: the pod tick's own calibrated forecast, a
        lower bound of the node-lead one.
        """
        base, rung = self.forecaster.forecast(now)
        step = self.tracker.settings.step_s
        at = now if sample_time is None else sample_time
        offset = self.tracker.update(grid_index(at, step), demand, base, rung)
        forecast: float | None = None
        if base is not None and math.isfinite(base):
            state = replace(calibration, conformal=offset)
            forecast = calibrated(base, state, self.forecaster.calibration_settings())
        if pods_forecast is not None and math.isfinite(pods_forecast):
            # The node-lead window contains the pods' own, so its peak is at least theirs: two
            # models that disagree must not leave the nodes behind the pods they host.
            forecast = pods_forecast if forecast is None else max(forecast, pods_forecast)
        nodes = self.node_target
        # The node group's own schedule, a node lead time early, bounds what is asked of it.
        low, high = schedule_at(nodes, now).plan_bounds
        plan = plan_layers(
            node_lead_forecast=forecast,
            unit_capacity=self.pod_target.unit_capacity,
            current_replicas=current_replicas,
            pods_desired=pods_desired,
            shape=self.shape,
            max_pods=self.pod_target.max_units,
            node_min_units=low,
            node_max_units=high,
        )
        # Held as long as a demand sample stays usable: a stopped pod target's plan lapses.
        expires = now + self.pod_target.max_demand_age
        self.board.publish(nodes.name, NodeRequest(self.pod_target.name, now, expires, plan))
        return plan, forecast
