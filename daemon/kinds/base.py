"""What a target kind declares (``KindSpec``) and what building its actuator may use
(``BuildContext``, provided by the composition root).

Kind modules import their actuators lazily, inside ``build``: the settings layer imports every
kind's config model to validate a file, and must not pull in the SDKs (or the runtime) to do so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from daemon.settings.target_base import TargetBase

if TYPE_CHECKING:
    import aioboto3
    from kubernetes_asyncio import client

    from daemon.actuators.base import Actuator
    from daemon.actuators.events import ScaleEvents
    from daemon.simulation import SimulatedWorld

__all__ = ["AwsAccess", "BuildContext", "Built", "KindSpec", "Permission"]

T = TypeVar("T", bound=TargetBase)


@dataclass(frozen=True, slots=True)
class AwsAccess:
    """How an AWS actuator opens its client: region, endpoint (moto in tests), session."""

    region: str
    endpoint_url: str | None
    session: aioboto3.Session | None

    def client_args(self) -> dict[str, Any]:
        """Keyword arguments every ``AwsClient``-based actuator takes."""
        return {"region": self.region, "endpoint_url": self.endpoint_url, "session": self.session}


class BuildContext(Protocol):
    """What the composition root lends a kind's ``build``."""

    @property
    def where(self) -> str:
        """The target's YAML path (``targets[3]``), for ``ConfigError``s."""
        ...

    @property
    def world(self) -> SimulatedWorld | None:
        """The simulated world, for a target on a simulator source."""
        ...

    async def kube_api(self) -> client.ApiClient:
        """The shared Kubernetes client (throttled; released when the target closes)."""
        ...

    def aws(self) -> AwsAccess:
        """AWS access as ``aws:`` configures it; ``ConfigError`` if no region is known."""
        ...


Built = tuple["Actuator", "ScaleEvents | None"]


@dataclass(frozen=True, slots=True)
class Permission:
    """One grant a kind needs: an IAM action (``ecs:UpdateService``) or a Kubernetes RBAC
    rule (``apps/deployments/scale:patch``); checked against what ``deploy/`` ships."""

    system: str  # "aws" or "kubernetes"
    name: str
    why: str


@dataclass(frozen=True)
class KindSpec(Generic[T]):
    """Everything the daemon needs to know about one target kind."""

    kinds: tuple[str, ...]
    """The ``kind:`` values this spec serves (``deployment``, ``statefulset``)."""
    config: type[T]
    build: Callable[[T, BuildContext], Awaitable[Built]]
    writes: str
    """One line for docs and ``explain``: what is written, e.g. ``ECS service desiredCount``."""
    permissions: Sequence[Permission] = ()
    typical_lead: str = ""
    """Typical lead time, for the table of kinds in the docs."""
    node_units: bool = False
    """Its units are nodes, so a pod target's ``node_group`` link may point at it."""
    unit_name: str = "units"
    demand_free: bool = False
    """Its units follow its schedules alone: no source is read (demand is zero, so outside
    every window the target falls to ``min_units``), e.g. a stop/start schedule."""
    """What one unit is, in ``explain`` (``pods``, ``nodes``, ``vCPUs``)."""
    details: Callable[[T], list[str]] = field(default=lambda target: [])
    """Kind-specific ``explain`` lines (what exactly is written)."""
