# syntax=docker/dockerfile:1
# The base image of both stages; override it to use a mirror or a pinned digest:
#   docker build --build-arg PYTHON_IMAGE=registry.example.com/python:3.11-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: compilers and build tools live here only.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY pyproject.toml README.md LICENSE ./
COPY connector ./connector
COPY providers ./providers
# The service and its OpenTelemetry exporter (the [tracing] extra, about 25 MB); build with
# --build-arg EXTRAS= for an image without tracing. The lab ([lab]) is never in the image.
ARG EXTRAS=tracing
# pip and setuptools are needed to install, not to run: ~25 MB less in the image.
RUN /opt/venv/bin/pip install --no-compile ".${EXTRAS:+[${EXTRAS}]}" \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
    && /opt/venv/bin/python -m compileall -q /opt/venv

# Runtime stage: the virtualenv, a non-root user, no compilers, no secrets.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="posture-connector" \
      org.opencontainers.image.description="step-ca webhook: certificates only for managed devices" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# /var/lib/posture-connector is the one directory the service may write to (the quickstart's
# development certificate, and an SQLite store: set [store] path there, or use PostgreSQL);
# everything under /etc/posture-connector is read-only for uid 10001.
RUN groupadd --system --gid 10001 connector \
    && useradd --system --uid 10001 --gid connector --home-dir /nonexistent --shell /usr/sbin/nologin connector \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/posture-connector
COPY --from=build /opt/venv /opt/venv
COPY LICENSE /usr/share/doc/posture-connector/LICENSE
# A runnable quickstart (no secret inside: it reads POSTURE_QUICKSTART_SECRET) and its inventory.
COPY deploy/container/quickstart.toml examples/quickstart-inventory.csv /etc/posture-connector/examples/
# The X.509 templates for step-ca (their source is the lab's package data).
COPY posture_lab/templates /etc/posture-connector/examples/templates
USER 10001:10001
EXPOSE 8443
# Mount the real config at /etc/posture-connector/config.toml (secrets via env or mounted files).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["posture-connector", "healthcheck", "--config", "/etc/posture-connector/config.toml"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["posture-connector"]
CMD ["serve", "--config", "/etc/posture-connector/config.toml"]
