"""The container image, built from the Dockerfile and run, with no Docker engine.

``tests/support/image_build.py`` builds a Debian bookworm + Python base with mmdebstrap (the
stand-in for ``python:3.11-slim``; cached between runs), builds the Dockerfile on it with
buildah, and runs the image as a pod would: read-only root, emptyDir volumes, its own PID
namespace, the image's USER. The daemon runs ``config/local.yaml`` (the simulator), so nothing
outside this machine is touched; its telemetry answers on 127.0.0.1.

About 60-90 s on a busy 2-core machine with the base cached (40 s more without), one build per
session: skipped with the reason where buildah, mmdebstrap or namespaces are missing.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.image_build import (
    Buildah,
    Container,
    RunSpec,
    host_pip_settings,
    missing_tools,
    mount_options,
)

REPO = Path(__file__).resolve().parents[2]
TAG = "localhost/elasticd-test:latest"
# The budget on this base: 733 MB before plotting became optional and the venv trimmed.
MAX_IMAGE_MB = 400.0
VENV_SITE = Path("opt/elasticd/lib/python3.11/site-packages")


@dataclass(frozen=True)
class Built:
    buildah: Buildah
    image: str
    spec: RunSpec
    config: dict[str, object]
    size_mb: float


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    reason = missing_tools()
    if reason is not None:
        pytest.skip(reason)
    buildah = Buildah()
    pip = host_pip_settings()
    started = time.monotonic()
    base = buildah.base_image(pip)
    based = time.monotonic()
    buildah.build(base, pip, TAG)
    document = buildah.inspect(TAG)
    size = buildah.size_mb(TAG)
    print(
        f"\nimage {TAG}: {size:.0f} MB on {base} ({buildah.size_mb(base):.0f} MB); "
        f"base {based - started:.0f}s, build {time.monotonic() - based:.0f}s"
    )
    try:
        yield Built(buildah, TAG, RunSpec.from_image(document), document["Docker"]["config"], size)
    finally:
        buildah.remove_image(TAG)  # the base stays cached; the image is rebuilt every run


@pytest.fixture(scope="module")
def rootfs(built: Built) -> Iterator[Path]:
    """One working container's root for every test (with vfs each is a full copy)."""
    with built.buildah.rootfs(built.image) as root:
        yield root


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_image_is_under_its_size_budget(built: Built) -> None:
    assert built.size_mb < MAX_IMAGE_MB, f"{built.size_mb:.0f} MB"


def test_the_image_carries_the_daemon_not_plotting_or_build_tools(rootfs: Path) -> None:
    site = rootfs / VENV_SITE
    assert (site / "daemon" / "cli.py").exists()
    for absent in ("matplotlib", "PIL", "fontTools", "pip", "setuptools"):
        assert not (site / absent).exists(), absent
    assert not list(site.glob("**/tests/"))
    assert not list(site.glob("**/*.pyc"))
    assert not (rootfs / "usr" / "bin" / "strip").exists()  # binutils stayed in the builder


def test_the_image_config_is_a_non_root_daemon_with_a_healthcheck(built: Built) -> None:
    assert built.spec.user == "10001:10001"
    assert built.spec.command == ("elasticd", "run", "--config", "/etc/elasticd/elasticd.yaml")
    assert built.spec.volumes == ("/var/lib/elasticd",)
    healthcheck = built.config["Healthcheck"]
    assert isinstance(healthcheck, dict)
    assert "http://127.0.0.1:9464/healthz" in " ".join(healthcheck["Test"])


def test_the_daemon_runs_read_only_as_uid_10001_and_stops_cleanly_on_sigterm(
    built: Built, rootfs: Path, tmp_path: Path
) -> None:
    port = _free_port()
    config = yaml.safe_load((REPO / "config" / "local.yaml").read_text(encoding="utf-8"))
    config["telemetry"]["port"] = port
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "elasticd.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    container = Container(rootfs, built.spec, config_dir, tmp_path / "container.log")
    try:
        pid = container.pid
        deadline = time.monotonic() + 120
        ready = (0, "")
        while time.monotonic() < deadline and container.process.poll() is None:
            try:
                ready = _get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                ready = (0, "")
            if ready[0] == 200:
                break
            time.sleep(0.5)
        assert ready[0] == 200, f"/readyz {ready}\n{container.log()}"
        assert json.loads(ready[1])["ready"] is True
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200

        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        assert status["Uid"].split() == ["10001"] * 4
        assert status["Gid"].split() == ["10001"] * 4
        assert status["NSpid"].split()[-1] == "1", "the daemon is the container's PID 1"
        assert "ro" in mount_options(pid, "/")
        assert "rw" in mount_options(pid, "/var/lib/elasticd")
        # The models and the audit log went to the volume: the only place it could write.
        state = Path(f"/proc/{pid}/root/var/lib/elasticd/state")
        assert (state / "decisions.jsonl").stat().st_size > 0
        assert (state / "models" / "checkout.json").exists()
    except BaseException:
        container.close()
        raise
    assert container.stop() == 0, container.log()
    assert "Traceback" not in container.log()
