"""Targets: the union of every kind's config model, built from ``daemon.kinds.registry``.

The shared fields live in ``daemon.settings.target_base``; each kind's own fields in its
module under ``daemon/kinds/``. Nothing here names a kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from daemon.kinds.asg import AsgTarget
from daemon.kinds.eks_nodegroup import EksNodeGroupTarget
from daemon.kinds.kubernetes_workload import KubernetesWorkloadTarget
from daemon.kinds.registry import KINDS, SPECS
from daemon.kinds.simulator import SimulatorTarget
from daemon.settings.target_base import (
    NAME_PATTERN,
    AboveMaxConfig,
    ActVia,
    Mode,
    Policy,
    ScaleLimit,
    TargetBase,
    TournamentConfig,
)

__all__ = [
    "NAME_PATTERN",
    "NODE_KINDS",
    "AboveMaxConfig",
    "ActVia",
    "AsgTarget",
    "EksNodeGroupTarget",
    "KubernetesWorkloadTarget",
    "Mode",
    "Policy",
    "ScaleLimit",
    "SimulatorTarget",
    "TargetBase",
    "TargetConfig",
    "TargetKind",
    "TournamentConfig",
]

if TYPE_CHECKING:
    # For the type checker every target is a TargetBase; kind-specific fields are reached
    # after an isinstance check on the kind's own model.
    TargetConfig = TargetBase
else:
    _MODELS: Any = tuple(spec.config for spec in SPECS)
    TargetConfig = Annotated[Union[_MODELS], Field(discriminator="kind")]  # noqa: UP007

TargetKind = str
# Kinds whose units are nodes, so a pod workload's node_group link may point at them.
NODE_KINDS: frozenset[str] = frozenset(kind for kind, spec in KINDS.items() if spec.node_units)
