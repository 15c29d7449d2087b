# syntax=docker/dockerfile:1
# One image for every KubeFabric service; each service is a subcommand of the `kubefabric` CLI:
#
#   docker build -t kubefabric .
#   docker run --rm -p 2379:2379 kubefabric serve                      # embedded: router + SQLite shard
#   docker run --rm kubefabric serve --shard grpc://backend-pg:2391    # kv-router in front of a shard service
#   docker run --rm -e KUBEFABRIC_DSN=postgres://... kubefabric backend-pg --listen-address 0.0.0.0:2391
#   docker run --rm -e KUBEFABRIC_DSN=mysql://...    kubefabric backend-mysql --listen-address 0.0.0.0:2392
#   docker run --rm kubefabric watch-hub --topology topology.yaml --nats-url nats://nats:4222 --listen-address 0.0.0.0:2480
#
# The example app's image (examples/shop: `shop function`, `shop operator`, `shop demo`) is the
# `shop` target of this same file:
#
#   docker build --target shop -t shop:0.1.0 .
#
# Stages: `uv` (the uv binary, pinned), `build` (the locked workspace installed into a virtualenv
# with `uv sync --frozen --no-dev`; all dependencies ship wheels, so no compiler is needed), `base`
# (the slim Python image with a non-root user), `runtime` (the default: base + the virtualenv; no
# uv, no build tools, no sources), `dev` (Tilt's live-update image, see below), and the example
# app's `shop-build` (its locked dependencies only, in their own virtualenv) and `shop`. Every
# Python stage uses the same base image: a virtualenv's interpreter is the base's
# /usr/local/bin/python3.11.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/kubefabric
WORKDIR /src
# Dependencies first (their layer survives source edits): the lock file and every workspace
# member's pyproject.toml, nothing else.
COPY pyproject.toml uv.lock ./
COPY libs/pyproject.toml libs/
COPY services/kv-router/pyproject.toml services/kv-router/
COPY services/backend-pg/pyproject.toml services/backend-pg/
COPY services/backend-mysql/pyproject.toml services/backend-mysql/
COPY services/backend-sqlite/pyproject.toml services/backend-sqlite/
COPY services/watch-hub/pyproject.toml services/watch-hub/
COPY services/trigger/pyproject.toml services/trigger/
COPY services/aggregation/pyproject.toml services/aggregation/
# The example app (examples/shop) is a member too; only the dev group and its own image install it.
COPY examples/shop/pyproject.toml examples/shop/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace
# Then the workspace itself, installed as regular (non-editable) packages so the runtime stage
# needs nothing from /src.
COPY libs/ libs/
COPY services/ services/
# the test harness member: its pyproject.toml only, for the workspace (--no-dev never installs it)
COPY tests/pyproject.toml tests/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable \
    && /opt/kubefabric/bin/kubefabric --help > /dev/null

# The example app's virtualenv: its locked dependencies and the app, none of KubeFabric's own
# code (it talks to kube-apiserver only). Built on the workspace's build stage (uv, its settings,
# the member files); a workspace edit reruns this sync from uv's cache.
FROM build AS shop-build
ENV UV_PROJECT_ENVIRONMENT=/opt/shop
COPY examples/shop/ examples/shop/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package kubefabric-shop \
    && /opt/shop/bin/shop --help > /dev/null

# The example app's image (`--target shop`): its virtualenv, a non-root user, no uv or sources.
FROM ${PYTHON_IMAGE} AS shop
RUN groupadd --system --gid 10001 shop \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /var/lib/shop \
       --shell /usr/sbin/nologin shop \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/shop
LABEL org.opencontainers.image.title="shop" \
      org.opencontainers.image.description="KubeFabric's example app: the pricing function and the invoice operator of Orders" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=shop-build /opt/shop /opt/shop
ENV PATH=/opt/shop/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SHOP_LISTEN=0.0.0.0:8080 \
    SHOP_ARCHIVE_DIR=/var/lib/shop/archive
WORKDIR /var/lib/shop
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["shop"]
CMD ["--help"]

# What both KubeFabric images share: the slim base, a non-root user, the environment.
FROM ${PYTHON_IMAGE} AS base
LABEL org.opencontainers.image.title="kubefabric" \
      org.opencontainers.image.description="KubeFabric: an etcd v3 compatible, routed data layer for Kubernetes (kv-router, shard services, watch-hub and trigger as subcommands)" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid, so Kubernetes can check runAsNonRoot; /var/lib/kubefabric is the data
# directory of the embedded and SQLite modes (mount a volume there).
RUN groupadd --system --gid 10001 kubefabric \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /var/lib/kubefabric \
       --shell /usr/sbin/nologin kubefabric \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/kubefabric
ENV PATH=/opt/kubefabric/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KUBEFABRIC_DATA_DIR=/var/lib/kubefabric/data \
    KUBEFABRIC_LISTEN_CLIENT_URLS=http://0.0.0.0:2379
WORKDIR /var/lib/kubefabric
# 2379: etcd v3 API (kv-router); 2390/2391/2392: Shard API of backend-sqlite/-pg/-mysql;
# 2480: Watch API of watch-hub. /metrics: 2381 (kv-router), 2490-2492 (shards), 2580 (watch-hub).
EXPOSE 2379 2390 2391 2392 2480

# Tilt's k8s mode only (docker_build target="dev"): the same image except that the installed
# code belongs to the service user, so live_update can sync edited sources into it.
FROM base AS dev
COPY --from=build --chown=10001:10001 /opt/kubefabric /opt/kubefabric
USER 10001:10001
ENTRYPOINT ["kubefabric"]
CMD ["--help"]

# The image (the default, last stage): code owned by root, read-only to the service user.
FROM base AS runtime
COPY --from=build /opt/kubefabric /opt/kubefabric
USER 10001:10001
ENTRYPOINT ["kubefabric"]
CMD ["--help"]
