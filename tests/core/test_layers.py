"""Pods and the nodes under them: nodes rise a node lead time early and fall only after pods."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.core.binpack import NodeShape, Resources, nodes_for
from daemon.core.layers import plan_layers

# 4 pods per node: 4 cores minus 0.5 for daemonsets, 0.875 per pod.
SHAPE = NodeShape(Resources(0.875, 2**30), Resources(4.0, 16 * 2**30), Resources(0.5, 0))


@pytest.mark.parametrize(
    ("forecast", "current", "desired", "nodes", "reason", "nodes_forecast"),
    [
        # A rise beyond the pod lead time: nodes first (30 pods -> 8 nodes), pods still 10.
        (3_000.0, 10, 10, 8, "node_forecast", 8),
        # A fall: the running pods keep their nodes until they are gone.
        (500.0, 20, 12, 5, "pods_current", 2),
        # The pod layer wants more now than either (a reactive floor, a schedule's minimum).
        (500.0, 8, 14, 4, "pods_desired", 2),
        # No forecast: the pods' terms still hold, so missing data never removes nodes.
        (None, 9, 9, 3, "pods_current", None),
        (float("nan"), 9, 9, 3, "pods_current", None),
        # Ties go to the plainer explanation.
        (1_200.0, 12, 12, 3, "pods_current", 3),
        (1_600.0, 12, 16, 4, "pods_desired", 4),
        # Zero everywhere: zero nodes.
        (0.0, 0, 0, 0, "pods_current", 0),
    ],
)
def test_the_highest_layer_sets_the_nodes(
    forecast: float | None,
    current: int,
    desired: int,
    nodes: int,
    reason: str,
    nodes_forecast: int | None,
) -> None:
    layers = plan_layers(
        node_lead_forecast=forecast,
        unit_capacity=100.0,
        current_replicas=current,
        pods_desired=desired,
        shape=SHAPE,
    )
    assert (layers.nodes_desired, layers.reason) == (nodes, reason)
    assert layers.nodes_for_forecast == nodes_forecast
    assert layers.reasons == (reason,)


def test_nodes_are_not_bought_for_pods_above_the_pod_maximum() -> None:
    layers = plan_layers(
        node_lead_forecast=10_000.0,
        unit_capacity=100.0,
        current_replicas=4,
        pods_desired=4,
        shape=SHAPE,
        max_pods=20,
    )
    assert (layers.pods_forecast, layers.nodes_desired) == (20, 5)


@pytest.mark.parametrize(
    ("node_min", "node_max", "nodes", "reasons"),
    [
        (0, 5, 5, ("node_forecast", "clamped_max")),
        (10, None, 10, ("node_forecast", "clamped_min")),
        (0, None, 8, ("node_forecast",)),
    ],
)
def test_the_node_groups_bounds_apply_last(
    node_min: int, node_max: int | None, nodes: int, reasons: tuple[str, ...]
) -> None:
    layers = plan_layers(
        node_lead_forecast=3_000.0,
        unit_capacity=100.0,
        current_replicas=10,
        pods_desired=10,
        shape=SHAPE,
        node_min_units=node_min,
        node_max_units=node_max,
    )
    assert (layers.nodes_desired, layers.reasons) == (nodes, reasons)
    assert layers.reason == reasons[-1]


def test_the_result_is_frozen() -> None:
    layers = plan_layers(
        node_lead_forecast=None, unit_capacity=1.0, current_replicas=1, pods_desired=1, shape=SHAPE
    )
    with pytest.raises(AttributeError):
        layers.nodes_desired = 3  # type: ignore[misc]


@given(
    st.one_of(st.none(), st.floats(0.0, 1e5)),
    st.integers(0, 500),
    st.integers(0, 500),
)
def test_nodes_always_hold_the_running_and_the_desired_pods(
    forecast: float | None, current: int, desired: int
) -> None:
    layers = plan_layers(
        node_lead_forecast=forecast,
        unit_capacity=50.0,
        current_replicas=current,
        pods_desired=desired,
        shape=SHAPE,
    )
    assert layers.nodes_desired >= nodes_for(max(current, desired), SHAPE)
    if layers.pods_forecast is not None:
        assert layers.nodes_desired >= nodes_for(layers.pods_forecast, SHAPE)
    assert layers.nodes_desired == max(
        n
        for n in (layers.nodes_for_forecast, layers.nodes_for_current, layers.nodes_for_desired)
        if n is not None
    )
