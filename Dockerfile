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
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package build needs: a change to tests or docs must not bust the layer cache.
COPY pyproject.toml README.md ./
COPY daemon/ ./daemon/
COPY models/ ./models/
# Build the wheel, install it non-editable with its dependencies, smoke-test the entry point,
# then drop pip and setuptools from the venv: the runtime needs neither.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/elasticd \
    && /opt/elasticd/bin/pip install /wheels/*.whl \
    && /opt/elasticd/bin/elasticd --version \
    && /opt/elasticd/bin/pip uninstall --yes pip setuptools

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
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only at run time; bytecode was compiled
#   at install time anyway.
# OMP/OPENBLAS/MKL=1: native thread pools spin badly on the small CPU limits a daemon gets.
# MPLCONFIGDIR: matplotlib wants a writable cache dir; /tmp is the one writable mount.
ENV PATH=/opt/elasticd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    MPLCONFIGDIR=/tmp/matplotlib

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
