# syntax=docker/dockerfile:1
# elasticd container image: `docker build -t elasticd .` from the repository root.
#
# Two stages: the builder turns the source into a wheel and installs it, with its dependencies,
# into a self-contained venv; the final image gets only that venv. No compiler or build
# back-end ever reaches the final image (numpy and scikit-learn install from binary wheels).

# Pinned patch release and Debian base, same in both stages so the venv's interpreter symlink
# resolves. Bump deliberately (and rebuild) for Python security fixes.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# checkov:skip=CKV_DOCKER_7:the tag comes from ARG PYTHON_IMAGE above, a pinned patch release
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# strip (binutils), for the builder only: see the trim step below.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the package build needs: a change to tests or docs must not bust the layer cache.
COPY pyproject.toml README.md ./
COPY daemon/ ./daemon/
COPY models/ ./models/
# Build the wheel and install it non-editable with the daemon's dependencies only (no `plot`
# extra: matplotlib, fontTools and Pillow draw backtest charts, which nobody does in the image).
# Then trim what the runtime never reads (on a bookworm python3 base of 150 MB the image went
# from 642 MB to 384 MB, with the plot extra out):
# - pip and setuptools: nothing installs at run time;
# - the libraries' own test suites and type stubs (about 70 MB, mostly scipy's and numpy's);
# - symbols in the extension modules (about 20 MB). Not in the *.libs folders: auditwheel
#   rewrote those with patchelf and strip breaks them ("ELF load command ... not page-aligned");
# - bytecode (--no-compile; -B and PYTHONDONTWRITEBYTECODE below): 80 MB that would save a
#   couple of CPU seconds once per start. The root filesystem is read-only at run time, so
#   imports compile in memory.
# Last, import the daemon's composition root and models from the installed venv (-I: not /src),
# which loads every native library it runs on, so a trim that broke one fails the build; and
# run the entry point.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/elasticd \
    && /opt/elasticd/bin/pip install --no-compile /wheels/*.whl \
    && /opt/elasticd/bin/pip uninstall --yes pip setuptools \
    && find /opt/elasticd -depth \( -type d \( -name tests -o -name __pycache__ \) \
       -o -type f -name '*.pyi' \) -exec rm -rf {} + \
    && find /opt/elasticd -path '*.libs' -prune -o -type f -name '*.so' \
       -exec strip --strip-unneeded {} + \
    && /opt/elasticd/bin/python -I -B -c "import daemon.runtime.app, models.forecaster" \
    && /opt/elasticd/bin/elasticd --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="elasticd" \
      org.opencontainers.image.description="Predictive autoscaling daemon" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric UID/GID so Kubernetes `runAsNonRoot` can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 elasticd \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/elasticd --shell /usr/sbin/nologin elasticd \
    && install -d -m 0700 -o 10001 -g 10001 /var/lib/elasticd

COPY --from=builder /opt/elasticd /opt/elasticd

# PYTHONUNBUFFERED: logs reach `docker logs` at once, not at exit.
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only at run time (see the builder's note
#   on bytecode).
# OMP/OPENBLAS/MKL=1: native thread pools spin badly on the small CPU limits a daemon gets.
ENV PATH=/opt/elasticd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

USER 10001:10001
WORKDIR /var/lib/elasticd
VOLUME ["/var/lib/elasticd"]
# Telemetry: /healthz, /readyz, /metrics.
EXPOSE 9464

# slim images have no curl; python's urllib raises (exit 1) on a refused connection or non-2xx.
# The port is the default telemetry.port: change it here too if the config moves it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]

# Exec form: elasticd is PID 1 and receives SIGTERM directly (a shell would swallow it).
ENTRYPOINT ["elasticd"]
CMD ["run", "--config", "/etc/elasticd/elasticd.yaml"]
