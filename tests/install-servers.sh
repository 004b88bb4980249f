#!/bin/sh
# Installs the real servers and tools the tests talk to, when missing; tests start and stop
# them. One apt transaction for everything missing, while checkov's venv installs beside it
# (both are network-bound: together they take about as long as the slower one alone).
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# checkov (tests/deploy/test_kustomize.py) in a venv of its own: its boto3/botocore pins fight
# the project's aiobotocore. Pinned: a new release adds checks, to be met deliberately.
CHECKOV_VENV="$ROOT/.tools/checkov"
CHECKOV_PID=""
if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
    (
        python3 -m venv "$CHECKOV_VENV"
        "$CHECKOV_VENV/bin/pip" install -q --disable-pip-version-check "checkov==3.3.30"
    ) &
    CHECKOV_PID=$!
fi

# command -> Debian package:
#   prometheus, promtool: the source tests' real Prometheus (backfilled with promtool)
#   chromium, chromedriver: the status page's browser test (tests/test_status_page.py)
#   etcd: sharding's etcd backend (tests/sharding/test_etcd.py starts its own on free ports)
#   mmdebstrap, buildah: tests/deploy/test_image.py builds and runs the image, no Docker engine
MISSING=""
for pair in prometheus:prometheus promtool:prometheus chromium:chromium \
    chromedriver:chromium-driver etcd:etcd-server mmdebstrap:mmdebstrap buildah:buildah; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || MISSING="$MISSING ${pair#*:}"
done
if [ -n "$MISSING" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    PACKAGES="$(printf '%s\n' $MISSING | sort -u | tr '\n' ' ')"
    echo "installing:$MISSING" | tr -s ' '
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
fi

if [ -n "$CHECKOV_PID" ]; then
    wait "$CHECKOV_PID"
fi
prometheus --version 2>&1 | head -n 1
"$CHECKOV_VENV/bin/checkov" --version | sed 's/^/checkov /'
chromium --version 2>/dev/null | head -n 1 || true
etcd --version 2>/dev/null | head -n 1 || true
buildah --version 2>/dev/null | head -n 1 || true
