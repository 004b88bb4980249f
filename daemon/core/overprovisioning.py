"""Nodes held up by placeholder pods: the overprovisioning pattern in numbers.

On a cluster without node groups to size (Karpenter, or the cluster autoscaler on groups it
owns), nodes come up only for pods that cannot be scheduled. A Deployment of low-priority
placeholder pods, each requesting what one real pod requests, makes the autoscaler bring nodes
up early; a real pod preempts a placeholder at once and takes its place.

So the node layer's plan (``nodes_desired``, :mod:`daemon.core.layers`) becomes a placeholder
count: the nodes the real pods already need stay up for them, and every node of headroom on
top is filled with placeholders, ``pods_per_node`` of them a node. Read back, the nodes held
are those the real pods and the placeholders need together, and the two functions agree:
``nodes_held(real, placeholders_for(n, real)) == max(n, nodes_for(real))``.
"""

from __future__ import annotations

from daemon.core.binpack import NodeShape, nodes_for, pods_per_node

__all__ = ["nodes_held", "placeholders_for"]


def placeholders_for(nodes_desired: int, real_pods: int, shape: NodeShape) -> int:
    """Placeholder pods that keep ``nodes_desired`` nodes up beside ``real_pods`` real pods.

    The real pods' own nodes are left to them (their last node's free slots are not topped
    up: a full node of placeholders per node of headroom is enough to hold it, and fewer
    placeholders mean fewer pods to preempt). No headroom, or real pods that already need
    more nodes than desired, is zero placeholders.
    """
    if nodes_desired < 0 or real_pods < 0:
        raise ValueError("nodes_desired and real_pods must be >= 0")
    headroom = max(nodes_desired - nodes_for(real_pods, shape), 0)
    return headroom * pods_per_node(shape)


def nodes_held(real_pods: int, placeholders: int, shape: NodeShape) -> int:
    """Nodes the real pods and the placeholders, all sized alike, need together."""
    if real_pods < 0 or placeholders < 0:
        raise ValueError("real_pods and placeholders must be >= 0")
    return nodes_for(real_pods + placeholders, shape)
