"""Audit log: JSON lines on a real filesystem, read back the way an operator would."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from daemon.audit import AuditLog, AuditRecord

FIXED = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _record(target: str = "deploy/web", **changes: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "target": target,
        "reason": "forecast above capacity",
        "desired": 6,
        "current": 4,
        "forecast": 512.5,
        "inputs": {"last": 400.0, "window_points": 1440},
        "written": True,
    }
    fields.update(changes)
    return AuditRecord(**fields)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _targets_in_all_files(directory: Path) -> list[str]:
    # Every line of every file (current and rotated) must parse on its own.
    return [line["target"] for p in directory.iterdir() for line in _lines(p)]


def test_one_json_object_per_line_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, clock=lambda: FIXED) as log:
        log.append(_record())
        log.append(_record("sts/db", written=False, error="409 Conflict", forecast=None))
    first, second = _lines(path)
    assert first == {
        "time": "2024-03-01T12:00:00.123Z",
        "target": "deploy/web",
        "inputs": {"last": 400.0, "window_points": 1440},
        "forecast": 512.5,
        "desired": 6,
        "current": 4,
        "reason": "forecast above capacity",
        "written": True,
        "error": None,
    }
    assert second["target"] == "sts/db"
    assert second["written"] is False
    assert second["error"] == "409 Conflict"
    assert second["forecast"] is None


def test_time_is_utc_even_from_another_zone(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    plus_two = datetime(2024, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    with AuditLog(path) as log:
        log.append(_record(time=plus_two))
        with pytest.raises(ValueError, match="timezone-aware"):
            log.append(_record(time=datetime(2024, 3, 1)))
    (line,) = _lines(path)
    assert line["time"] == "2024-03-01T12:00:00.000Z"
    assert datetime.fromisoformat(line["time"]) == plus_two


def test_each_line_is_visible_to_another_reader_immediately(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    with open(path, "a+", encoding="utf-8"):  # make sure the file exists for the reader
        pass
    with open(path, encoding="utf-8") as reader:
        for n in range(3):
            log.append(_record(f"deploy/w{n}"))
            # No close, no sleep: a separate open file sees the complete line at once.
            line = reader.readline()
            assert line.endswith("\n")
            assert json.loads(line)["target"] == f"deploy/w{n}"
    log.close()


def test_unicode_and_newlines_stay_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, fsync=True) as log:
        log.append(_record("déploiement/café-☕", reason="pic prévu\nà 09:00", error="ошибка"))
    raw = path.read_bytes()
    assert raw.count(b"\n") == 1
    assert "café-☕".encode() in raw  # stored as UTF-8, not \u escapes
    (line,) = _lines(path)
    assert line["target"] == "déploiement/café-☕"
    assert line["reason"] == "pic prévu\nà 09:00"
    assert line["error"] == "ошибка"


def test_non_finite_and_odd_values_still_give_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append(
            _record(
                forecast=float("nan"),
                inputs={"peak": float("inf"), "at": FIXED, "quantiles": (1.0, 2.0), "p": Path("x")},
            )
        )
    (line,) = _lines(path)
    assert line["forecast"] is None
    assert line["inputs"] == {
        "peak": None,
        "at": "2024-03-01T12:00:00.123Z",
        "quantiles": [1.0, 2.0],
        "p": "x",
    }


def test_rotates_by_size_and_keeps_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    line_size = len(AuditLog(path, clock=lambda: FIXED).encode(_record("deploy/w0")))
    log = AuditLog(path, max_bytes=line_size * 2, backups=2, clock=lambda: FIXED)  # 2 lines/file
    for n in range(7):
        log.append(_record(f"deploy/w{n}"))
    log.close()

    def targets(p: Path) -> list[str]:
        return [line["target"] for line in _lines(p)]

    # Seven lines, two per file, newest in `path`: w6 | w4 w5 | w2 w3 ; w0 w1 fell off the end.
    assert targets(path) == ["deploy/w6"]
    assert targets(path.with_name("audit.jsonl.1")) == ["deploy/w4", "deploy/w5"]
    assert targets(path.with_name("audit.jsonl.2")) == ["deploy/w2", "deploy/w3"]
    assert not path.with_name("audit.jsonl.3").exists()
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= line_size * 2


def test_zero_backups_truncates(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, max_bytes=10, backups=0) as log:
        log.append(_record("deploy/a"))
        log.append(_record("deploy/b"))
    assert [p.name for p in tmp_path.iterdir()] == ["audit.jsonl"]
    assert [line["target"] for line in _lines(path)] == ["deploy/b"]


def test_rotation_continues_an_existing_file_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, max_bytes=10_000) as log:
        log.append(_record("deploy/before-restart"))
    size = path.stat().st_size
    with AuditLog(path, max_bytes=size + 1, backups=1) as log:
        log.append(_record("deploy/after-restart"))  # would overflow: rotates first
    assert [line["target"] for line in _lines(path)] == ["deploy/after-restart"]
    rotated = path.with_name("audit.jsonl.1")
    assert [line["target"] for line in _lines(rotated)] == ["deploy/before-restart"]


def test_torn_last_line_from_a_crash_does_not_corrupt_the_next(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"time":"2024-03-01T12:00:00.000Z","target":"deploy/w')  # crash mid-write
    with AuditLog(path) as log:
        log.append(_record("deploy/next"))
    torn, good = path.read_text(encoding="utf-8").splitlines()
    assert torn.startswith('{"time"')
    assert json.loads(good)["target"] == "deploy/next"


def test_creates_private_parent_dirs_and_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "elasticd" / "audit.jsonl"
    with AuditLog(path) as log:
        log.append(_record())
    for directory in (tmp_path / "state", tmp_path / "state" / "elasticd"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_append_async_from_many_tasks_keeps_lines_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=4096, backups=50)
    await asyncio.gather(*(log.append_async(_record(f"deploy/w{n}")) for n in range(40)))
    log.close()
    assert sorted(_targets_in_all_files(tmp_path)) == sorted(f"deploy/w{n}" for n in range(40))


class CountingAuditLog(AuditLog):
    """The real log, counting the batches its writer hands to a worker thread."""

    batches: list[int]

    def append_many(self, records: list[AuditRecord]) -> None:
        self.batches = [*getattr(self, "batches", []), len(records)]
        super().append_many(records)


async def test_append_async_batches_records_queued_together_in_call_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    log = CountingAuditLog(path)
    await asyncio.gather(*(log.append_async(_record(f"deploy/w{n}")) for n in range(200)))
    log.close()
    # A thread hand-off per batch, not per record; every line whole, in the order appended.
    assert sum(log.batches) == 200
    assert len(log.batches) <= 3
    assert [line["target"] for line in _lines(path)] == [f"deploy/w{n}" for n in range(200)]


async def test_append_async_returns_only_after_its_line_is_flushed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for n in range(3):
        await log.append_async(_record(f"deploy/w{n}"))
        # Another reader sees the line as soon as the call returns: nothing waits in a buffer.
        assert _lines(path)[-1]["target"] == f"deploy/w{n}"
    log.close()


async def test_append_async_reports_a_failed_write_to_every_caller_of_the_batch(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    log = AuditLog(blocker / "audit.jsonl")
    results = await asyncio.gather(
        *(log.append_async(_record(f"deploy/w{n}")) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(result, OSError) for result in results)
    # The writer survives the failure: a later append to a good file works.
    good = AuditLog(tmp_path / "audit.jsonl")
    await good.append_async(_record())
    good.close()


async def test_a_cancelled_caller_does_not_stop_the_others_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    tasks = [asyncio.create_task(log.append_async(_record(f"deploy/w{n}"))) for n in range(10)]
    await asyncio.sleep(0)
    tasks[3].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    log.close()
    targets = [line["target"] for line in _lines(path)]
    # The cancelled caller's record may or may not be written; every other one is.
    assert {f"deploy/w{n}" for n in range(10) if n != 3} <= set(targets)


@pytest.mark.parametrize(("max_bytes", "backups"), [(0, 1), (10, -1)])
def test_rejects_bad_limits(tmp_path: Path, max_bytes: int, backups: int) -> None:
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "a", max_bytes=max_bytes, backups=backups)
