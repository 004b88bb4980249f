"""Nodes needed for a number of identical pods: bin-packing on CPU and memory.

For identical pods, first-fit-decreasing fills each node with as many pods as its free
resources allow, so it reduces to ``pods_per_node = min over resources of
floor((allocatable - overhead) / request)`` and ``nodes = ceil(pods / pods_per_node)``.
A resource a pod does not request (0) does not limit how many fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["NodeShape", "Resources", "nodes_for", "pods_per_node"]

# (4 - 0.4) / 0.9 is 3.9999999999999996 in floats: that is 4 pods, not 3.
_RELATIVE_NOISE = 1e-9


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of CPU and memory."""

    cpu: float = 0.0
    """Cores, >= 0."""
    memory: float = 0.0
    """Bytes, >= 0."""

    def __post_init__(self) -> None:
        for name in ("cpu", "memory"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class NodeShape:
    """A pod's requests and a node's capacity: ``daemon.settings.NodeGroupLink`` in core terms."""

    pod_requests: Resources
    node_allocatable: Resources
    node_overhead: Resources = Resources()
    """Taken on every node by daemonsets and system pods."""


def pods_per_node(shape: NodeShape) -> int:
    """How many pods fit on one node; ``ValueError`` if not even one does."""
    fits: list[int] = []
    for resource in ("cpu", "memory"):
        request = getattr(shape.pod_requests, resource)
        if request == 0:
            continue  # not requested: this resource places no limit
        free = getattr(shape.node_allocatable, resource) - getattr(shape.node_overhead, resource)
        fits.append(_whole_quotient(free, request))
    if not fits:
        # Nothing requested would mean infinitely many pods per node: a configuration mistake.
        raise ValueError("a pod must request cpu or memory (or both) above zero")
    count = min(fits)
    if count < 1:
        raise ValueError(
            f"one pod ({shape.pod_requests}) does not fit on a node "
            f"({shape.node_allocatable} minus overhead {shape.node_overhead})"
        )
    return count


def nodes_for(pods: int, shape: NodeShape) -> int:
    """Fewest nodes that hold ``pods`` pods; zero pods need zero nodes."""
    if pods < 0:
        raise ValueError(f"pods must be >= 0, got {pods!r}")
    per_node = pods_per_node(shape)  # checked even for zero pods: a bad shape is a bad shape
    return -(-pods // per_node)


def _whole_quotient(free: float, request: float) -> int:
    if free < 0:
        return 0
    exact = free / request
    nearest = round(exact)
    if abs(exact - nearest) <= _RELATIVE_NOISE * max(1.0, exact):
        return int(nearest)
    return math.floor(exact)
