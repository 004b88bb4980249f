"""Credentials for HTTP metric sources: secrets read from files that may rotate.

A mounted Kubernetes Secret or a projected ServiceAccount token is replaced in place (an atomic
symlink swap) while the daemon runs. ``SecretFile`` checks the file's identity (inode, size,
mtime) on every use, a single ``stat``, and re-reads it only when that changed, so the next
request after a rotation carries the new secret without a restart.

Every secret read here is registered with ``daemon.redact`` so that it is masked wherever it
might later appear in a log line or an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from daemon.errors import TransientSourceError
from daemon.redact import register_secret

__all__ = ["SecretFile", "secret_from_env"]


class SecretFile:
    """The stripped text of a file, re-read whenever the file changes."""

    def __init__(self, path: Path, what: str) -> None:
        """``what`` names the secret in errors, e.g. ``bearer_token_file``."""
        self.path = path
        self._what = what
        self._identity: tuple[int, int, int, int] | None = None
        self._value = ""

    def read(self) -> str:
        """The current secret; ``TransientSourceError`` if the file cannot be read right now
        (mid-rotation, or removed: the next rotation may bring it back)."""
        try:
            info = os.stat(self.path)
            identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            if identity != self._identity:
                value = self.path.read_text(encoding="utf-8").strip()
                if not value:
                    raise TransientSourceError(f"{self._what} {self.path} is empty")
                register_secret(value)
                self._value, self._identity = value, identity
        except OSError as error:
            raise TransientSourceError(
                f"cannot read {self._what} {self.path}: {error.strerror or error}"
            ) from None
        except UnicodeDecodeError:
            raise TransientSourceError(f"{self._what} {self.path} is not UTF-8 text") from None
        return self._value

    def invalidate(self) -> None:
        """Re-read on next use even if the file looks unchanged (the server refused it)."""
        self._identity = None


def secret_from_env(name: str, environ: Mapping[str, str]) -> str | None:
    """The stripped value of the environment variable ``name``; None when unset or blank."""
    value = environ.get(name, "").strip()
    if not value:
        return None
    register_secret(value)
    return value
