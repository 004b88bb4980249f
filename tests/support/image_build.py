"""Build the repository's Dockerfile and run the image, with no Docker engine and no registry.

``mmdebstrap`` makes a Debian bookworm root with Python (the stand-in for ``python:*-slim``),
``buildah`` (vfs storage, chroot isolation, host network) imports it as a base image and
builds the Dockerfile on it with ``--build-arg PYTHON_IMAGE=<base>``. The container is then
run the way a kubelet or ``docker run --read-only`` would: the image's root mounted read-only,
tmpfs on ``/tmp`` and on the state volume, the config mounted read-only, in its own mount and
PID namespaces (so the daemon is PID 1, as in a pod), as the image's ``USER``, with the image's
``ENV``, ``WORKDIR``, ``ENTRYPOINT`` and ``CMD``; the network is the host's, so a test reaches
its telemetry port on 127.0.0.1.

Everything lives under one cache directory (default ``build/image-test``, gitignored): the
buildah storage and, tagged by a hash of what went into it, the base image, so a rerun skips
the 20-40 s of mmdebstrap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("ELASTICD_IMAGE_CACHE", REPO / "build" / "image-test"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What the issue names, plus ca-certificates (pip's TLS) and usr-is-merged: without it apt
# picks the usrmerge package, which drags perl in (about 90 MB the base does not need).
PACKAGES = (
    "python3",
    "python3-venv",
    "python3-pip",
    "python-is-python3",
    "ca-certificates",
    "usr-is-merged",
)
# As Debian's own slim images do: no documentation, manuals or translations.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PIP_PATH_KEYS = ("cert", "client-cert", "constraint", "requirement")
PIP_LOCATION_KEYS = ("index-url", "extra-index-url", "find-links")


def missing_tools() -> str | None:
    """A reason to skip, or None when this machine can build and run the image."""
    for tool in ("buildah", "mmdebstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (tests/install-servers.sh installs it)"
    if os.geteuid() != 0:
        return "building and running the image needs root (mount and PID namespaces, chroot)"
    probe = subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"the kernel refused new mount/PID namespaces: {probe.stderr.strip()}"
    return None


def _run(command: list[str], *, timeout: float, what: str, **kwargs: Any) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise RuntimeError(f"{what} failed ({result.returncode}): {shlex.join(command)}\n{tail}")
    return str(result.stdout)


@dataclass(frozen=True)
class PipSettings:
    """The host's pip configuration, carried into the base so pip inside reaches the registry."""

    conf: str
    """A pip.conf with every setting the host's pip uses (files and PIP_* variables)."""
    files: tuple[Path, ...]
    """Files the settings name (CA bundle, constraints): copied into the base, same path."""
    directories: tuple[Path, ...]
    """Local indexes and wheel folders the settings name: mounted read-only during the build."""


def host_pip_settings() -> PipSettings:
    listing = _run(
        [sys.executable, "-m", "pip", "config", "list"], timeout=60, what="pip config list"
    )
    # section -> key -> value; PIP_* variables win over every file, as in pip itself.
    sections: dict[str, dict[str, str]] = {}
    from_env: dict[str, str] = {}
    for line in listing.splitlines():
        name, _, raw = line.partition("=")
        scope, _, key = name.rpartition(".")
        value = raw.strip().strip("'\"")
        if scope == ":env:":
            from_env[key] = value
        else:
            sections.setdefault(scope, {})[key] = value
    sections["global"] = {**sections.get("global", {}), **from_env}
    settings = {k: v for section in sections.values() for k, v in section.items()}
    files: set[Path] = set()
    directories: set[Path] = set()
    for key, value in settings.items():
        for item in value.split():
            path = Path(item.removeprefix("file://"))
            if not path.is_absolute():
                continue
            if key in PIP_PATH_KEYS and path.is_file():
                files.add(path)
            elif key in PIP_LOCATION_KEYS and path.exists():
                # A local index's pages link to files beside it (../files/...): mount its
                # parent. A find-links folder holds the files itself.
                directories.add(path.parent if key.endswith("index-url") else path)
    conf = "".join(
        f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in sorted(values.items()))
        for name, values in sorted(sections.items())
    )
    roots = {d for d in directories if not any(d != o and d.is_relative_to(o) for o in directories)}
    return PipSettings(conf, tuple(sorted(files)), tuple(sorted(roots)))


