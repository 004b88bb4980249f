"""Sub-commands of ``elasticd``, one module each.

Every module exposes ``register(subparsers)``, which adds its sub-parser and sets
``handler=<function(args) -> int>`` with ``set_defaults``; ``daemon.cli`` lists the modules.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    # argparse's sub-parser action is only generic in the type stubs, so the alias cannot
    # exist at run time; modules use it in annotations under ``from __future__ import``.
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
