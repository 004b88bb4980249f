"""The audit log: one JSON line per scaling decision, so an operator can answer "why did it scale?".

Durability over speed: every line is flushed (and optionally fsynced) before ``append`` returns,
so a crash loses at most the line being written, and a torn last line from an earlier crash is
fenced off with a newline so it cannot corrupt the next record.

``append_async`` (what the reconcilers use) batches: one writer task drains the records queued
on the loop and writes each batch on a worker thread with one write and one flush (and fsync),
and every caller resumes only once its own line is flushed. A thousand targets ticking cost a
thread hand-off per batch instead of one per decision (5 % of the daemon's CPU at 1,000
targets), and nothing is acknowledged before it is on disk: a crash still loses only records
whose ``append_async`` had not returned, the last of them possibly torn. The file rotates by size
(``path`` -> ``path.1`` -> ... -> ``path.N``) so a long-running daemon cannot fill its disk.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from daemon.private_dir import ensure_private_dir
from daemon.redact import redact_text

__all__ = ["AuditLog", "AuditRecord"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One decision for one target, as written to the audit log.

    ``inputs`` is a short summary (e.g. the last observed value and the window size), not the
    raw series: the audit log must stay small enough to keep months of it. ``written`` says
    whether the desired capacity was actually applied; ``error`` explains why not, if it failed.
    ``time`` defaults to the moment the record is appended.
    """

    target: str
    reason: str
    desired: int | None = None
    current: int | None = None
    forecast: float | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)
    written: bool = False
    error: str | None = None
    time: datetime | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def _jsonable(value: Any) -> Any:
    # NaN/inf are not JSON; a forecast that went non-finite is recorded as null rather than
    # making the line unparseable by every standard JSON reader.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    # numpy scalars and the like: numbers stay numbers, anything else becomes its text.
    item = getattr(value, "item", None)
    if callable(item):
        return _jsonable(item())
    return str(value)


class AuditLog:
    """An append-only JSON-lines file with size-based rotation; safe to share between threads."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        *,
        fsync: bool = False,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if backups < 0:
            raise ValueError(f"backups must be zero or more, got {backups}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self._clock = clock
        # append_async runs appends on worker threads; one lock keeps lines whole and in order.
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._size = 0
        # append_async's queue: (record, the caller's future), drained by one writer task.
        self._queued: list[tuple[AuditRecord, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    def append(self, record: AuditRecord) -> None:
        """Write ``record`` as one JSON line and flush it; raises ``OSError`` if the disk does."""
        self.append_many([record])

    def append_many(self, records: list[AuditRecord]) -> None:
        """Write ``records`` in order, one JSON line each, and flush once; ``OSError`` if the
        disk fails (lines before the failure may have been written)."""
        lines = [self.encode(record) for record in records]
        with self._lock:
            handle = self._open()
            batch: list[bytes] = []
            pending = 0
            for line in lines:
                if self._size + pending > 0 and self._size + pending + len(line) > self.max_bytes:
                    # Rotate between lines: what the file already holds is flushed first.
                    self._write(handle, batch, pending)
                    batch, pending = [], 0
                    handle = self._rotate()
                batch.append(line)
                pending += len(line)
            self._write(handle, batch, pending)

    def _write(self, handle: IO[bytes], lines: list[bytes], size: int) -> None:
        if not lines:
            return
        # One write of whole lines: a crash can tear only the last of them.
        handle.write(b"".join(lines))
        handle.flush()
        if self.fsync:
            os.fsync(handle.fileno())
        self._size += size

    async def append_async(self, record: AuditRecord) -> None:
        """``append`` off the loop, so an fsync on a slow disk never stalls it; returns once
        the line is flushed. Records queued meanwhile by other tasks share one write."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queued.append((record, done))
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._writer = asyncio.create_task(self._drain(), name="audit_writer")
        await done

    async def _drain(self) -> None:
        """The writer task: write what is queued as one batch until nothing is left."""
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                await asyncio.to_thread(self.append_many, [record for record, _ in batch])
            except asyncio.CancelledError:
                # The loop is closing: no caller may wait for ever on a write it cannot see.
                for _, done in (*batch, *self._queued):
                    done.cancel()
                self._queued = []
                raise
            except Exception as error:
                # Every caller of the batch hears of it (the reconciler logs it): which of
                # its lines reached the disk is unknown, so none is acknowledged.
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            for _, done in batch:
                if not done.done():  # the caller may have been cancelled meanwhile
                    done.set_result(None)

    def encode(self, record: AuditRecord) -> bytes:
        """The exact bytes ``append`` writes for ``record``: one UTF-8 JSON object and a newline."""
        payload = {
            "time": _iso_utc(record.time or self._clock()),
            "target": record.target,
            "inputs": _jsonable(record.inputs),
            "forecast": _jsonable(record.forecast),
            "desired": record.desired,
            "current": record.current,
            # Reasons and errors carry source and API error text, which may quote a URL.
            "reason": redact_text(record.reason),
            "written": record.written,
            "error": None if record.error is None else redact_text(record.error),
        }
        # ensure_ascii=False keeps non-ASCII target names readable in `tail`; JSON escapes any
        # newline inside a string, so one record is always exactly one line.
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return (text + "\n").encode("utf-8")

    def close(self) -> None:
        """Close the file; a later ``append`` reopens it."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self) -> IO[bytes]:
        if self._file is not None:
            return self._file
        ensure_private_dir(self.path.parent)
        # 0600: decisions name workloads and capacities; nobody else on the host needs them.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        handle = os.fdopen(fd, "ab")
        self._size = os.fstat(fd).st_size
        if self._size > 0 and not self._ends_with_newline():
            # A crash mid-line left a torn record: end it so the next record parses.
            handle.write(b"\n")
            handle.flush()
            self._size += 1
        self._file = handle
        return handle

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as reader:
            reader.seek(-1, os.SEEK_END)
            return reader.read(1) == b"\n"

    def _rotate(self) -> IO[bytes]:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            # Shift oldest first so nothing is overwritten: .N-1 -> .N, ..., path -> .1.
            for index in range(self.backups - 1, 0, -1):
                older = self._backup(index)
                if older.exists():
                    os.replace(older, self._backup(index + 1))
            os.replace(self.path, self._backup(1))
        return self._open()

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")
