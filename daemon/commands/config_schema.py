"""``elasticd config-schema``: the configuration's JSON Schema, for editors and CI checks."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from daemon.settings import Settings

if TYPE_CHECKING:
    from daemon.commands import SubParsers


def register(subparsers: SubParsers) -> None:
    """Add the ``config-schema`` sub-command."""
    parser = subparsers.add_parser(
        "config-schema",
        help="print the configuration's JSON Schema",
        description="Print the JSON Schema of the YAML configuration, with every key's "
        "default and description. Point an editor's YAML language server at it.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the schema as indented JSON."""
    print(json.dumps(Settings.model_json_schema(), indent=2))
    return 0
