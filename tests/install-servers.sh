#!/bin/sh
# Installs the real servers the tests talk to, when missing. Tests start and stop them.
set -eu
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
prometheus --version 2>&1 | head -n 1
# checkov (tests/deploy/test_kustomize.py) in a venv of its own: its boto3/botocore pins fight
# the project's aiobotocore. Pinned: a new release adds checks, to be met deliberately.
CHECKOV_VENV="$(cd "$(dirname "$0")/.." && pwd)/.tools/checkov"
if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
    python3 -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/pip" install -q --disable-pip-version-check "checkov==3.3.30"
fi
"$CHECKOV_VENV/bin/checkov" --version | sed 's/^/checkov /'
# Headless Chromium and its driver: the status page's browser test (tests/test_status_page.py).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
chromium --version 2>/dev/null | head -n 1 || true
# etcd (Debian's etcd-server): sharding's etcd backend (tests/sharding/test_etcd.py) starts its
# own on 127.0.0.1 on free ports; the packaged service is not used.
if ! command -v etcd >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi
etcd --version 2>/dev/null | head -n 1 || true
# mmdebstrap and buildah: tests/deploy/test_image.py builds the Dockerfile and runs the image
# with no Docker engine (a Debian root as the base image, vfs storage, chroot isolation).
if ! command -v mmdebstrap >/dev/null 2>&1 || ! command -v buildah >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mmdebstrap buildah >/dev/null
fi
buildah --version 2>/dev/null | head -n 1 || true
