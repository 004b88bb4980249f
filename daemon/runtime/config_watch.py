"""Notice that the configuration file changed and ask for the same reload SIGHUP asks for.

How files change under a running daemon:

- Kubernetes mounts a ConfigMap as ``elasticd.yaml -> ..data/elasticd.yaml`` with ``..data ->
  ..2026_12_04_16_00_00.123``; an update writes a new timestamped directory and renames a new
  ``..data`` symlink over the old one. The path the daemon was given never changes; what it
  resolves to does.
- An editor either rewrites the file in place (same inode, new size or mtime) or writes a
  temporary file and renames it over the original (new inode).

Why polling and not inotify: inotify watches inodes, so a watch on the file goes deaf after a
rename over it and a watch on ``..data`` sees nothing of a symlink swapped by its parent;
handling all three cases needs a directory watch plus re-arming, a native dependency or
ctypes, and it still misses NFS and some overlay filesystems. Reading a few hundred bytes
every few seconds is cheap and sees every case the same way: the (realpath, mtime, size,
inode) of the resolved file, plus a hash of its content, since a rewrite within the same
second with the same size changes neither mtime (on coarse filesystems) nor size.

The watcher never reloads anything itself: it sets the reload flag, so a change found here
goes through exactly the supervisor's SIGHUP path (valid applied, invalid logged with its YAML
path and the old configuration kept).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DEFAULT_INTERVAL_S", "ConfigWatcher", "FileStamp", "stamp"]

log = logging.getLogger("elasticd.config_watch")

# The kubelet itself syncs ConfigMap volumes about once a minute; a few seconds more on top
# is not noticeable, and polling every few seconds costs nothing measurable.
DEFAULT_INTERVAL_S = 5.0
# A new version is read again this much later and must not have moved in between.
SETTLE_S = 0.25

Look = Literal["same", "pending", "changed"]


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What identifies one version of the file the configuration path resolves to."""

    realpath: str
    mtime_ns: int
    size: int
    inode: int
    sha256: str


def stamp(path: Path) -> FileStamp | None:
    """The file's stamp now; None while it cannot be read (mid-rename, deleted, no access)."""
    try:
        real = os.path.realpath(path)
        with open(real, "rb") as handle:
            # fstat on the opened file: the stat and the bytes hashed are of the same inode
            # even if a rename lands between resolving the path and reading it.
            info = os.fstat(handle.fileno())
            digest = hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None
    return FileStamp(real, info.st_mtime_ns, info.st_size, info.st_ino, digest)


class ConfigWatcher:
    """Polls ``path`` every ``interval_s`` and calls ``on_change`` once per new version.

    A new version must be seen twice in a row, ``settle_s`` apart, before it counts: an
    editor writing the file in place is otherwise caught halfway, and the reload of half a
    file would fail with a misleading error. A file that vanishes (an editor between unlink
    and rename, a half-swapped mount) is not a change either: the watcher waits for it to come
    back and compares then.
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[], None],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        settle_s: float = SETTLE_S,
    ) -> None:
        if interval_s <= 0 or settle_s < 0:
            raise ValueError("interval_s must be > 0 and settle_s >= 0")
        self.path = path
        self.interval_s = interval_s
        self.settle_s = min(settle_s, interval_s)
        self._on_change = on_change
        self._last: FileStamp | None = None
        self._pending: FileStamp | None = None

    def prime(self) -> None:
        """Take the current version as the one in force (just loaded, or about to be)."""
        self._last = stamp(self.path)
        self._pending = None

    def check(self) -> Look:
        """Look once: ``same``, ``pending`` (new, seen once) or ``changed`` (``on_change``
        was called)."""
        return self._observe(stamp(self.path))

    def _observe(self, current: FileStamp | None) -> Look:
        if current is None or current == self._last:
            self._pending = None
            return "same"
        if current != self._pending:
            self._pending = current
            return "pending"
        self._pending = None
        previous, self._last = self._last, current
        if previous is not None and previous.sha256 == current.sha256:
            # Same bytes (a touch, a ConfigMap resync writing identical data): nothing to do.
            return "same"
        log.info(
            "configuration file changed; reloading",
            extra={"event": "config_changed", "file": str(self.path), "resolved": current.realpath},
        )
        self._on_change()
        return "changed"

    async def run(self) -> None:
        """Agent: poll until cancelled; ``prime`` first, or the first look reloads."""
        look: Look = "same"
        while True:
            await asyncio.sleep(self.settle_s if look == "pending" else self.interval_s)
            # Off the loop: a stalled network filesystem must not stall the ticks.
            look = self._observe(await asyncio.to_thread(stamp, self.path))
