"""Placeholder pods for a node plan, and the nodes they hold (the overprovisioning pattern)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.core.binpack import NodeShape, Resources, nodes_for
from daemon.core.overprovisioning import nodes_held, placeholders_for

GI = 2**30
# 3.5 free cores / 0.5 = 7 pods a node (memory would allow more).
SHAPE = NodeShape(Resources(0.5, GI), Resources(4.0, 16 * GI), Resources(0.5, 2 * GI))


@pytest.mark.parametrize(
    ("nodes", "real", "placeholders"),
    [
        # 10 real pods need 2 nodes; 4 desired: two nodes of headroom, 7 placeholders each.
        (4, 10, 14),
        # No headroom asked: no placeholders.
        (2, 10, 0),
        # The real pods need more than desired: never a negative count.
        (1, 10, 0),
        # Nothing running yet: every desired node is headroom.
        (3, 0, 21),
        (0, 0, 0),
    ],
)
def test_placeholders_for_the_node_headroom(nodes: int, real: int, placeholders: int) -> None:
    assert placeholders_for(nodes, real, SHAPE) == placeholders


def test_nodes_held_counts_real_and_placeholder_pods_together() -> None:
    # 10 real + 14 placeholders = 24 pods at 7 a node: 4 nodes (the real pods' second node
    # has 4 free slots the placeholders fill before they need a new one).
    assert nodes_held(10, 14, SHAPE) == 4
    assert nodes_held(0, 0, SHAPE) == 0
    assert nodes_held(7, 0, SHAPE) == 1


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        placeholders_for(-1, 0, SHAPE)
    with pytest.raises(ValueError, match=">= 0"):
        nodes_held(0, -1, SHAPE)


@given(
    nodes=st.integers(0, 500),
    real=st.integers(0, 2000),
    per_node_cpu=st.sampled_from([0.25, 0.5, 0.9, 1.0, 3.5]),
)
def test_the_placeholders_hold_exactly_the_nodes_planned(
    nodes: int, real: int, per_node_cpu: float
) -> None:
    """Written then read back, the plan is what the node target sees: the nodes desired, or
    the real pods' own nodes when they need more."""
    shape = NodeShape(Resources(per_node_cpu, 0), Resources(4.0, 0), Resources(0.4, 0))
    placeholders = placeholders_for(nodes, real, shape)
    assert nodes_held(real, placeholders, shape) == max(nodes, nodes_for(real, shape))
