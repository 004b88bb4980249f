"""``kind: simulator``: units that exist only inside elasticd's simulated world (demos, tests)."""

from __future__ import annotations

from typing import Literal

from daemon.kinds.base import BuildContext, Built, KindSpec
from daemon.settings.target_base import TargetBase


class SimulatorTarget(TargetBase):
    """A simulated workload; its units exist only inside elasticd, for demos and tests."""

    kind: Literal["simulator"]


async def build(target: SimulatorTarget, context: BuildContext) -> Built:
    from daemon.actuators.simulator import SimulatorActuator

    world = context.world
    assert world is not None  # settings validation: simulator targets need a simulator source
    return SimulatorActuator(world, target.name), None


SPEC = KindSpec(
    kinds=("simulator",),
    config=SimulatorTarget,
    build=build,
    writes="the simulated world's unit count (nothing outside elasticd)",
    typical_lead="the configured lead_time",
)
