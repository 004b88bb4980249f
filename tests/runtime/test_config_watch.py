"""Hot reload: a changed configuration file is reloaded through the SIGHUP path.

The unit tests change files the three ways they change under a daemon (the kubelet's
``..data`` symlink swap, an editor's rename over the file, an in-place rewrite) and look with
``check()`` directly: no sleeping. The process test runs the real daemon on a ConfigMap-shaped
directory and swaps it as the kubelet does: a valid version is applied, an invalid one is
logged with its YAML path and the running configuration kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from daemon.runtime.config_watch import ConfigWatcher, stamp
from tests.e2e.daemon_process import DaemonProcess
from tests.runtime.test_app import audit_lines, simulator_config


class ConfigMapVolume:
    """A directory laid out as the kubelet lays out a ConfigMap volume:

    ``elasticd.yaml -> ..data/elasticd.yaml``, ``..data -> ..2026_12_04_16_00_00.<n>``; an
    update writes a new timestamped directory, points a temporary symlink at it and renames
    that over ``..data`` (atomic), then removes the old directory.
    """

    def __init__(self, root: Path, name: str = "elasticd.yaml") -> None:
        self.root = root
        self.name = name
        self.version = 0
        root.mkdir(parents=True, exist_ok=True)
        self.current: Path | None = None

    @property
    def path(self) -> Path:
        return self.root / self.name

    def publish(self, text: str) -> None:
        self.version += 1
        directory = self.root / f"..2026_12_04_16_00_00.{self.version:09d}"
        directory.mkdir()
        (directory / self.name).write_text(text, encoding="utf-8")
        temporary = self.root / "..data_tmp"
        temporary.symlink_to(directory.name)
        os.rename(temporary, self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to(f"..data/{self.name}")
        if self.current is not None:
            for child in self.current.iterdir():
                child.unlink()
            self.current.rmdir()
        self.current = directory


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def watcher_on(path: Path) -> tuple[ConfigWatcher, Calls]:
    calls = Calls()
    watcher = ConfigWatcher(path, calls, interval_s=5.0)
    watcher.prime()
    return watcher, calls


def test_a_kubelet_symlink_swap_is_one_change(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "config")
    volume.publish("interval: 10s\n")
    watcher, calls = watcher_on(volume.path)
    before = stamp(volume.path)
    assert watcher.check() == "same"

    volume.publish("interval: 20s\n")
    # The path the daemon was given is the same symlink; what it resolves to is not.
    after = stamp(volume.path)
    assert before is not None and after is not None
    assert after.realpath != before.realpath
    assert watcher.check() == "pending"
    assert watcher.check() == "changed"
    assert calls.count == 1
    assert watcher.check() == "same"
    assert calls.count == 1


def test_an_editor_renaming_over_the_file_and_rewriting_it_in_place(tmp_path: Path) -> None:
    path = tmp_path / "elasticd.yaml"
    path.write_text("interval: 10s\n", encoding="utf-8")
    watcher, calls = watcher_on(path)

    # vim/VS Code style: write a temporary file, rename it over the original (new inode).
    temporary = tmp_path / ".elasticd.yaml.swp"
    temporary.write_text("interval: 30s\n", encoding="utf-8")
    os.replace(temporary, path)
    assert [watcher.check(), watcher.check()] == ["pending", "changed"]

    # In place, same size, mtime forced back: only the content hash can tell.
    info = path.stat()
    with path.open("r+", encoding="utf-8") as handle:
        handle.write("interval: 40s\n")
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert [watcher.check(), watcher.check()] == ["pending", "changed"]
    assert calls.count == 2


def test_half_a_write_and_a_missing_file_do_not_reload(tmp_path: Path) -> None:
    path = tmp_path / "elasticd.yaml"
    path.write_text("interval: 10s\n", encoding="utf-8")
    watcher, calls = watcher_on(path)

    path.write_text("interv", encoding="utf-8")  # the editor is caught mid-write...
    assert watcher.check() == "pending"
    path.write_text("interval: 50s\n", encoding="utf-8")  # ...and finishes
    assert watcher.check() == "pending"  # a different version than the half: look again
    assert watcher.check() == "changed"
    assert calls.count == 1

    path.unlink()  # between an editor's unlink and its rename
    assert [watcher.check(), watcher.check()] == ["same", "same"]
    path.write_text("interval: 50s\n", encoding="utf-8")  # back with the same bytes
    assert [watcher.check(), watcher.check()] == ["pending", "same"]
    assert calls.count == 1


def _yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config)


def test_the_daemon_reloads_a_configmap_swap_and_keeps_its_config_on_a_bad_one(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    volume = ConfigMapVolume(tmp_path / "config")
    volume.publish(_yaml(simulator_config(state)))
    daemon = DaemonProcess(volume.path, env={"ELASTICD_CONFIG_WATCH_INTERVAL": "200ms"})
    try:
        daemon.wait_event("ready", timeout=60)

        # An invalid version: logged with its YAML path, the running configuration kept.
        volume.publish(_yaml(simulator_config(state, max_units=-1)))
        failed = daemon.wait_event("reload_failed", timeout=20)
        assert failed["path"] == "targets[0].max_units"
        assert daemon.events("config_changed")
        seen = len(audit_lines(state))
        daemon.wait_for(lambda: len(audit_lines(state)) >= seen + 3, what="ticks after reload")
        assert audit_lines(state)[-1]["inputs"]["mode"] == "active"

        # A valid version: applied without a signal, through the same reload.
        volume.publish(_yaml(simulator_config(state, mode="forecast-only")))
        reloaded = daemon.wait_event("reloaded", timeout=20)
        assert reloaded["restarted"] == ["checkout"]
        daemon.wait_for(
            lambda: audit_lines(state)[-1]["inputs"]["mode"] == "forecast-only",
            what="a forecast-only decision",
        )
        assert len(daemon.events("reload_failed")) == 1
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