class Buildah:
    """``buildah`` on a private vfs store under the cache directory."""

    def __init__(self, cache: Path = CACHE) -> None:
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        # The cache is machine state, never source: keep it out of git wherever it lives.
        (cache / ".gitignore").write_text("*\n", encoding="utf-8")
        self.prefix = [
            "buildah",
            "--root",
            str(cache / "storage"),
            "--runroot",
            str(cache / "run"),
            "--storage-driver",
            "vfs",
        ]

    def __call__(self, *args: str, timeout: float = 300, what: str = "buildah") -> str:
        return _run([*self.prefix, *args], timeout=timeout, what=what).strip()

    def image_exists(self, name: str) -> bool:
        listing = subprocess.run(
            [*self.prefix, "images", "--quiet", name], capture_output=True, text=True
        )
        return listing.returncode == 0 and bool(listing.stdout.strip())

    def base_image(self, pip: PipSettings) -> str:
        """The bookworm + Python base, built once per distinct recipe and host pip settings."""
        recipe = hashlib.sha256()
        for part in (SUITE, MIRROR, *PACKAGES, *DPKG_EXCLUDES, pip.conf):
            recipe.update(part.encode() + b"\0")
        for path in (CA_BUNDLE, *pip.files):
            recipe.update(str(path).encode() + b"\0" + path.read_bytes())
        name = f"localhost/elasticd-test-base:{recipe.hexdigest()[:16]}"
        if self.image_exists(name):
            return name
        container = self("from", "scratch")
        try:
            root = Path(self("mount", container))
            _run(
                [
                    "mmdebstrap",
                    "--quiet",
                    "--variant=minbase",
                    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                    f"--include={','.join(PACKAGES)}",
                    *(f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES),
                    SUITE,
                    str(root),
                    MIRROR,
                ],
                timeout=600,
                what="mmdebstrap",
                stdin=subprocess.DEVNULL,  # on a pipe mmdebstrap would read sources from it
            )
            # The host's CA bundle (a TLS-inspecting proxy's CA, if any) and pip settings.
            for path in (CA_BUNDLE, *pip.files):
                target = root / path.relative_to("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            (root / "etc" / "pip.conf").write_text(pip.conf, encoding="utf-8")
            self("umount", container)
            path_env = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            self("config", "--env", path_env, "--cmd", "/bin/bash", container)
            self("commit", "--quiet", container, name, timeout=600, what="buildah commit")
        finally:
            subprocess.run([*self.prefix, "rm", container], capture_output=True)
        # Older bases (another recipe or pip setting) only take disk space.
        for line in self("images", "--format", "{{.Name}}:{{.Tag}}").splitlines():
            if line.startswith("localhost/elasticd-test-base:") and line != name:
                subprocess.run([*self.prefix, "rmi", "--force", line], capture_output=True)
        return name

    def build(self, base: str, pip: PipSettings, tag: str) -> str:
        """Build the repository's Dockerfile on ``base``; returns the build log."""
        # An interrupted earlier run may have left an untagged image: only disk, drop it.
        subprocess.run([*self.prefix, "rmi", "--prune"], capture_output=True)
        volumes = [arg for d in pip.directories for arg in ("--volume", f"{d}:{d}:ro")]
        return self(
            "build",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--pull=never",
            # docker format: the OCI format has no HEALTHCHECK and buildah would drop it.
            "--format",
            "docker",
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            *volumes,
            "--tag",
            tag,
            "--file",
            str(REPO / "Dockerfile"),
            str(REPO),
            timeout=900,
            what="buildah build",
        )

    def inspect(self, image: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self("inspect", "--type", "image", image))
        return document

    def size_mb(self, image: str) -> float:
        """Uncompressed size of the image in MB (10^6 bytes), its layers' sizes, as ``docker
        images`` shows it. buildah prints it rounded to three digits ("384 MB")."""
        (entry,) = json.loads(self("images", "--json", image))
        number, unit = str(entry["size"]).split()
        scale = {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]
        return float(number) * scale

    def remove_image(self, image: str) -> None:
        subprocess.run([*self.prefix, "rmi", "--force", image], capture_output=True)

    @contextlib.contextmanager
    def rootfs(self, image: str) -> Iterator[Path]:
        """A working container's root filesystem, removed afterwards."""
        container = self("from", "--pull=never", image)
        try:
            yield Path(self("mount", container))
        finally:
            subprocess.run([*self.prefix, "umount", container], capture_output=True)
            subprocess.run([*self.prefix, "rm", container], capture_output=True)


@dataclass(frozen=True)
class RunSpec:
    """What ``docker run`` would take from the image's config."""

    user: str
    env: tuple[str, ...]
    workdir: str
    command: tuple[str, ...]
    volumes: tuple[str, ...]

    @classmethod
    def from_image(cls, document: dict[str, Any]) -> RunSpec:
        config = document["Docker"]["config"]
        return cls(
            user=config.get("User") or "0:0",
            env=tuple(config.get("Env") or ()),
            workdir=config.get("WorkingDir") or "/",
            command=tuple((config.get("Entrypoint") or []) + (config.get("Cmd") or [])),
            volumes=tuple(sorted(config.get("Volumes") or {})),
        )


def container_script(rootfs: Path, spec: RunSpec, config_dir: Path) -> str:
    """Shell run inside new mount and PID namespaces: mounts as a kubelet would, then execs
    the entrypoint (so it is PID 1) as the image's user."""
    uid, _, gid = spec.user.partition(":")
    gid = gid or uid
    r = shlex.quote(str(rootfs))
    lines = [
        "set -eu",
        "mount --make-rprivate /",
        # readOnlyRootFilesystem: the image's root, bind-mounted read-only.
        f"mount --bind {r} {r}",
        f"mount -o remount,bind,ro {r}",
        f"mount -t proc proc {r}/proc",
        f"mount --rbind /dev {r}/dev",
        f"mount -t tmpfs -o mode=1777,size=64m tmpfs {r}/tmp",
        # The config as a ConfigMap volume: read-only.
        f"mount --bind {shlex.quote(str(config_dir))} {r}/etc/elasticd",
        f"mount -o remount,bind,ro {r}/etc/elasticd",
    ]
    # Each VOLUME an emptyDir, writable by the pod's fsGroup (the image's group).
    lines += [
        f"mount -t tmpfs -o uid={uid},gid={gid},mode=0700,size=256m tmpfs {r}{shlex.quote(v)}"
        for v in spec.volumes
    ]
    home = f"HOME={spec.workdir}"
    lines.append(
        f"exec chroot --userspec={uid}:{gid} --groups={gid} {r} "
        f"/usr/bin/env -i -C {shlex.quote(spec.workdir)} {shlex.join([*spec.env, home])} "
        f"{shlex.join(spec.command)}"
    )
    return "\n".join(lines) + "\n"


def _child_of(parent: int) -> int | None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command may hold spaces and parentheses: the fields follow the last ")".
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == parent:
                return int(stat.parent.name)
    return None


def mount_options(pid: int, mount_point: str) -> set[str]:
    """The options of ``mount_point`` as process ``pid`` sees it (its last mount there)."""
    options: set[str] = set()
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == mount_point:
            options = set(fields[5].split(","))
    return options


class Container:
    """The image's entrypoint running in its own namespaces; ``pid`` is the daemon's host PID."""

    def __init__(self, rootfs: Path, spec: RunSpec, config_dir: Path, log: Path) -> None:
        (rootfs / "etc" / "elasticd").mkdir(exist_ok=True)  # the mount point, as runtimes do
        self._log = log.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",  # unshare killed (a failed test): its container goes too
                "--uts",
                "--ipc",
                "sh",
                "-c",
                container_script(rootfs, spec, config_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = log

    @property
    def pid(self) -> int:
        """The host PID of PID 1 in the container (unshare's only child)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            child = _child_of(self.process.pid)
            if child is not None:
                return child
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"the container did not start:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM to the container's PID 1, as a kubelet sends; its exit status."""
        with contextlib.suppress(ProcessLookupError, RuntimeError):
            os.kill(self.pid, 15)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # also ends its PID namespace, and so everything in it
            self.process.wait()
        self._log.close()
