"""``elasticd validate [FILE...]``: check configuration files without starting anything."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from daemon.conventions import CONFIG_ENV, DEFAULT_CONFIG, resolve_config
from daemon.errors import ConfigError
from daemon.settings import ConfigFileError, load_settings

if TYPE_CHECKING:
    from daemon.commands import SubParsers


def register(subparsers: SubParsers) -> None:
    """Add the ``validate`` sub-command."""
    parser = subparsers.add_parser(
        "validate",
        help="check configuration files",
        description="Load and check each configuration file; exit 1 if any is invalid.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help=f"YAML configuration file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG}, the "
        "file `elasticd run` would read)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate every file (not just up to the first bad one) and report each on one line."""
    failed = False
    hint = ""
    names = list(args.files)
    if not names:
        # No file named: the one the daemon would read, so "validate" then "run" agree.
        location = resolve_config(None)
        names = [str(location.path)]
        hint = "" if location.path.exists() else location.missing_hint()
    for name in names:
        try:
            settings = load_settings(name)
        except ConfigError as error:
            failed = True
            # A file error's path already names the file (FILE or FILE:LINE).
            where = "" if isinstance(error, ConfigFileError) else f"{name}: "
            print(f"elasticd: {where}{error}{hint}", file=sys.stderr)
            continue
        # Companions of further metrics are targets to the daemon, not to the file's author.
        count = sum(1 for target in settings.targets if target.metric_of is None)
        further = len(settings.targets) - count
        extra = f", {further} further metric{'' if further == 1 else 's'}" if further else ""
        print(f"{name}: ok ({count} target{'' if count == 1 else 's'}{extra})")
    return 1 if failed else 0
