"""Nodes ahead of pods without a node group: a Deployment of placeholder pods, sized in nodes.

The node target's units are nodes, as a node group's are; this actuator turns them into the
replica count of a Deployment of low-priority placeholder pods (deploy/kubernetes/
overprovisioning/), so Karpenter or the cluster autoscaler brings the nodes up and real pods
preempt the placeholders when they come (:mod:`daemon.core.overprovisioning` has the
arithmetic, passed in by the kind: actuators stay independent of the core).

Write: the placeholders that hold the desired nodes beside the real pods as they are now. The
real workloads are read, never written; the placeholder Deployment is written through its scale
subresource by the Deployment actuator itself (fenced, once, on the resourceVersion read).

Read: the nodes asked for, as a node group's desired size is. Real pods come and go under the
placeholders all the time (that is the point: they preempt them), so the nodes are tied to the
placeholder count, not recomputed from every change of the real pods: while the placeholders
are the count last read or written, the nodes are the ones they were read or written as (or
the real pods' own, when those alone need more). Otherwise every scale-up of the real pods
would look like another writer changing the size (an "external override") and make the next
write a conflict, during the very rise the headroom is for. A placeholder count this instance
did not set (first read, or another writer) is read as the nodes the real pods and the
placeholders need together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from daemon.actuators.base import Actuator, Capacity, ScaleResult
from daemon.actuators.retry import WriteGuard, check_expected
from daemon.errors import PermanentActuatorError

__all__ = ["PlaceholderPodsActuator"]

# (nodes desired, real pods) -> placeholders; (real pods, placeholders) -> nodes held.
ToPlaceholders = Callable[[int, int], int]
ToNodes = Callable[[int, int], int]


class PlaceholderPodsActuator:
    """``Actuator`` in nodes over a placeholder Deployment's replicas.

    ``placeholders``: the actuator of the placeholder Deployment, built on ``guard``;
    ``workloads``: the real workloads whose pods run on these nodes (read only);
    ``to_placeholders`` and ``to_nodes``: the conversions for one pod shape
    (``daemon.core.overprovisioning``'s ``placeholders_for`` and ``nodes_held``).
    """

    def __init__(
        self,
        placeholders: Actuator,
        workloads: Sequence[Actuator],
        *,
        to_placeholders: ToPlaceholders,
        to_nodes: ToNodes,
        guard: WriteGuard,
    ) -> None:
        self._placeholders = placeholders
        self._workloads = tuple(workloads)
        self._to_placeholders = to_placeholders
        self._to_nodes = to_nodes
        self._guard = guard
        # (placeholders, the nodes they stand for), as last read or written.
        self._held: tuple[int, int] | None = None

    def describe(self) -> str:
        return f"placeholder pods {self._placeholders.describe()}"

    async def read(self) -> Capacity:
        real, held = await self._sizes()
        return Capacity(desired=self._nodes(real, held), ready=None, min_size=None, max_size=None)

    async def scale(
        self, desired: int, *, expected: int | None = None, deadline: float | None = None
    ) -> ScaleResult:
        """Set the placeholders that hold ``desired`` nodes beside the real pods read now.

        ``expected`` is in nodes: if the placeholders changed (another writer) so that the
        nodes read differ from the decision's, nothing is written (``ConflictError``); the
        placeholder write itself is conditional on the count just read.
        """
        if desired < 0:
            raise PermanentActuatorError(f"{self.describe()}: {desired} nodes asked for")
        # A write that cannot be sent spends no reads.
        self._guard.check_deferred()
        real, held = await self._sizes()
        previous = self._nodes(real, held)
        check_expected(self.describe(), expected, previous)
        count = self._to_placeholders(desired, real)
        result = await self._placeholders.scale(count, expected=held, deadline=deadline)
        applied = self._to_nodes(real, result.applied)
        self._held = (result.applied, applied)
        return ScaleResult(result.written, previous, desired, applied)

    async def close(self) -> None:
        await self._placeholders.close()
        for workload in self._workloads:
            await workload.close()

    def _nodes(self, real: int, held: int) -> int:
        """The nodes ``held`` placeholders stand for beside ``real`` pods (see the module)."""
        own = self._to_nodes(real, 0)
        if self._held is not None and self._held[0] == held:
            nodes = max(self._held[1], own)
        else:
            nodes = self._to_nodes(real, held)
        self._held = (held, nodes)
        return nodes

    async def _sizes(self) -> tuple[int, int]:
        """(real pods desired, placeholders desired), read together.

        A real workload's desired replicas count, not its running ones: pods still pending
        need their nodes as much as running ones do.
        """
        sizes = await asyncio.gather(
            self._placeholders.read(), *(workload.read() for workload in self._workloads)
        )
        return sum(size.desired for size in sizes[1:]), sizes[0].desired
