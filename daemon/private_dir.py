"""Owner-only directories for what elasticd keeps: models, decision state, the audit log."""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["ensure_private_dir"]


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` and any missing parent with mode 0700; existing ones are left
    alone (systemd's StateDirectory sets its own). ``Path.mkdir(parents=True)`` ignores
    ``mode`` for the parents it creates, so each missing level is created here."""
    if directory.is_dir():
        return
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for level in reversed(missing):
        # Another process may create it between the check and here; that is fine.
        with contextlib.suppress(FileExistsError):
            level.mkdir(mode=0o700)
