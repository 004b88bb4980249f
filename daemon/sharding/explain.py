"""``elasticd explain``'s ownership line: which member owns a target, from one read of the
coordination store.

On etcd the store itself expires members, so one read is exact. On Kubernetes, liveness is
judged by watching a Lease's version change over a lease duration, which a one-shot command
cannot do: it reads each Lease's ``renewTime`` against this host's clock instead, and says so.
"""

from __future__ import annotations

import asyncio

from daemon.errors import ElasticdError
from daemon.settings import Settings, TargetConfig
from daemon.sharding.coordination import CoordinationError, MemberView
from daemon.sharding.ring import HashRing
from daemon.sharding.wiring import open_coordination, shard_key

__all__ = ["ownership_lines"]

READ_TIMEOUT_S = 10.0


def ownership_lines(settings: Settings, target: TargetConfig) -> list[str]:
    """Nothing when sharding is off (every instance, or the Lease holder, writes)."""
    config = settings.sharding
    if not config.enabled:
        return []
    try:
        view, how = asyncio.run(asyncio.wait_for(_read(settings), timeout=READ_TIMEOUT_S))
    except (ElasticdError, CoordinationError, OSError, TimeoutError) as error:
        return [f"sharding: owner unknown: cannot read the members ({error or 'timed out'})"]
    ring = HashRing(view.live, virtual_nodes=config.virtual_nodes)
    owner = ring.owner(shard_key(target))
    key = shard_key(target)
    via = f" (ring key {key!r}: planned with its node target)" if key != target.name else ""
    members = ", ".join(ring.epoch) or "none"
    return [
        f"sharding: owned by {owner or 'no member (none is live)'}{via}; "
        f"group {config.group}, live members {members} ({how})"
    ]


async def _read(settings: Settings) -> tuple[MemberView, str]:
    coordination = await open_coordination(settings)
    try:
        from daemon.sharding.kube import KubeLeaseCoordination

        if isinstance(coordination, KubeLeaseCoordination):
            return await coordination.wall_clock_view(), "by each Lease's renewTime"
        return await coordination.view(), "as etcd has them"
    finally:
        await coordination.close()
