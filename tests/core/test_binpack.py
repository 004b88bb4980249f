"""Bin-packing identical pods onto nodes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.core.binpack import NodeShape, Resources, nodes_for, pods_per_node

GI = 2**30


def shape(
    pod: tuple[float, float],
    node: tuple[float, float],
    overhead: tuple[float, float] = (0.0, 0.0),
) -> NodeShape:
    return NodeShape(Resources(*pod), Resources(*node), Resources(*overhead))


@pytest.mark.parametrize(
    ("pod", "node", "overhead", "per_node"),
    [
        # CPU-bound: 3.5 free cores / 0.5 = 7; memory would allow 14.
        ((0.5, 1 * GI), (4.0, 16 * GI), (0.5, 2 * GI), 7),
        # Memory-bound: (16 - 2) Gi / 3 Gi = 4.67 -> 4.
        ((0.25, 3 * GI), (4.0, 16 * GI), (0.0, 2 * GI), 4),
        # Float noise is not a lost pod: (4 - 0.4) / 0.9 is 3.9999999999999996.
        ((0.9, 0), (4.0, GI), (0.4, 0), 4),
        # An unrequested resource places no limit.
        ((1.0, 0), (8.0, 0), (0.0, 0), 8),
        ((0, GI), (0, 8 * GI), (0, 0), 8),
        # Exactly one fits.
        ((4.0, 16 * GI), (4.0, 16 * GI), (0, 0), 1),
    ],
)
def test_pods_per_node(
    pod: tuple[float, float],
    node: tuple[float, float],
    overhead: tuple[float, float],
    per_node: int,
) -> None:
    assert pods_per_node(shape(pod, node, overhead)) == per_node


@pytest.mark.parametrize(("pods", "nodes"), [(0, 0), (1, 1), (7, 1), (8, 2), (14, 2), (15, 3)])
def test_nodes_for_rounds_up(pods: int, nodes: int) -> None:
    assert nodes_for(pods, shape((0.5, GI), (4.0, 16 * GI), (0.5, 2 * GI))) == nodes


@pytest.mark.parametrize(
    ("pod", "node", "overhead", "message"),
    [
        ((5.0, GI), (4.0, 16 * GI), (0, 0), "does not fit"),
        # Fits the node, but not beside the daemonsets.
        ((1.0, 15 * GI), (4.0, 16 * GI), (0.0, 2 * GI), "does not fit"),
        ((0, 0), (4.0, 16 * GI), (0, 0), "request cpu or memory"),
    ],
)
def test_refuses_a_pod_that_cannot_be_placed(
    pod: tuple[float, float], node: tuple[float, float], overhead: tuple[float, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        nodes_for(0, shape(pod, node, overhead))


def test_refuses_negative_or_non_finite_amounts() -> None:
    with pytest.raises(ValueError, match="cpu"):
        Resources(cpu=-1.0)
    with pytest.raises(ValueError, match="memory"):
        Resources(memory=math.inf)
    with pytest.raises(ValueError, match="pods"):
        nodes_for(-1, shape((1, 0), (2, 0)))


requests = st.integers(1, 64).map(lambda n: n / 8)  # 0.125 .. 8 cores


@given(st.integers(0, 10_000), requests, requests, st.integers(8, 256).map(lambda n: n / 4))
def test_the_nodes_hold_the_pods_and_one_fewer_would_not(
    pods: int, cpu: float, mem_gi: float, node_cpu: float
) -> None:
    node = NodeShape(Resources(cpu, mem_gi * GI), Resources(max(node_cpu, cpu), 64 * GI))
    per_node = pods_per_node(node)
    nodes = nodes_for(pods, node)
    assert nodes * per_node >= pods
    assert (nodes - 1) * per_node < pods or pods == 0
    # Each node really holds per_node pods within both resources.
    assert per_node * cpu <= node.node_allocatable.cpu * (1 + 1e-9)
    assert per_node * mem_gi * GI <= 64 * GI * (1 + 1e-9)
